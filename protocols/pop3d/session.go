package pop3d

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Line limits: RFC 2449 §4 allows commands of 255 octets; SASL responses
// may be longer (RFC 5034 §4), up to maxLine.
const (
	maxCommand = 255
	maxLine    = 2048
	// failDelay slows password guessing and hides whether the user exists.
	failDelay = 500 * time.Millisecond
)

type state int

const (
	stateAuth  state = iota // AUTHORIZATION
	stateTrans              // TRANSACTION
)

type session struct {
	srv    *Server
	conn   net.Conn
	r      *bufio.Reader
	w      *bufio.Writer
	isTLS  bool
	state  state
	user   string
	errors int

	drop    Maildrop
	msgs    []MessageInfo
	deleted []bool
}

func newSession(s *Server, c net.Conn, isTLS bool) *session {
	return &session{srv: s, conn: c, r: bufio.NewReaderSize(c, maxLine), w: bufio.NewWriter(c), isTLS: isTLS}
}

func (s *session) reply(format string, a ...any) error {
	s.conn.SetWriteDeadline(time.Now().Add(5 * time.Minute))
	fmt.Fprintf(s.w, format+"\r\n", a...)
	return s.w.Flush()
}

func (s *session) ok(format string, a ...any) error { return s.reply("+OK "+format, a...) }
func (s *session) bad(format string, a ...any) error {
	s.errors++
	return s.reply("-ERR "+format, a...)
}

// readLine returns one line without its CRLF. Over-long lines are consumed
// to their end and reported with errLong.
var errLong = errors.New("line too long")

func (s *session) readLine() (string, error) {
	s.conn.SetReadDeadline(time.Now().Add(s.srv.cfg.IdleTimeout))
	line, err := s.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = s.r.ReadSlice('\n')
		}
		if err != nil {
			return "", err
		}
		return "", errLong
	}
	if err != nil {
		return "", err
	}
	return string(bytes.TrimRight(line, "\r\n")), nil
}

func (s *session) run() {
	defer func() {
		if s.drop != nil {
			s.drop.Close() // no QUIT: nothing is deleted (RFC 1939 §6)
		}
	}()
	if s.reply("+OK %s Tandem POP3 server ready", s.srv.cfg.Hostname) != nil {
		return
	}
	for {
		if s.errors >= s.srv.cfg.MaxErrors {
			s.reply("-ERR too many errors, closing connection")
			return
		}
		line, err := s.readLine()
		if errors.Is(err, errLong) {
			if s.bad("line too long") != nil {
				return
			}
			continue
		}
		if err != nil {
			return
		}
		cmd, arg, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		if len(line) > maxCommand && cmd != "AUTH" {
			if s.bad("command line longer than %d octets", maxCommand) != nil {
				return
			}
			continue
		}
		quit, err := s.dispatch(cmd, arg)
		if err != nil || quit {
			return
		}
	}
}

// dispatch runs one command; quit ends the session.
func (s *session) dispatch(cmd, arg string) (quit bool, err error) {
	switch cmd {
	case "CAPA":
		return false, s.capa()
	case "QUIT":
		return true, s.quit()
	case "NOOP":
		if s.state != stateTrans {
			return false, s.bad("NOOP only after login")
		}
		return false, s.ok("")
	}
	if s.state == stateAuth {
		switch cmd {
		case "USER":
			return false, s.userCmd(arg)
		case "PASS":
			return false, s.passCmd(arg)
		case "AUTH":
			return false, s.authCmd(arg)
		case "STLS":
			return false, s.stls()
		case "APOP":
			return false, s.bad("APOP not supported; use USER/PASS or AUTH PLAIN over TLS")
		case "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET":
			return false, s.bad("%s needs a login first", cmd)
		}
		return false, s.bad("unknown command")
	}
	switch cmd {
	case "STAT":
		n, size := 0, int64(0)
		for i, m := range s.msgs {
			if !s.deleted[i] {
				n++
				size += m.Size
			}
		}
		return false, s.ok("%d %d", n, size)
	case "LIST":
		return false, s.listCmd(arg, func(m MessageInfo) string { return fmt.Sprint(m.Size) })
	case "UIDL":
		return false, s.listCmd(arg, func(m MessageInfo) string { return m.UIDL })
	case "RETR":
		i, ok, err := s.msgArg(arg)
		if !ok {
			return false, err
		}
		return false, s.send(i, -1)
	case "TOP":
		num, lines, _ := strings.Cut(arg, " ")
		i, ok, err := s.msgArg(num)
		if !ok {
			return false, err
		}
		n, ok := parseNumber(lines)
		if !ok {
			return false, s.bad("TOP needs a message number and a line count")
		}
		return false, s.send(i, n)
	case "DELE":
		i, ok, err := s.msgArg(arg)
		if !ok {
			return false, err
		}
		s.deleted[i] = true
		return false, s.ok("message %d deleted", i+1)
	case "RSET":
		for i := range s.deleted {
			s.deleted[i] = false
		}
		return false, s.ok("maildrop has %d messages", len(s.msgs))
	case "USER", "PASS", "AUTH", "STLS", "APOP":
		return false, s.bad("already logged in")
	}
	return false, s.bad("unknown command")
}

