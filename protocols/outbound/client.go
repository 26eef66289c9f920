package outbound

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
)

// The SMTP client side is written here rather than taken from go-smtp's
// Client, which sends one command at a time (no RFC 2920 PIPELINING) and
// hides the TLS layer, so the dialogue could not be recorded per direction
// across STARTTLS nor checked for bytes injected before the handshake.

// reply is one SMTP reply (RFC 5321 §4.2).
type reply struct {
	Code  int
	Enh   [3]int // RFC 3463 enhanced status code; zero if the remote sent none
	Lines []string
}

// String is the reply as one line: "550 5.1.1 no such user".
func (r reply) String() string {
	s := strconv.Itoa(r.Code)
	if r.Enh[0] != 0 {
		s += fmt.Sprintf(" %d.%d.%d", r.Enh[0], r.Enh[1], r.Enh[2])
	}
	if t := strings.Join(r.Lines, " "); t != "" {
		s += " " + t
	}
	return s
}

func (r reply) positive() bool  { return r.Code/100 == 2 }
func (r reply) permanent() bool { return r.Code/100 == 5 }

// Reply size limits: RFC 5321 §4.5.3.1.5 allows 512 octets per reply line;
// twice that, and a bounded number of lines, keep memory bounded.
const (
	maxReplyLine  = 1024
	maxReplyLines = 128
)

var errReplySyntax = errors.New("malformed reply")

