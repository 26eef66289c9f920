package dnsd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Server. Only Addrs and Zones are required.
type Config struct {
	// Addrs are host:port pairs; each is served on UDP and TCP on the same port.
	// "[::]:53" is dual stack. Port 0 picks a free port (see Server.Addrs).
	Addrs  []string
	Zones  ZoneSource
	Logger *slog.Logger
	// AllowTransfer lists the networks that may AXFR; empty refuses every transfer.
	AllowTransfer []netip.Prefix
	// RateLimit is the number of UDP responses per second per client network (/24
	// IPv4, /56 IPv6); 0 disables limiting. Over it, every RateSlip-th response is
	// an empty TC=1 answer and the rest are dropped.
	RateLimit int
	// RateSlip defaults to 2 (BIND's default); negative never slips.
	RateSlip int
	// MaxUDPSize caps the EDNS buffer a client may ask for; default 1232, the
	// DNS flag day 2020 value that avoids IP fragmentation.
	MaxUDPSize uint16
	// UDPSockets is the number of UDP sockets per address sharing its port
	// (SO_REUSEPORT, Linux only); default GOMAXPROCS. UDPWorkers is the number
	// of goroutines reading each; default 1. Their product bounds the goroutines
	// a DNS flood can keep busy, so mail keeps its share of the CPU (RELIABILITY
	// #35).
	UDPSockets int
	UDPWorkers int
	// MaxTCPConns bounds concurrent TCP connections; default 256. TCPIdleTimeout
	// closes idle ones; default 10 s (RFC 7766 §6.2.3).
	MaxTCPConns    int
	TCPIdleTimeout time.Duration
	// PollInterval is how often Zones.Version is checked; default 1 s. Refresh
	// applies a change at once.
	PollInterval time.Duration
}

// Stats are counters since New. Panics must stay 0.
type Stats struct {
	Queries, Dropped, FormErr, Refused, Truncated, RateLimited uint64
	TransfersServed, TransfersRefused, Panics                  uint64
	ZoneVersion                                                uint64
}

// Server is the authoritative DNS server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	maxUDP uint16
	rl     *rateLimiter
	tbl    atomic.Pointer[table]

	rebuild  sync.Mutex // serializes table builds
	built    bool       // a table from Zones is loaded; guarded by rebuild
	mu       sync.Mutex // guards the fields below
	started  bool
	closed   bool
	udp      []*net.UDPConn
	tcp      []net.Listener
	conns    map[net.Conn]struct{}
	bound    []string
	stop     chan struct{}
	wg       sync.WaitGroup
	tcpCount atomic.Int64

	stats struct {
		queries, dropped, formErr, refused, truncated, rateLimited atomic.Uint64
		xfrServed, xfrRefused, panics                              atomic.Uint64
	}
}

// New checks cfg and returns a server that is not yet listening.
func New(cfg Config) (*Server, error) {
	if cfg.Zones == nil {
		return nil, errors.New("dnsd: Config.Zones is nil")
	}
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("dnsd: no listen address")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RateSlip == 0 {
		cfg.RateSlip = 2
	}
	if cfg.MaxUDPSize == 0 {
		cfg.MaxUDPSize = 1232
	}
	cfg.MaxUDPSize = max(cfg.MaxUDPSize, 512)
	if cfg.UDPSockets <= 0 {
		cfg.UDPSockets = runtime.GOMAXPROCS(0)
	}
	if cfg.UDPWorkers <= 0 {
		cfg.UDPWorkers = 1
	}
	if cfg.MaxTCPConns <= 0 {
		cfg.MaxTCPConns = 256
	}
	if cfg.TCPIdleTimeout <= 0 {
		cfg.TCPIdleTimeout = 10 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With("component", "dnsd"), maxUDP: cfg.MaxUDPSize,
		conns: map[net.Conn]struct{}{}, stop: make(chan struct{})}
	if cfg.RateLimit > 0 {
		s.rl = newRateLimiter(cfg.RateLimit, cfg.RateSlip, time.Now)
	}
	s.tbl.Store(&table{zones: map[string]*zoneData{}, fast: map[string]*fastName{}})
	return s, nil
}