func (s *session) capa() error {
	caps := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER", "IMPLEMENTATION Tandem"}
	if s.state == stateAuth {
		if s.authAllowed() {
			caps = append(caps, "USER", "SASL PLAIN")
		}
		if !s.isTLS && s.srv.cfg.TLSConfig != nil {
			caps = append(caps, "STLS")
		}
	}
	s.conn.SetWriteDeadline(time.Now().Add(5 * time.Minute))
	s.w.WriteString("+OK capability list follows\r\n")
	for _, c := range caps {
		s.w.WriteString(c + "\r\n")
	}
	s.w.WriteString(".\r\n")
	return s.w.Flush()
}

// authAllowed: passwords travel only over TLS unless configured otherwise
// (RFC 2595 §2.2).
func (s *session) authAllowed() bool { return s.isTLS || s.srv.cfg.AllowInsecureAuth }

func (s *session) userCmd(arg string) error {
	if !s.authAllowed() {
		return s.bad("[AUTH] plaintext authentication is not allowed here: issue STLS first")
	}
	if arg == "" {
		return s.bad("USER needs a name")
	}
	s.user = arg
	return s.ok("send the password")
}

func (s *session) passCmd(arg string) error {
	if !s.authAllowed() {
		return s.bad("[AUTH] plaintext authentication is not allowed here: issue STLS first")
	}
	if s.user == "" {
		return s.bad("USER first")
	}
	user := s.user
	s.user = ""
	return s.login(user, arg)
}

func (s *session) login(user, pass string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	drop, err := s.srv.cfg.Backend.Login(ctx, user, pass, s.conn.RemoteAddr())
	switch {
	case errors.Is(err, ErrAuthFailed):
		time.Sleep(failDelay)
		return s.bad("[AUTH] authentication failed")
	case errors.Is(err, ErrInUse):
		return s.bad("[IN-USE] the maildrop is in use by another session")
	case err != nil:
		s.srv.log.Warn("pop3 login", "err", err)
		return s.bad("[SYS/TEMP] cannot open the maildrop now, try again later")
	}
	msgs, err := drop.Messages(ctx)
	if err != nil {
		drop.Close()
		s.srv.log.Warn("pop3 list maildrop", "err", err)
		return s.bad("[SYS/TEMP] cannot read the maildrop now, try again later")
	}
	s.drop, s.msgs, s.deleted, s.state = drop, msgs, make([]bool, len(msgs)), stateTrans
	s.errors = 0
	var size int64
	for _, m := range msgs {
		size += m.Size
	}
	return s.ok("maildrop has %d messages (%d octets)", len(msgs), size)
}

// authCmd implements AUTH PLAIN (RFC 5034, RFC 4616).
func (s *session) authCmd(arg string) error {
	mech, initial, hasInitial := strings.Cut(arg, " ")
	if mech == "" {
		// Mechanism list, as many clients ask for it.
		s.w.WriteString("+OK\r\nPLAIN\r\n.\r\n")
		return s.w.Flush()
	}
	if !strings.EqualFold(mech, "PLAIN") {
		return s.bad("unsupported mechanism %q", truncate(mech, 20))
	}
	if !s.authAllowed() {
		return s.bad("[AUTH] plaintext authentication is not allowed here: issue STLS first")
	}
	if !hasInitial {
		if err := s.reply("+ "); err != nil {
			return err
		}
		line, err := s.readLine()
		if errors.Is(err, errLong) {
			return s.bad("response too long")
		}
		if err != nil {
			return err
		}
		initial = line
	}
	if initial == "*" {
		return s.bad("authentication cancelled")
	}
	if initial == "=" {
		initial = ""
	}
	raw, err := base64.StdEncoding.DecodeString(initial)
	if err != nil {
		return s.bad("invalid base64")
	}
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return s.bad("malformed PLAIN response")
	}
	authz, authc, pass := string(parts[0]), string(parts[1]), string(parts[2])
	if authz != "" && authz != authc {
		time.Sleep(failDelay)
		return s.bad("[AUTH] authorization identity must match the login")
	}
	return s.login(authc, pass)
}