// parseReplyLine splits one reply line (without CRLF) into its code, whether
// more lines follow ("250-"), and the text.
func parseReplyLine(line string) (code int, more bool, text string, err error) {
	if len(line) < 3 {
		return 0, false, "", errReplySyntax
	}
	for i := 0; i < 3; i++ {
		if line[i] < '0' || line[i] > '9' {
			return 0, false, "", errReplySyntax
		}
	}
	// RFC 5321 §4.2: the first digit is 2 to 5, the second 0 to 5.
	if line[0] < '2' || line[0] > '5' || line[1] > '5' {
		return 0, false, "", errReplySyntax
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if len(line) == 3 {
		return code, false, "", nil
	}
	switch line[3] {
	case ' ':
		return code, false, line[4:], nil
	case '-':
		return code, true, line[4:], nil
	}
	return 0, false, "", errReplySyntax
}

// parseEnhanced takes an RFC 3463 code ("5.1.1 ") off the start of text if
// its class matches the reply code's first digit.
func parseEnhanced(code int, text string) ([3]int, string, bool) {
	var e [3]int
	rest := text
	for i := 0; i < 3; i++ {
		j := 0
		for j < len(rest) && j < 4 && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if j == 0 || j > 3 || i == 0 && j != 1 {
			return e, text, false
		}
		e[i], _ = strconv.Atoi(rest[:j])
		rest = rest[j:]
		if i < 2 {
			if rest == "" || rest[0] != '.' {
				return e, text, false
			}
			rest = rest[1:]
		}
	}
	if rest != "" && rest[0] != ' ' || e[0] != code/100 {
		return [3]int{}, text, false
	}
	return e, strings.TrimPrefix(rest, " "), true
}

// readReplyFrom reads one reply; each raw line goes to seen.
func readReplyFrom(br *bufio.Reader, seen func(string)) (reply, error) {
	var r reply
	for n := 0; ; n++ {
		if n >= maxReplyLines {
			return r, fmt.Errorf("reply longer than %d lines", maxReplyLines)
		}
		line, err := readLine(br)
		if err != nil {
			return r, err
		}
		seen(line)
		code, more, text, err := parseReplyLine(line)
		if err != nil {
			return r, fmt.Errorf("%w: %q", err, truncate(line, 80))
		}
		if n > 0 && code != r.Code {
			return r, fmt.Errorf("%w: code changes within a reply", errReplySyntax)
		}
		r.Code = code
		if enh, rest, ok := parseEnhanced(code, text); ok {
			if n == 0 {
				r.Enh = enh
			}
			text = rest
		}
		r.Lines = append(r.Lines, text)
		if !more {
			return r, nil
		}
	}
}

// readLine reads a line ending in LF (a CR before it is dropped), at most
// maxReplyLine bytes.
func readLine(br *bufio.Reader) (string, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > maxReplyLine {
			return "", fmt.Errorf("reply line longer than %d bytes", maxReplyLine)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		buf = buf[:len(buf)-1]
		if n := len(buf); n > 0 && buf[n-1] == '\r' {
			buf = buf[:n-1]
		}
		return string(buf), nil
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// smtpConn is one client connection.
type smtpConn struct {
	nc  net.Conn
	br  *bufio.Reader
	bw  *bufio.Writer
	rec *recorder
	to  Timeouts
	ext map[string]string // EHLO keywords (upper case) → parameters
	tls *tls.ConnectionState

	host, addr string // the remote, for the transcript of a reused connection
	tlsDesc    string // as in Transcript.TLS

	writeTimeout time.Duration // for each write to the network
}

func newSMTPConn(nc net.Conn, rec *recorder, to Timeouts) *smtpConn {
	c := &smtpConn{nc: nc, br: bufio.NewReaderSize(nc, 4096), rec: rec, to: to, writeTimeout: to.Command, tlsDesc: "none"}
	c.bw = bufio.NewWriterSize(connWriter{c}, 32<<10)
	return c
}

// connWriter sets a fresh deadline before each network write, so a remote
// that stops reading is dropped after writeTimeout (RFC 5321 §4.5.3.2.5).
type connWriter struct{ c *smtpConn }

func (w connWriter) Write(p []byte) (int, error) {
	w.c.nc.SetWriteDeadline(time.Now().Add(w.c.writeTimeout))
	return w.c.nc.Write(p)
}

func (c *smtpConn) readReply(timeout time.Duration) (reply, error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	return readReplyFrom(c.br, c.rec.server)
}

// write queues one command line; shown is what the transcript gets.
func (c *smtpConn) write(line, shown string) error {
	if strings.ContainsAny(line, "\r\n") {
		return fmt.Errorf("refusing to send a command containing CR or LF")
	}
	c.rec.client(shown)
	_, err := c.bw.WriteString(line + "\r\n")
	return err
}

func (c *smtpConn) flush(timeout time.Duration) error {
	c.writeTimeout = timeout
	return c.bw.Flush()
}

// cmd sends one command and reads its reply.
func (c *smtpConn) cmd(line string, timeout time.Duration) (reply, error) {
	return c.cmdShown(line, line, timeout)
}

func (c *smtpConn) cmdShown(line, shown string, timeout time.Duration) (reply, error) {
	if err := c.write(line, shown); err != nil {
		return reply{}, err
	}
	if err := c.flush(timeout); err != nil {
		return reply{}, err
	}
	return c.readReply(timeout)
}

// hello sends EHLO, or HELO if the remote does not know EHLO (RFC 5321
// §4.1.1.1), and records the extensions offered.
func (c *smtpConn) hello(name string) (reply, error) {
	r, err := c.cmd("EHLO "+name, c.to.Command)
	if err != nil {
		return r, err
	}
	c.ext = map[string]string{}
	if r.Code == 500 || r.Code == 502 || r.Code == 504 || r.Code == 550 {
		r, err = c.cmd("HELO "+name, c.to.Command)
		return r, err
	}
	if !r.positive() {
		return r, nil
	}
	for _, l := range r.Lines[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		c.ext[strings.ToUpper(k)] = v
	}
	return r, nil
}

func (c *smtpConn) has(ext string) bool {
	_, ok := c.ext[ext]
	return ok
}

// errInjected is a remote (or a man in the middle) sending bytes after the
// 220 reply to STARTTLS: they would be read as replies after the handshake
// (CVE-2011-0411 on the client side, RFC 3207 §4.2). We never use them.
var errInjected = errors.New("data sent after the STARTTLS reply, before the TLS handshake (possible injection)")

// startTLS runs STARTTLS (RFC 3207). The caller sends EHLO again: what the
// remote said before TLS is forgotten (§4.2).
func (c *smtpConn) startTLS(ctx context.Context, cfg *tls.Config) (reply, error) {
	r, err := c.cmd("STARTTLS", c.to.Command)
	if err != nil || r.Code != 220 {
		return r, err
	}
	if c.br.Buffered() > 0 {
		c.rec.note(fmt.Sprintf("%d bytes after the STARTTLS reply discarded, connection dropped", c.br.Buffered()))
		return r, errInjected
	}
	tc := tls.Client(c.nc, cfg)
	hctx, cancel := context.WithTimeout(ctx, c.to.Command)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return r, fmt.Errorf("TLS handshake: %w", err)
	}
	st := tc.ConnectionState()
	c.tls = &st
	c.nc = tc
	c.br = bufio.NewReaderSize(tc, 4096)
	c.bw = bufio.NewWriterSize(connWriter{c}, 32<<10)
	c.ext = nil
	return r, nil
}

// auth authenticates with PLAIN or LOGIN (RFC 4954); credentials never
// reach the transcript.
func (c *smtpConn) auth(user, pass string) (reply, error) {
	mechs := strings.Fields(strings.ToUpper(c.ext["AUTH"]))
	var cl sasl.Client
	for _, m := range mechs {
		if m == "PLAIN" {
			cl = sasl.NewPlainClient("", user, pass)
			break
		}
	}
	if cl == nil {
		for _, m := range mechs {
			if m == "LOGIN" {
				cl = sasl.NewLoginClient(user, pass)
			}
		}
	}
	if cl == nil {
		return reply{}, fmt.Errorf("smarthost offers no AUTH PLAIN or LOGIN (offers %q)", c.ext["AUTH"])
	}
	mech, ir, err := cl.Start()
	if err != nil {
		return reply{}, err
	}
	line := "AUTH " + mech
	if ir != nil {
		line += " " + b64(ir)
	}
	r, err := c.cmdShown(line, redactAuth(line), c.to.Command)
	for i := 0; err == nil && r.Code == 334 && i < 10; i++ {
		var ch []byte
		if ch, err = base64.StdEncoding.DecodeString(strings.Join(r.Lines, "")); err != nil {
			c.cmd("*", c.to.Command)
			return r, fmt.Errorf("AUTH challenge: %w", err)
		}
		var resp []byte
		if resp, err = cl.Next(ch); err != nil {
			c.cmd("*", c.to.Command)
			return r, err
		}
		r, err = c.cmdShown(b64(resp), redactAuth(""), c.to.Command)
	}
	return r, err
}

func b64(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}

// quit ends the session politely; its outcome does not matter.
func (c *smtpConn) quit() {
	if err := c.write("QUIT", "QUIT"); err == nil && c.flush(10*time.Second) == nil {
		c.readReply(10 * time.Second)
	}
}

// tlsDescription is the transcript's view of a TLS session.
func tlsDescription(st *tls.ConnectionState, verified bool, verr error) string {
	s := fmt.Sprintf("%s %s, verified=%t", strings.ReplaceAll(tls.VersionName(st.Version), " ", ""), tls.CipherSuiteName(st.CipherSuite), verified)
	if verr != nil {
		s += " (" + verr.Error() + ")"
	}
	return s
}
