package pop3d

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// state is the session state of RFC 1939 §3. UPDATE is entered only inside
// QUIT and needs no value of its own.
type state int

const (
	stateAuthorization state = iota
	stateTransaction
)

// Line limits.
const (
	// maxCommandLine: RFC 2449 §4 allows command lines of 255 octets,
	// including the CRLF. It applies to AUTH with an initial response too
	// (RFC 5034 §4).
	maxCommandLine = 255
	// maxSASLLine bounds a client response inside AUTH, which RFC 5034
	// leaves unbounded; PLAIN needs far less.
	maxSASLLine = 8 << 10
	// maxDiscard: an over-long line is skipped up to this size; beyond
	// it the client is not speaking POP3 and the session ends.
	maxDiscard = 1 << 20
	// writeBuffer is the reply buffer; longer replies go out as it fills.
	writeBuffer = 16 << 10
)

var (
	errLineTooLong = errors.New("line too long")
	errLineAbuse   = errors.New("line far too long")
	errQuit        = errors.New("session ended by QUIT")
)

type session struct {
	srv *Server
	ctx context.Context // cancelled when the session ends or the server closes
	raw net.Conn        // the TCP connection
	// conn is raw, or the TLS connection over it after STLS.
	conn  net.Conn
	r     *bufio.Reader
	w     *bufio.Writer
	isTLS bool
	ip    string // client_ip for logs

	state  state
	errors int    // rejected commands so far (Config.MaxErrors)
	user   string // from USER, waiting for PASS

	// TRANSACTION state.
	account string // the login name, for logs
	drop    Maildrop
	msgs    []MessageInfo
	deleted []bool // marked by DELE, indexed like msgs
}

func newSession(ctx context.Context, srv *Server, c net.Conn) *session {
	return &session{srv: srv, ctx: ctx, raw: c, conn: c, ip: clientIP(c.RemoteAddr()),
		r: bufio.NewReaderSize(c, maxSASLLine), w: newReplyWriter(c)}
}

// deadlineWriter gives every write to the client its own deadline, so a
// client that stops reading loses the connection after writeTimeout while
// a long RETR to a slow but live client goes on (RELIABILITY #43).
type deadlineWriter struct{ conn net.Conn }

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return d.conn.Write(p)
}

func newReplyWriter(c net.Conn) *bufio.Writer {
	return bufio.NewWriterSize(deadlineWriter{c}, writeBuffer)
}

func (s *session) run(implicitTLS bool) {
	defer s.release()
	defer func() {
		if s.isTLS {
			s.conn.Close() // a TLS close_notify; the server closes the TCP connection
		}
	}()
	if implicitTLS {
		if err := s.startTLS(); err != nil {
			s.srv.log.Debug("pop3 TLS handshake failed", "client_ip", s.ip, "err", err)
			return
		}
	}
	if s.writeLine("+OK "+s.srv.cfg.Hostname+" POP3 server ready") != nil {
		return
	}
	for {
		line, err := s.readLine(maxCommandLine)
		switch {
		case errors.Is(err, errLineTooLong):
			err = s.fail("command line too long: RFC 2449 allows 255 octets")
		case errors.Is(err, errLineAbuse):
			s.srv.log.Info("pop3 closing session", "client_ip", s.ip, "reason", "line far too long")
			s.writeLine("-ERR line far too long, closing connection")
			return
		case isTimeout(err):
			// RFC 1939 §3: the autologout timer closes the connection
			// without entering UPDATE.
			s.writeLine("-ERR autologout: idle for too long, closing connection")
			return
		case err != nil:
			return
		default:
			err = s.execute(line)
		}
		if err != nil {
			if errors.Is(err, errQuit) {
				return
			}
			s.srv.log.Debug("pop3 session ended", "client_ip", s.ip, "err", err)
			return
		}
		if s.errors >= s.srv.cfg.MaxErrors {
			s.srv.log.Info("pop3 closing session", "client_ip", s.ip, "reason", "too many errors", "user", s.account)
			s.writeLine("-ERR too many errors, closing connection")
			return
		}
	}
}

// release ends the session: the maildrop lock goes, nothing is deleted
// unless QUIT already did it (RFC 1939 §6, RELIABILITY #8).
func (s *session) release() {
	if s.drop == nil {
		return
	}
	if err := s.drop.Close(); err != nil {
		s.srv.log.Warn("pop3 maildrop close", "client_ip", s.ip, "user", s.account, "err", err)
	}
	s.drop = nil
}