// stls upgrades to TLS (RFC 2595 §4). Bytes the client sent after STLS
// before the handshake are dropped with the old reader, never executed
// (CVE-2011-0411, RELIABILITY #16).
func (s *session) stls() error {
	if s.isTLS {
		return s.bad("already using TLS")
	}
	if s.srv.cfg.TLSConfig == nil {
		return s.bad("STLS not available")
	}
	if err := s.ok("begin TLS negotiation"); err != nil {
		return err
	}
	tc := tls.Server(s.conn, s.srv.cfg.TLSConfig)
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.Handshake(); err != nil {
		return err
	}
	tc.SetDeadline(time.Time{})
	s.conn, s.isTLS = tc, true
	s.r, s.w = bufio.NewReaderSize(tc, maxLine), bufio.NewWriter(tc)
	s.user = ""
	return nil
}

func parseNumber(arg string) (int, bool) {
	if arg == "" || len(arg) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range arg {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// msgArg parses a message number; ok false means the error was sent.
func (s *session) msgArg(arg string) (int, bool, error) {
	n, ok := parseNumber(strings.TrimSpace(arg))
	if !ok || n < 1 {
		return 0, false, s.bad("invalid message number")
	}
	if n > len(s.msgs) {
		return 0, false, s.bad("no such message")
	}
	if s.deleted[n-1] {
		return 0, false, s.bad("message %d already deleted", n)
	}
	return n - 1, true, nil
}

func (s *session) listCmd(arg string, field func(MessageInfo) string) error {
	if strings.TrimSpace(arg) != "" {
		i, ok, err := s.msgArg(arg)
		if !ok {
			return err
		}
		return s.ok("%d %s", i+1, field(s.msgs[i]))
	}
	s.conn.SetWriteDeadline(time.Now().Add(5 * time.Minute))
	s.w.WriteString("+OK\r\n")
	for i, m := range s.msgs {
		if !s.deleted[i] {
			fmt.Fprintf(s.w, "%d %s\r\n", i+1, field(m))
		}
	}
	s.w.WriteString(".\r\n")
	return s.w.Flush()
}

// send writes a message (RETR) or its header and first lines (TOP, lines
// >= 0), dot-stuffed, with CRLF line ends (RFC 1939 §3).
func (s *session) send(i, lines int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rc, err := s.drop.Open(ctx, s.msgs[i])
	if err != nil {
		s.srv.log.Warn("pop3 open message", "err", err)
		return s.bad("[SYS/TEMP] cannot read the message now")
	}
	defer rc.Close()
	if lines < 0 {
		fmt.Fprintf(s.w, "+OK %d octets\r\n", s.msgs[i].Size)
	} else {
		s.w.WriteString("+OK top of message follows\r\n")
	}
	if err := writeDotStuffed(s.w, rc, lines, func() { s.conn.SetWriteDeadline(time.Now().Add(5 * time.Minute)) }); err != nil {
		return err
	}
	s.w.WriteString(".\r\n")
	return s.w.Flush()
}

// writeDotStuffed copies a message line by line: a line starting with "."
// gets another "."; bare LF becomes CRLF. With bodyLines >= 0 it stops
// after the header and that many body lines.
func writeDotStuffed(w *bufio.Writer, r io.Reader, bodyLines int, tick func()) error {
	br := bufio.NewReaderSize(r, 32<<10)
	atStart, inBody, body := true, false, 0
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			complete := chunk[len(chunk)-1] == '\n'
			if atStart {
				if inBody && bodyLines >= 0 && body >= bodyLines {
					return nil
				}
				if chunk[0] == '.' {
					w.WriteByte('.')
				}
				if !inBody && (bytes.Equal(chunk, []byte("\r\n")) || bytes.Equal(chunk, []byte("\n"))) {
					inBody = true
					if bodyLines >= 0 {
						w.WriteString("\r\n")
						atStart = true
						continue
					}
				} else if inBody {
					body++
				}
			}
			if complete {
				content := bytes.TrimRight(chunk, "\r\n")
				w.Write(content)
				w.WriteString("\r\n")
			} else {
				w.Write(chunk)
			}
			atStart = complete
			if w.Buffered() > 16<<10 {
				tick()
				if err := w.Flush(); err != nil {
					return err
				}
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			if !atStart {
				w.WriteString("\r\n")
			}
			tick()
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (s *session) quit() error {
	if s.state != stateTrans {
		return s.ok("%s signing off", s.srv.cfg.Hostname)
	}
	var del []MessageInfo
	for i, d := range s.deleted {
		if d {
			del = append(del, s.msgs[i])
		}
	}
	// UPDATE state (RFC 1939 §6): deletions happen here and only here.
	if len(del) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := s.drop.Delete(ctx, del)
		cancel()
		if err != nil {
			s.srv.log.Warn("pop3 delete at QUIT", "err", err)
			return s.reply("-ERR [SYS/TEMP] some deleted messages were not removed")
		}
	}
	return s.ok("%s signing off (%d messages deleted)", s.srv.cfg.Hostname, len(del))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
