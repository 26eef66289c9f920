// Package pop3d is Tandem's POP3 server: RFC 1939 with CAPA (RFC 2449), STLS
// (RFC 2595), SASL PLAIN (RFC 5034, RFC 4616) and the extended response codes
// of RFC 3206. No Go library does this well, so this package owns the wire
// protocol itself: command parsing, the AUTHORIZATION / TRANSACTION / UPDATE
// states, TLS rules, dot-stuffing and every limit and timeout.
//
// Mail comes from a Backend, which checks passwords and opens one locked
// maildrop per session. The package must not know how mail is stored, and it
// deletes messages only through Maildrop.Delete, at QUIT (RFC 1939 §6).
//
// Sizes: LIST, STAT and the RETR reply report MessageInfo.Size, the size as
// stored. Tandem stores mail with CRLF line ends, so that is the size as sent
// (before dot-stuffing, which RFC 1939 §5 excludes). For stored mail with bare
// LF lines the server still sends CRLF, so the real transfer is larger than
// the figure by the number of bare LFs; measuring every message at login to
// avoid that is not worth the cost, and clients use the figure only as a hint.
package pop3d

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Errors a Backend returns (wrapped or not); the server maps them to the
// response codes of RFC 3206. Any other error is a temporary failure
// ([SYS/TEMP]).
var (
	// ErrAuthFailed: unknown user or wrong password; both get the same reply.
	ErrAuthFailed = errors.New("authentication failed")
	// ErrInUse: another session holds the maildrop lock (RFC 1939 §8, [IN-USE]).
	ErrInUse = errors.New("maildrop in use")
	// ErrPermanent: a failure that retrying will not fix ([SYS/PERM]), such as
	// a disabled account.
	ErrPermanent = errors.New("permanent failure")
)

// Backend opens maildrops.
type Backend interface {
	// Login checks credentials and opens the user's maildrop (their INBOX),
	// locked for this session. It returns ErrAuthFailed for bad credentials
	// and ErrInUse when another session holds the maildrop.
	Login(ctx context.Context, username, password string, remote net.Addr) (Maildrop, error)
}

// Maildrop is one user's messages for the length of a session.
type Maildrop interface {
	// Messages is the snapshot the session works on, in order; POP3
	// message numbers are positions in it, counted from 1.
	Messages(ctx context.Context) ([]MessageInfo, error)
	// Open returns the message exactly as stored.
	Open(ctx context.Context, m MessageInfo) (io.ReadCloser, error)
	// Delete removes the messages marked with DELE. It is called once, at
	// QUIT, and never for a session that ends any other way.
	Delete(ctx context.Context, msgs []MessageInfo) error
	// Close releases the lock. It is called once when the session ends.
	Close() error
}

// MessageInfo describes one message of a maildrop.
type MessageInfo struct {
	ID uint32 // the backend's key (the IMAP UID)
	// UIDL is the unique-id (RFC 1939 §7): 1 to 70 characters from 0x21 to
	// 0x7E, never reused, and stable across sessions, restarts and failover.
	UIDL string
	Size int64 // octets as stored (stored mail has CRLF line ends)
}

// Config configures a Server. Zero values get the defaults noted.
type Config struct {
	Hostname string // in the greeting; default "localhost"
	// TLSConfig enables STLS on Serve and is required by ServeTLS.
	TLSConfig *tls.Config
	// AllowInsecureAuth allows USER/PASS and AUTH before TLS (tests, trusted
	// loopback). Off, they get -ERR until STLS (RFC 2595 §2.2).
	AllowInsecureAuth bool
	// IdleTimeout ends a session that sends nothing for this long without
	// entering UPDATE; default 10 minutes, the minimum of RFC 1939 §3.
	IdleTimeout time.Duration
	Logger      *slog.Logger
	Backend     Backend // required
	// MaxErrors is how many rejected commands a session may send before it
	// is closed (default 20, like Postfix's smtpd_hard_error_limit).
	MaxErrors int
	// AuthFailureDelay is the pause before a failed login is answered, to
	// slow password guessing; default 1 s, negative for none.
	AuthFailureDelay time.Duration
}

// Timeouts the configuration does not expose.
const (
	handshakeTimeout = 10 * time.Second // TLS handshake (RELIABILITY #38)
	writeTimeout     = 2 * time.Minute  // per flush: a client that stops reading is closed
	loginTimeout     = 30 * time.Second // Backend.Login plus Maildrop.Messages
	openTimeout      = 10 * time.Minute // one RETR or TOP
	deleteTimeout    = time.Minute      // Maildrop.Delete at QUIT
)

// Server serves POP3 on any number of listeners.
type Server struct {
	cfg    Config
	log    *slog.Logger
	panics atomic.Int64

	ctx    context.Context // cancelled by Close; parent of every session's context
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{} // the TCP connections of live sessions
	wg        sync.WaitGroup        // accept loops and sessions
}

// New returns a server; it serves nothing until Serve or ServeTLS.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute // RFC 1939 §3: at least 10 minutes
	}
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = 20
	}
	if cfg.AuthFailureDelay == 0 {
		cfg.AuthFailureDelay = time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel,
		listeners: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}}
}

// Panics is how many sessions ended in a recovered panic; tests assert 0.
func (s *Server) Panics() int64 { return s.panics.Load() }

// Serve accepts plain connections on l (port 110), offering STLS when
// TLSConfig is set. It returns nil after Close.
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeTLS accepts implicit-TLS connections on l (port 995, RFC 8314). It
// returns nil after Close.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.cfg.TLSConfig == nil {
		l.Close()
		return errors.New("pop3d: ServeTLS needs Config.TLSConfig")
	}
	return s.serve(l, true)
}

func (s *Server) serve(l net.Listener, implicitTLS bool) error {
	if s.cfg.Backend == nil {
		l.Close()
		return errors.New("pop3d: Config.Backend is nil")
	}
	if !s.addListener(l) {
		l.Close()
		return nil
	}
	defer s.wg.Done()
	defer s.removeListener(l)
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("pop3d: accept: %w", err)
			}
			// Out of file descriptors and the like: back off, never spin
			// (RELIABILITY #42).
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("pop3 accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		if !s.addConn(c) {
			c.Close()
			return nil
		}
		go s.handle(c, implicitTLS)
	}
}

// handle runs one session. A panic ends only this session and is counted.
func (s *Server) handle(c net.Conn, implicitTLS bool) {
	defer s.wg.Done()
	defer s.removeConn(c)
	defer c.Close()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			s.panics.Add(1)
			s.log.Error("pop3 session panic", "client_ip", clientIP(c.RemoteAddr()), "panic", r, "stack", string(debug.Stack()))
		}
	}()
	newSession(ctx, s, c).run(implicitTLS)
}

// Close stops every listener and session and waits until all of them have
// ended. Sessions that have not sent QUIT delete nothing.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// addListener and addConn register under the lock that Close takes, so the
// WaitGroup never grows after Close has started waiting.
func (s *Server) addListener(l net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.listeners[l] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) removeListener(l net.Listener) {
	s.mu.Lock()
	delete(s.listeners, l)
	s.mu.Unlock()
}

func (s *Server) addConn(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) removeConn(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// clientIP is the address logged under client_ip.
func clientIP(a net.Addr) string {
	if a == nil {
		return ""
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}
