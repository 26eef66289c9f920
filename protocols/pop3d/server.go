// Package pop3d is Tandem's POP3 server (RFC 1939, with CAPA from RFC
// 2449, STLS from RFC 2595, SASL PLAIN from RFC 5034 and the response codes
// of RFC 3206). It owns the wire protocol; mail comes from a Backend.
package pop3d

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Errors a Backend returns from Login.
var (
	ErrAuthFailed = errors.New("authentication failed")
	ErrInUse      = errors.New("maildrop in use")
)

// Backend opens maildrops.
type Backend interface {
	// Login checks credentials and opens the user's maildrop, locked for
	// this session (ErrAuthFailed, ErrInUse).
	Login(ctx context.Context, username, password string, remote net.Addr) (Maildrop, error)
}

// Maildrop is one user's messages for the length of a session.
type Maildrop interface {
	Messages(ctx context.Context) ([]MessageInfo, error)
	Open(ctx context.Context, m MessageInfo) (io.ReadCloser, error)
	// Delete removes the messages marked with DELE, at QUIT only.
	Delete(ctx context.Context, msgs []MessageInfo) error
	Close() error
}

// MessageInfo describes one message of a maildrop.
type MessageInfo struct {
	ID   uint32 // the backend's key (the IMAP UID)
	UIDL string // stable across sessions, restarts and failover
	Size int64  // octets as stored (stored mail has CRLF line ends)
}

// Config configures a Server.
type Config struct {
	Hostname          string
	TLSConfig         *tls.Config // STLS on the plain listener; required for ServeTLS
	AllowInsecureAuth bool        // passwords before STLS (tests, trusted loopback)
	IdleTimeout       time.Duration
	Logger            *slog.Logger
	Backend           Backend
	// MaxErrors closes a session after this many bad commands (default 20).
	MaxErrors int
}

// Server serves POP3 on any number of listeners.
type Server struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	closed    bool
	wg        sync.WaitGroup
	panics    atomic.Int64
}

// New makes a server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.IdleTimeout <= 0 {
		// RFC 1939 §3: an autologout timer of at least 10 minutes.
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = 20
	}
	return &Server{cfg: cfg, log: cfg.Logger, listeners: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}}
}

// Panics counts sessions that ended in a recovered panic (tests assert 0).
func (s *Server) Panics() int64 { return s.panics.Load() }

// Serve accepts plain connections (STLS offered when TLSConfig is set).
func (s *Server) Serve(l net.Listener) error { return s.serve(l, false) }

// ServeTLS accepts implicit-TLS connections (port 995).
func (s *Server) ServeTLS(l net.Listener) error {
	if s.cfg.TLSConfig == nil {
		return errors.New("pop3d: ServeTLS without a TLS config")
	}
	return s.serve(tls.NewListener(l, s.cfg.TLSConfig), true)
}

func (s *Server) serve(l net.Listener, isTLS bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return net.ErrClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: back off, never spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("pop3 accept", "err", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !s.track(c, true) {
			c.Close()
			return nil
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.track(c, false)
			s.handle(c, isTLS)
		}()
	}
}

func (s *Server) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closed {
			return false
		}
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	return true
}

func (s *Server) handle(c net.Conn, isTLS bool) {
	defer c.Close()
	defer func() {
		if r := recover(); r != nil {
			s.panics.Add(1)
			s.log.Error("pop3 session panic", "client_ip", c.RemoteAddr(), "panic", r)
		}
	}()
	sess := newSession(s, c, isTLS)
	sess.run()
}

// Close stops every listener and session and waits for them.
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
	s.wg.Wait()
	return nil
}
