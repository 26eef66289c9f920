package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/tandemmail/tandem/filter"
)

// backend makes a session per EHLO/HELO (go-smtp makes a new one after
// STARTTLS, so TLS state is fixed for a session's life).
type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	raw := rawConn(c.Conn())
	if raw == nil {
		return nil, errors.New("smtpd: connection not accepted by this server")
	}
	ctx, cancel := context.WithCancel(b.s.ctx)
	st, isTLS := c.TLSConnectionState()
	ip := remoteIP(raw.Conn)
	return &session{
		srv:    b.s,
		c:      c,
		raw:    raw,
		ctx:    ctx,
		cancel: cancel,
		ip:     ip,
		tls:    isTLS,
		tlsSt:  st,
		log:    b.s.log.With("client_ip", ip.String()),
	}, nil
}

// session implements smtp.Session and smtp.AuthSession. go-smtp calls its
// methods from the connection's goroutine, except Data for BDAT, which runs
// in a goroutine of its own and may overlap Reset and Logout.
type session struct {
	srv    *Server
	c      *smtp.Conn
	raw    *conn
	ctx    context.Context // the per-connection context (STYLE: the one kept in a struct)
	cancel context.CancelFunc
	ip     net.IP
	tls    bool
	tlsSt  tls.ConnectionState
	log    *slog.Logger

	accountID uint64 // authenticated account, 0 = none

	// The transaction. go-smtp runs Data for BDAT in its own goroutine and
	// may call Reset (RSET, close) while that still runs, so Data works on
	// a snapshot taken under mu.
	mu    sync.Mutex
	env   *filter.Envelope
	tx    filter.Transaction
	rcpts []string
	// inData tracks a running Data. Reset waits for it: go-smtp v0.25.1
	// hands a BDAT result to whichever transaction is current when Data
	// returns (it replaces Conn.dataResult for the next BDAT), so a
	// reset transaction must be finished before the next one starts.
	inData sync.WaitGroup
}

var (
	_ smtp.Session     = (*session)(nil)
	_ smtp.AuthSession = (*session)(nil)
)

func (s *session) submission() bool {
	return s.srv.cfg.Mode == ModeSubmission || s.srv.cfg.Mode == ModeSubmissions
}

