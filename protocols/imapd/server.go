// Package imapd is Tandem's IMAP server (RFC 9051 and RFC 3501 with
// UIDPLUS, MOVE, SPECIAL-USE, LIST-EXTENDED/LIST-STATUS, NAMESPACE, IDLE,
// ESEARCH, BINARY, APPENDLIMIT). go-imap's imapserver owns the wire
// protocol; this package is its backend over storage: sessions, the
// shared view of selected mailboxes, FETCH from stored blobs and SEARCH.
// It never writes state except through storage.Store's Raft-backed
// methods, and never parses IMAP itself.
package imapd

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

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/tandemmail/tandem/storage"
)

// DefaultAppendLimit is the APPEND size limit when Config.AppendLimit is 0.
const DefaultAppendLimit = 50 << 20

// Config configures a Server.
type Config struct {
	Store *storage.Store
	// TLSConfig enables STARTTLS on Serve and is required by ServeTLS.
	TLSConfig *tls.Config
	// AllowInsecureAuth allows LOGIN and AUTHENTICATE before TLS (tests,
	// trusted loopback). Off, plaintext logins get NO [PRIVACYREQUIRED].
	AllowInsecureAuth bool
	Logger            *slog.Logger
	// AppendLimit is the largest message APPEND accepts (RFC 7889); 0
	// means DefaultAppendLimit.
	AppendLimit uint32
	// Transferred, if set, is told after a successful COPY or MOVE which
	// messages went from one mailbox to another (spam learning: into Junk
	// trains spam, out of it trains ham). It must not block for long.
	Transferred func(ctx context.Context, accountID uint64, from, to storage.Mailbox, msgs []storage.Message)
	// AuthGuard, if set, is the mail firewall's say on logins: AllowAuth
	// is asked first (an error refuses with NO [UNAVAILABLE]), AuthFailed
	// is told of each failed login (node/firewall.go).
	AuthGuard interface {
		AllowAuth(ip net.IP, user string) error
		AuthFailed(ip net.IP, user string)
	}
}

// Server is an IMAP server; one serves any number of listeners.
type Server struct {
	cfg    Config
	log    *slog.Logger
	imap   *imapserver.Server
	reg    *registry
	panics atomic.Int64

	ctx    context.Context // cancelled by Close: ends storage calls of live sessions
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	sessions sync.WaitGroup
}

// caps are the capabilities offered besides those go-imap adds itself
// (STARTTLS, AUTH=PLAIN, LOGINDISABLED, IDLE, UNSELECT, ENABLE, SASL-IR,
// LITERAL-, APPENDLIMIT=n). LITERAL+ is deliberately absent: with it a
// client may send any size as a non-synchronizing literal and go-imap
// would parse an oversized, refused literal as commands (RELIABILITY #25).
// CONDSTORE is added by serverCaps only when the linked imapserver parses
// its syntax; go-imap v2.0.0-beta.8's does not (condstore.go).
var caps = imap.CapSet{
	imap.CapIMAP4rev1:        {},
	imap.CapIMAP4rev2:        {},
	imap.CapNamespace:        {},
	imap.CapUIDPlus:          {},
	imap.CapESearch:          {},
	imap.CapListExtended:     {},
	imap.CapListStatus:       {},
	imap.CapMove:             {},
	imap.CapStatusSize:       {},
	imap.CapBinary:           {},
	imap.CapChildren:         {},
	imap.CapSpecialUse:       {},
	imap.CapCreateSpecialUse: {},
}

// New builds a server; it serves nothing until Serve or ServeTLS.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AppendLimit == 0 {
		cfg.AppendLimit = DefaultAppendLimit
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.reg = newRegistry(cfg.Store, cfg.Logger, &s.panics)
	s.imap = imapserver.New(&imapserver.Options{
		NewSession:   s.newSession,
		Caps:         serverCaps(),
		Logger:       libLogger{s},
		TLSConfig:    cfg.TLSConfig,
		InsecureAuth: cfg.AllowInsecureAuth,
	})
	return s
}

// Serve accepts plain connections (port 143), offering STARTTLS when
// Config.TLSConfig is set. It returns nil once Close is called.
func (s *Server) Serve(l net.Listener) error {
	err := s.imap.Serve(l)
	if err != nil && s.isClosed() {
		return nil
	}
	return err
}

// ServeTLS accepts implicit-TLS connections (port 993, RFC 8314).
func (s *Server) ServeTLS(l net.Listener) error {
	if s.cfg.TLSConfig == nil {
		return errors.New("imapd: ServeTLS needs Config.TLSConfig")
	}
	return s.Serve(tls.NewListener(l, s.cfg.TLSConfig))
}

// Close stops the listeners, closes every connection and waits until all
// sessions and watchers have ended.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	err := s.imap.Close()
	s.sessions.Wait()
	s.reg.closeAll()
	if err != nil && !strings.Contains(err.Error(), "server closed") {
		return fmt.Errorf("imapd: close: %w", err)
	}
	return nil
}

// Panics counts recovered panics in connection handlers and watchers;
// tests assert it stays 0 (RELIABILITY #41).
func (s *Server) Panics() int64 { return s.panics.Load() }

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		// go-imap registers a connection before this call; one accepted
		// while Close ran might have been missed by its sweep.
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "server shutting down"}
	}
	s.sessions.Add(1)
	return newSession(s, c), nil, nil
}

// libLogger routes go-imap's log lines to slog and counts the panics its
// per-connection recover catches.
type libLogger struct{ s *Server }

func (l libLogger) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	switch {
	case strings.HasPrefix(format, "panic"):
		l.s.panics.Add(1)
		l.s.log.Error("imap: panic", "err", msg)
	case isNetError(msg):
		l.s.log.Debug("imap: connection", "msg", msg)
	case strings.HasPrefix(format, "handling"):
		// go-imap's own errors while handling a command, answered NO
		// [SERVERBUG]; ours are always *imap.Error and never get here.
		// Most are client input it refuses loosely (a bad number set, a
		// mailbox name that is not modified UTF-7, nesting past its limit).
		l.s.log.Info("imap: command refused by go-imap", "err", msg)
	default:
		l.s.log.Debug("imap: connection", "msg", msg)
	}
}

func isNetError(msg string) bool {
	for _, s := range []string{"use of closed network connection", "broken pipe", "connection reset", "i/o timeout", "EOF"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