// Start compiles the zones and listens on every address, UDP and TCP.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closed {
		return errors.New("dnsd: already started")
	}
	s.started = true
	s.Refresh()
	for _, addr := range s.cfg.Addrs {
		group, l, err := listenGroup(addr, s.cfg.UDPSockets)
		if err != nil {
			s.closeLocked()
			return err
		}
		s.udp = append(s.udp, group...)
		s.tcp = append(s.tcp, l)
		s.bound = append(s.bound, group[0].LocalAddr().String())
		s.log.Info("dns listening", "addr", group[0].LocalAddr().String(), "udp_sockets", len(group))
	}
	for _, u := range s.udp {
		for range s.cfg.UDPWorkers {
			s.wg.Add(1)
			go s.serveUDP(u)
		}
	}
	for _, l := range s.tcp {
		s.wg.Add(1)
		go s.serveTCP(l)
	}
	s.wg.Add(1)
	go s.watch()
	return nil
}

// udpReadBuffer is the receive buffer asked for each UDP socket.
const udpReadBuffer = 2 << 20

// listenGroup binds n UDP sockets (one unless the platform can share a port) and
// a TCP listener on the same port; with port 0 it retries a few times in case the
// port is taken for TCP.
func listenGroup(addr string, n int) ([]*net.UDPConn, net.Listener, error) {
	if !canReusePort {
		n = 1
	}
	lc := net.ListenConfig{}
	if n > 1 {
		lc.Control = reusePort
	}
	ctx := context.Background()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dns listen %s: %w", addr, err)
	}
	for try := 0; ; try++ {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dns listen udp %s: %w", addr, err)
		}
		first := pc.(*net.UDPConn)
		bound := first.LocalAddr().String()
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(first.LocalAddr().(*net.UDPAddr).Port)))
		if err != nil {
			first.Close()
			if try < 10 && strings.HasSuffix(addr, ":0") {
				continue
			}
			return nil, nil, fmt.Errorf("dns listen tcp %s: %w", bound, err)
		}
		group := []*net.UDPConn{first}
		for len(group) < n {
			pc, err := lc.ListenPacket(ctx, "udp", bound)
			if err != nil {
				for _, u := range group {
					u.Close()
				}
				l.Close()
				return nil, nil, fmt.Errorf("dns listen udp %s: %w", bound, err)
			}
			group = append(group, pc.(*net.UDPConn))
		}
		for _, u := range group {
			// A bigger receive queue than Linux's default (about 200 KB) absorbs
			// bursts while the mail services hold the CPU, instead of dropping
			// queries; the kernel caps it at net.core.rmem_max. Best effort.
			u.SetReadBuffer(udpReadBuffer)
		}
		return group, l, nil
	}
}

// Addrs returns the bound addresses, one per Config.Addrs entry, each serving UDP
// and TCP.
func (s *Server) Addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bound...)
}

// Close stops listening, closes TCP connections and waits for every goroutine.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closeLocked()
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) closeLocked() {
	s.closed = true
	close(s.stop)
	for _, u := range s.udp {
		u.Close()
	}
	for _, l := range s.tcp {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
}

// Refresh recompiles the zones now if their version changed; the node may call it
// after applying a zone change so the answer is visible at once.
func (s *Server) Refresh() {
	s.rebuild.Lock()
	defer s.rebuild.Unlock()
	v := s.cfg.Zones.Version()
	if s.built && s.tbl.Load().version == v {
		return
	}
	s.built = true
	start := time.Now()
	t, problems := buildTable(v, s.cfg.Zones.Zones())
	for _, p := range problems {
		s.log.Warn("dns zone record skipped", "err", p)
	}
	s.tbl.Store(t)
	s.log.Info("dns zones loaded", "version", v, "zones", len(t.zones), "names", len(t.fast),
		"took", time.Since(start))
}

// watch polls the zone version until Close.
func (s *Server) watch() {
	defer s.wg.Done()
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			if s.cfg.Zones.Version() != s.tbl.Load().version {
				s.Refresh()
			}
		}
	}
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Queries: s.stats.queries.Load(), Dropped: s.stats.dropped.Load(), FormErr: s.stats.formErr.Load(),
		Refused: s.stats.refused.Load(), Truncated: s.stats.truncated.Load(),
		RateLimited: s.stats.rateLimited.Load(), TransfersServed: s.stats.xfrServed.Load(),
		TransfersRefused: s.stats.xfrRefused.Load(), Panics: s.stats.panics.Load(),
		ZoneVersion: s.tbl.Load().version,
	}
}