// Mail starts a transaction (RFC 5321 §4.1.1.2).
func (s *session) Mail(from string, opts *smtp.MailOptions) (err error) {
	defer s.recoverPanic(&err)
	if s.current() != nil {
		return s.fail(&smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Nested MAIL command"})
	}
	if s.submission() {
		// RFC 6409 §4.3 / RFC 3207 §4: submission needs TLS, then AUTH.
		if !s.tls && !s.srv.cfg.AllowInsecureAuth {
			return s.fail(&smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue STARTTLS first"})
		}
		if s.accountID == 0 {
			// RFC 4954 §6
			return s.fail(&smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"})
		}
	}
	if opts == nil {
		opts = &smtp.MailOptions{}
	}
	env := &filter.Envelope{
		ID:            newID(),
		ClientIP:      s.ip,
		HELO:          s.c.Hostname(),
		TLS:           s.tls,
		AuthAccountID: s.accountID,
		From:          from,
		SMTPUTF8:      opts.UTF8,
		Body8BIT:      opts.Body == smtp.Body8BitMIME,
		Size:          opts.Size,
	}
	tx, err := s.srv.cfg.Deliverer.Begin(s.ctx, env)
	if err != nil {
		s.log.Info("smtp mail rejected", "msg_id", env.ID, "err", err)
		return s.fail(err)
	}
	s.mu.Lock()
	s.env, s.tx, s.rcpts = env, tx, nil
	s.mu.Unlock()
	return nil
}

// current returns the open transaction, or nil.
func (s *session) current() filter.Transaction {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tx
}

// Rcpt adds a recipient (RFC 5321 §4.1.1.3); the filter decides.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) (err error) {
	defer s.recoverPanic(&err)
	s.mu.Lock()
	env, tx := s.env, s.tx
	s.mu.Unlock()
	if tx == nil {
		return s.fail(&smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Need MAIL before RCPT"})
	}
	if err := tx.AddRcpt(s.ctx, to); err != nil {
		s.log.Info("smtp rcpt rejected", "msg_id", env.ID, "err", err)
		return s.fail(err)
	}
	s.mu.Lock()
	if s.tx == tx {
		s.rcpts = append(s.rcpts, to)
	}
	s.mu.Unlock()
	return nil
}

// Data receives the message (DATA or BDAT) and commits it through the
// filter; the 250 reply is only sent when that returned nil, i.e. the blob
// is fsynced and the delivery applied through Raft.
func (s *session) Data(r io.Reader) (err error) {
	s.inData.Add(1)
	defer s.inData.Done()
	defer s.recoverPanic(&err)
	s.mu.Lock()
	env, tx, rcpts := s.env, s.tx, append([]string(nil), s.rcpts...)
	s.mu.Unlock()
	if tx == nil {
		return s.fail(&smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Need MAIL before DATA"})
	}
	if s.raw.desync.Load() {
		// RELIABILITY #19: the message came before our 354.
		s.log.Info("smtp pipelining violation", "msg_id", env.ID)
		s.raw.writeRaw("554 5.5.0 Protocol synchronization error: message sent before the 354 reply\r\n")
		s.raw.closeGracefully()
		return errors.New("protocol synchronization error")
	}
	env.Trace = s.received(env, rcpts, time.Now())
	mr := &messageReader{r: r}
	// RFC 5321 §4.5.3.2.5-6: the DATA timeout is per block, not for the
	// whole message as go-smtp's per-command deadline would be. It stays
	// on while go-smtp drains a refused message, until Reset.
	s.raw.idleTimeout.Store(int64(s.srv.cfg.Timeout))
	err = tx.Body(s.ctx, mr)
	switch {
	case err == nil:
		s.log.Info("smtp message accepted", "msg_id", env.ID, "rcpts", len(rcpts), "bytes", mr.n)
		// go-smtp sends a fixed "250 2.0.0 OK: queued" for nil; a 250
		// SMTPError carries the message ID instead (dataErrorToStatus).
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + env.ID}
	case errors.Is(err, errSmuggling):
		s.log.Warn("smtp smuggling attempt", "msg_id", env.ID)
		return s.fail(&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
			Message: "Bare LF followed by a dot in message: refused as possible SMTP smuggling"})
	case errors.Is(err, smtp.ErrDataTooLarge):
		return s.fail(smtp.ErrDataTooLarge)
	case isTimeout(err):
		s.log.Info("smtp data timeout", "msg_id", env.ID)
		return s.closeWith(&smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout reading the message, closing connection"})
	}
	if _, ok := filter.AsReject(err); !ok && mr.err != nil {
		// The client went away or reset mid-message: nothing was stored.
		s.log.Info("smtp data aborted", "msg_id", env.ID, "err", mr.err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Message not received completely"}
	}
	s.log.Info("smtp message rejected", "msg_id", env.ID, "err", err)
	return s.fail(err)
}

// Reset ends the transaction (RSET, after DATA, new EHLO).
func (s *session) Reset() {
	s.raw.idleTimeout.Store(0)
	s.mu.Lock()
	tx := s.tx
	s.env, s.tx, s.rcpts = nil, nil, nil
	s.mu.Unlock()
	if tx != nil {
		tx.Abort()
	}
	// go-smtp closed the BDAT pipe before calling Reset, so a running
	// Data fails its read and returns promptly.
	s.inData.Wait()
}

// Logout is called when the connection closes or STARTTLS replaces the
// session.
func (s *session) Logout() error {
	s.cancel() // first: a Data waiting on Raft gives up
	s.Reset()
	return nil
}

// fail turns err into the client's reply and counts it; past MaxErrors the
// connection is closed with 421 4.7.0 (RELIABILITY #45).
func (s *session) fail(err error) error {
	reply := replyFor(err)
	if n := int(s.raw.errors.Add(1)); n >= s.srv.cfg.MaxErrors {
		s.log.Info("smtp too many errors", "errors", n)
		return s.closeWith(&smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
			Message: reply.Message + "; too many errors, closing connection"})
	}
	return reply
}

// closeWith sends a final reply itself and closes the connection: go-smtp
// has no way for a session to end the connection after its reply.
func (s *session) closeWith(reply *smtp.SMTPError) error {
	nc := s.c.Conn()
	nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(nc, replyLine(reply))
	s.raw.closeGracefully()
	return reply
}

// recoverPanic turns a panic in a session method into 421 and a closed
// connection, and counts it (Server.Panics).
func (s *session) recoverPanic(err *error) {
	p := recover()
	if p == nil {
		return
	}
	s.srv.panics.Add(1)
	s.log.Error("smtp session panic", "panic", p, "stack", string(debug.Stack()))
	*err = s.closeWith(&smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Internal error, closing connection"})
}

// AuthMechanisms lists SASL mechanisms; go-smtp offers them only over TLS
// unless AllowInsecureAuth.
func (s *session) AuthMechanisms() []string {
	if s.srv.cfg.Auth == nil {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth starts a SASL exchange (RFC 4954).
func (s *session) Auth(mech string) (srv sasl.Server, err error) {
	defer s.recoverPanic(&err)
	if s.srv.cfg.Auth == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	if s.current() != nil {
		// RFC 4954 §4: not during a mail transaction.
		return nil, &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "AUTH not permitted during a mail transaction"}
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, password string) error {
			// RFC 4616 §2: an authzid other than the user would be
			// acting for someone else; not supported.
			if identity != "" && identity != user {
				return s.authFailed(user, "authorization identity differs")
			}
			return s.authenticate(user, password)
		}), nil
	case sasl.Login:
		return &loginServer{authenticate: s.authenticate}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *session) authenticate(user, password string) error {
	if g := s.srv.cfg.AuthGuard; g != nil {
		if err := g.AllowAuth(s.ip, user); err != nil {
			s.log.Warn("smtp auth refused by the firewall", "err", err)
			return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed logins, try again later"}
		}
	}
	id, err := s.srv.cfg.Auth.Authenticate(s.ctx, user, password)
	if err != nil {
		if isAuthFailure(err) {
			if g := s.srv.cfg.AuthGuard; g != nil {
				g.AuthFailed(s.ip, user)
			}
			return s.authFailed(user, "bad credentials")
		}
		s.log.Warn("smtp auth unavailable", "err", err)
		return &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
	}
	s.accountID = id
	s.log.Info("smtp auth", "account", id)
	return nil
}

// authFailed gives the one reply for unknown users and wrong passwords
// alike (byte-identical 535 5.7.8), and counts it.
func (s *session) authFailed(user, why string) error {
	s.log.Info("smtp auth failed", "why", why)
	if n := int(s.raw.errors.Add(1)); n >= s.srv.cfg.MaxErrors {
		return s.closeWith(&smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many errors, closing connection"})
	}
	return smtp.ErrAuthFailed
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
