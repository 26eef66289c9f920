// Package smtpd is Tandem's SMTP server: the inbound MX listener (port 25),
// submission with STARTTLS (587) and implicit-TLS submissions (465). The wire
// protocol is github.com/emersion/go-smtp's; this package implements its
// Session over a filter.Deliverer, which owns every policy decision about
// senders, recipients and messages.
//
// What this package owns: connection limits and timeouts, the TLS/AUTH rules
// of each port, SMTP smuggling and synchronization checks, the Received
// header and the translation of filter rejections into SMTP replies. It must
// not decide about recipients itself or write to storage.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/tandemmail/tandem/filter"
)

// Mode selects the rules of a listener.
type Mode int

const (
	// ModeMX accepts mail for hosted domains from anyone (port 25). AUTH is
	// optional and only offered after STARTTLS.
	ModeMX Mode = iota
	// ModeSubmission requires STARTTLS and then AUTH before MAIL (port 587,
	// RFC 6409).
	ModeSubmission
	// ModeSubmissions is submission over implicit TLS (port 465, RFC 8314);
	// serve it with ServeTLS.
	ModeSubmissions
)

func (m Mode) String() string {
	switch m {
	case ModeMX:
		return "mx"
	case ModeSubmission:
		return "submission"
	case ModeSubmissions:
		return "submissions"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Authenticator checks a user's password. For both an unknown user and a
// wrong password it returns an error wrapping storage.ErrAuthFailed (or
// ErrAuthFailed here); any other error is a temporary failure.
type Authenticator interface {
	Authenticate(ctx context.Context, user, password string) (accountID uint64, err error)
}

// AuthGuard is the mail firewall's say on logins (node/firewall.go):
// AllowAuth is asked before the password is checked (an error refuses
// with 454 4.7.0), AuthFailed is told of each failed login.
type AuthGuard interface {
	AllowAuth(ip net.IP, user string) error
	AuthFailed(ip net.IP, user string)
}

// AuthFunc adapts a function to Authenticator.
type AuthFunc func(ctx context.Context, user, password string) (uint64, error)

// Authenticate calls f.
func (f AuthFunc) Authenticate(ctx context.Context, user, password string) (uint64, error) {
	return f(ctx, user, password)
}

// Config configures a Server. Zero values get the defaults noted.
type Config struct {
	Hostname          string      // in the greeting and the Received header; required
	TLSConfig         *tls.Config // enables STARTTLS and ServeTLS
	Mode              Mode
	AllowInsecureAuth bool             // offer AUTH without TLS (tests, trusted loopback only)
	MaxMessageBytes   int64            // default 50 MiB (552 5.3.4 beyond)
	MaxRecipients     int              // default 1000 (452 4.5.3 beyond)
	MaxLineLength     int              // command and text line limit; default 2000 (RFC 5321 §4.5.3.1.6 doubled)
	MaxErrors         int              // rejected commands before 421 4.7.0 and disconnect; default 20
	Timeout           time.Duration    // per command, and idle time inside DATA; default 5 min (RFC 5321 §4.5.3.2)
	GreetDelay        time.Duration    // wait before the greeting and refuse clients that talk first; 0 = off
	Logger            *slog.Logger     // default: discard
	Deliverer         filter.Deliverer // required
	Auth              Authenticator    // nil: no AUTH offered
	AuthGuard         AuthGuard        // nil: logins are not limited here
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("smtpd: server closed")

// Server is an SMTP server for one Mode; it may serve many listeners.
type Server struct {
	cfg       Config
	log       *slog.Logger
	smtp      *smtp.Server
	ctx       context.Context // parent of every session's context
	cancel    context.CancelFunc
	panics    atomic.Int64 // in this package's session code
	libPanics atomic.Int64 // recovered by go-smtp itself

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	serving   sync.WaitGroup
}

// New makes a Server. Config.Deliverer is required.
func New(cfg Config) *Server {
	if cfg.Deliverer == nil {
		panic("smtpd: Config.Deliverer is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 50 << 20
	}
	if cfg.MaxRecipients <= 0 {
		cfg.MaxRecipients = 1000
	}
	if cfg.MaxLineLength <= 0 {
		cfg.MaxLineLength = 2000
	}
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = 20
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger.With("proto", "smtp", "mode", cfg.Mode.String()),
		ctx:       ctx,
		cancel:    cancel,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
	}
	ss := smtp.NewServer(backend{s})
	ss.Domain = cfg.Hostname
	ss.TLSConfig = cfg.TLSConfig
	ss.MaxMessageBytes = cfg.MaxMessageBytes
	ss.MaxRecipients = cfg.MaxRecipients
	ss.MaxLineLength = cfg.MaxLineLength
	ss.AllowInsecureAuth = cfg.AllowInsecureAuth
	ss.ReadTimeout = cfg.Timeout
	ss.WriteTimeout = cfg.Timeout
	ss.EnableSMTPUTF8 = true // RFC 6531: addresses pass through filter.ParseAddress
	ss.ErrorLog = errorLog{s}
	s.smtp = ss
	return s
}

// Panics counts panics recovered in this package's session code (each one
// closed its connection with 421 and left the server running).
func (s *Server) Panics() int64 { return s.panics.Load() }

// LibraryPanics counts panics go-smtp recovered in its own code. v0.25.1
// has one known case: a BDAT chunk racing the connection's close
// (Conn.Session() is nil in its BDAT goroutine).
func (s *Server) LibraryPanics() int64 { return s.libPanics.Load() }

// Serve accepts plaintext connections (STARTTLS offered when TLSConfig is
// set) until Close.
func (s *Server) Serve(l net.Listener) error {
	return s.serve(&listener{Listener: l, srv: s})
}

// ServeTLS accepts implicit-TLS connections (RFC 8314, port 465) until Close.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.cfg.TLSConfig == nil {
		return errors.New("smtpd: ServeTLS needs Config.TLSConfig")
	}
	return s.serve(tls.NewListener(&listener{Listener: l, srv: s, implicitTLS: true}, s.cfg.TLSConfig))
}

func (s *Server) serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.serving.Add(1)
	s.mu.Unlock()
	defer s.serving.Done()
	s.log.Info("smtp listening", "addr", l.Addr().String())
	err := s.smtp.Serve(l)
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil
	}
	return err
}