// readLine returns one line without its CRLF (a bare LF is accepted too).
// A line longer than limit octets, CRLF included, is read to its end and
// reported as errLineTooLong, so the session can answer and go on (RFC 2449
// §4); memory stays bounded by the reader's buffer.
func (s *session) readLine(limit int) (string, error) {
	s.conn.SetReadDeadline(time.Now().Add(s.srv.cfg.IdleTimeout))
	line, err := s.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		n := len(line)
		for errors.Is(err, bufio.ErrBufferFull) {
			if n > maxDiscard {
				return "", errLineAbuse
			}
			line, err = s.r.ReadSlice('\n')
			n += len(line)
		}
		if err != nil {
			return "", err
		}
		return "", errLineTooLong
	}
	if err != nil {
		return "", err // a partial last line before EOF is not a command
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line)+2 > limit {
		return "", errLineTooLong
	}
	return string(line), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeLine sends a line and everything buffered before it.
func (s *session) writeLine(line string) error {
	s.w.WriteString(line)
	s.w.WriteString("\r\n")
	return s.w.Flush()
}

func (s *session) ok(format string, a ...any) error {
	return s.writeLine("+OK " + fmt.Sprintf(format, a...))
}

// fail rejects a command the client got wrong; it counts towards
// Config.MaxErrors.
func (s *session) fail(format string, a ...any) error {
	s.errors++
	return s.writeLine("-ERR " + fmt.Sprintf(format, a...))
}

// failSys answers a command that failed on our side (RFC 3206 [SYS/TEMP]
// or [SYS/PERM]); it is not counted against the client.
func (s *session) failSys(err error, what string) error {
	code := "SYS/TEMP"
	if errors.Is(err, ErrPermanent) {
		code = "SYS/PERM"
	}
	return s.writeLine("-ERR [" + code + "] " + what)
}

// stls implements STLS (RFC 2595 §4), in AUTHORIZATION state only.
func (s *session) stls(command) error {
	if s.isTLS {
		return s.fail("already using TLS")
	}
	if s.srv.cfg.TLSConfig == nil {
		return s.fail("STLS is not available on this server")
	}
	if err := s.ok("begin TLS negotiation"); err != nil {
		return err
	}
	// Whatever the client sent after STLS and before the handshake is
	// thrown away with the old reader, never executed (CVE-2011-0411,
	// RELIABILITY #16).
	if n := s.r.Buffered(); n > 0 {
		s.srv.log.Warn("pop3 discarding data pipelined after STLS", "client_ip", s.ip, "bytes", n)
	}
	if err := s.startTLS(); err != nil {
		return fmt.Errorf("STLS handshake: %w", err)
	}
	// RFC 2595 §4: after TLS the session is in AUTHORIZATION state and
	// forgets what the client said before.
	s.state, s.user = stateAuthorization, ""
	return nil
}

// startTLS runs the server side of a TLS handshake on the raw connection
// and swaps the reader and writer.
func (s *session) startTLS() error {
	tc := tls.Server(s.raw, s.srv.cfg.TLSConfig)
	s.raw.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.HandshakeContext(s.ctx); err != nil {
		return err
	}
	s.raw.SetDeadline(time.Time{})
	s.conn, s.isTLS = tc, true
	s.r = bufio.NewReaderSize(tc, maxSASLLine)
	s.w = newReplyWriter(tc)
	return nil
}

// capa lists the capabilities (RFC 2449 §5), which depend on the state and
// on TLS: nothing invites a password over an unencrypted connection.
func (s *session) capa(command) error {
	caps := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"}
	if s.state == stateAuthorization {
		if s.plaintextAllowed() {
			caps = append(caps, "USER", "SASL PLAIN")
		}
		if !s.isTLS && s.srv.cfg.TLSConfig != nil {
			caps = append(caps, "STLS")
		}
	}
	caps = append(caps, "IMPLEMENTATION Tandem")
	s.w.WriteString("+OK capability list follows\r\n")
	for _, c := range caps {
		s.w.WriteString(c + "\r\n")
	}
	return s.writeLine(".")
}
