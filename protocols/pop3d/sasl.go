package pop3d

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"time"
)

// plaintextAllowed: passwords travel only over TLS unless the configuration
// says otherwise (RFC 2595 §2.2; RFC 8314 §3).
func (s *session) plaintextAllowed() bool { return s.isTLS || s.srv.cfg.AllowInsecureAuth }

// refusePlaintext answers a login attempt made before TLS. The backend is
// not asked, so no credential is checked over the clear (RELIABILITY #24).
func (s *session) refusePlaintext() error {
	if s.srv.cfg.TLSConfig == nil {
		return s.fail("[AUTH] plaintext authentication is disabled on unencrypted connections; use the POP3S port")
	}
	return s.fail("[AUTH] plaintext authentication is disabled on unencrypted connections; issue STLS first")
}

// userCmd implements USER name (RFC 1939 §7). The name is the rest of the
// line without surrounding spaces, so it may contain spaces inside.
func (s *session) userCmd(c command) error {
	if !s.plaintextAllowed() {
		return s.refusePlaintext()
	}
	s.user = strings.Trim(c.rest, " ")
	return s.ok("send PASS")
}

// passCmd implements PASS string (RFC 1939 §7); the password is the rest of
// the line, spaces included.
func (s *session) passCmd(c command) error {
	if !s.plaintextAllowed() {
		return s.refusePlaintext()
	}
	if s.user == "" {
		return s.fail("send USER first")
	}
	user := s.user
	s.user = "" // RFC 1939 §7: after a failed PASS, USER starts over
	return s.login(user, c.rest)
}

// authCmd implements AUTH (RFC 5034) with the PLAIN mechanism (RFC 4616).
func (s *session) authCmd(c command) error {
	if len(c.args) == 0 {
		// The mechanism list of the pre-RFC 5034 drafts, still asked for
		// by some clients.
		return s.writeLine("+OK\r\nPLAIN\r\n.")
	}
	if !strings.EqualFold(c.args[0], "PLAIN") {
		return s.fail("unsupported authentication mechanism")
	}
	if !s.plaintextAllowed() {
		return s.refusePlaintext()
	}
	var response string
	if len(c.args) == 2 {
		response = c.args[1]
		if response == "=" { // RFC 5034 §4: an empty initial response
			response = ""
		}
	} else {
		// RFC 5034 §4: an empty challenge, then the client's response,
		// which may be longer than a command line.
		if err := s.writeLine("+ "); err != nil {
			return err
		}
		line, err := s.readLine(maxSASLLine)
		switch {
		case errors.Is(err, errLineTooLong):
			return s.fail("authentication response too long")
		case err != nil:
			return err
		}
		response = line
	}
	if response == "*" {
		return s.fail("authentication cancelled") // RFC 5034 §4
	}
	authz, authc, password, err := decodePlain(response)
	if err != nil {
		return s.fail("%v", err)
	}
	if authz != "" && authz != authc {
		// Acting as another user needs an admin concept POP3 does not
		// have here; refuse without checking the password.
		s.authFailureDelay()
		return s.fail("[AUTH] authorization identity must be empty or match the login")
	}
	return s.login(authc, password)
}

// decodePlain decodes a PLAIN response (RFC 4616 §2):
// [authzid] NUL authcid NUL passwd, in base64.
func decodePlain(response string) (authz, authc, password string, err error) {
	raw, err := base64.StdEncoding.DecodeString(response)
	if err != nil {
		return "", "", "", errors.New("invalid base64 in authentication response")
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 || parts[1] == "" {
		return "", "", "", errors.New("malformed PLAIN response")
	}
	return parts[0], parts[1], parts[2], nil
}

// login asks the backend and enters TRANSACTION state. Unknown user and
// wrong password get the same reply after the same delay (RELIABILITY #23).
func (s *session) login(user, password string) error {
	ctx, cancel := context.WithTimeout(s.ctx, loginTimeout)
	defer cancel()
	drop, err := s.srv.cfg.Backend.Login(ctx, user, password, s.raw.RemoteAddr())
	switch {
	case err == nil:
	case errors.Is(err, ErrAuthFailed):
		s.srv.log.Info("pop3 login failed", "client_ip", s.ip, "user", user, "tls", s.isTLS)
		s.authFailureDelay()
		return s.fail("[AUTH] invalid user name or password")
	case errors.Is(err, ErrInUse):
		// RFC 3206 §4: [IN-USE], another session holds the lock.
		return s.fail("[IN-USE] maildrop is locked by another session, try again later")
	default:
		s.srv.log.Warn("pop3 login", "client_ip", s.ip, "user", user, "err", err)
		return s.failSys(err, "cannot open the maildrop now")
	}
	msgs, err := drop.Messages(ctx)
	if err != nil {
		drop.Close()
		s.srv.log.Warn("pop3 read maildrop", "client_ip", s.ip, "user", user, "err", err)
		return s.failSys(err, "cannot read the maildrop now")
	}
	s.drop, s.msgs, s.deleted = drop, msgs, make([]bool, len(msgs))
	s.state, s.account, s.errors = stateTransaction, user, 0
	s.srv.log.Info("pop3 login", "client_ip", s.ip, "user", user, "tls", s.isTLS, "messages", len(msgs))
	n, size := s.totals()
	return s.ok("maildrop has %d messages (%d octets)", n, size)
}

// authFailureDelay slows password guessing; Close cuts it short.
func (s *session) authFailureDelay() {
	d := s.srv.cfg.AuthFailureDelay
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
	}
}