// Close stops the listeners, drops every connection (an unfinished DATA
// stores nothing) and returns once all connection goroutines have ended.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ls := make([]net.Listener, 0, len(s.listeners))
	for l := range s.listeners {
		ls = append(ls, l)
	}
	cs := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()

	for _, l := range ls {
		l.Close()
	}
	s.cancel()
	for _, c := range cs {
		c.Close()
	}
	// Every Serve has returned, so go-smtp accepts nothing more; Shutdown
	// then waits for its connection goroutines.
	s.serving.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.smtp.Shutdown(ctx); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("smtpd: shutdown: %w", err)
	}
	return nil
}

// track registers an accepted connection; false once the server is closed.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// errorLog receives go-smtp's internal errors: connection failures (debug
// noise) and panics it recovered outside our session methods (counted).
type errorLog struct{ s *Server }

func (l errorLog) Printf(format string, v ...any) { l.print(fmt.Sprintf(format, v...)) }
func (l errorLog) Println(v ...any)               { l.print(fmt.Sprintln(v...)) }

func (l errorLog) print(msg string) {
	if strings.HasPrefix(msg, "panic serving") {
		// Clients can trigger the known one at will: one short line, the
		// stack only at debug level.
		l.s.libPanics.Add(1)
		first, _, _ := strings.Cut(msg, "\n")
		l.s.log.Warn("smtp library panic", "err", first)
		l.s.log.Debug("smtp library panic stack", "err", msg)
		return
	}
	l.s.log.Debug("smtp connection", "err", strings.TrimSpace(msg))
}
