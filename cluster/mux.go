package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Channel selects what a cluster connection carries. Raft, joins, blob
// copies and client relays share one port (the rqlite mux idea), so a
// cluster needs one firewall rule per node.
type Channel byte

const (
	ChanRaft  Channel = 'R' // hashicorp/raft's network transport
	ChanRPC   Channel = 'J' // join, leave, forwarded admin calls (JSON)
	ChanBlob  Channel = 'B' // blob push and fetch
	ChanRelay Channel = 'P' // client connections relayed to the leader
)

// Connections are TLS (encryption) plus a mutual proof of the cluster
// secret bound to the TLS session: each side sends
// HMAC-SHA256(secret, role || exported keying material). A stranger without
// the secret cannot join or read anything, and a man in the middle cannot
// replay a proof into another TLS session (RFC 5705 exporters).
const (
	authLabel   = "EXPORTER-tandem-cluster-auth"
	authVersion = 1
	magic       = "TNDM"
)

// ErrAuth means the peer did not prove the cluster secret.
var ErrAuth = errors.New("cluster authentication failed")

// Mux accepts authenticated cluster connections and hands each to the
// handler of its channel.
type Mux struct {
	ln      net.Listener
	secret  []byte
	srvTLS  *tls.Config
	cliTLS  *tls.Config
	log     *slog.Logger
	timeout time.Duration

	mu       sync.Mutex
	handlers map[Channel]func(net.Conn)
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
}

// NewMux listens on addr. The TLS certificate is made per process: peers
// are authenticated by the secret, not by certificate chains.
func NewMux(addr string, secret []byte, log *slog.Logger) (*Mux, error) {
	if len(secret) < 16 {
		return nil, errors.New("cluster secret shorter than 16 bytes")
	}
	cert, err := ephemeralCert()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster: listen on %s: %w", addr, err)
	}
	if log == nil {
		log = slog.Default()
	}
	m := &Mux{
		ln: ln, secret: secret, log: log, timeout: 10 * time.Second,
		srvTLS:   &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13},
		cliTLS:   &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}, // identity is the secret proof
		handlers: map[Channel]func(net.Conn){},
		conns:    map[net.Conn]struct{}{},
	}
	return m, nil
}

// Handle registers the handler of a channel. Register before Serve.
func (m *Mux) Handle(ch Channel, h func(net.Conn)) {
	m.mu.Lock()
	m.handlers[ch] = h
	m.mu.Unlock()
}

// Addr is the bound address.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Serve accepts connections until Close.
func (m *Mux) Serve() {
	m.wg.Add(1)
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			m.log.Warn("cluster accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.accept(c)
		}()
	}
}

func (m *Mux) track(c net.Conn, on bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if on {
		if m.closed {
			return false
		}
		m.conns[c] = struct{}{}
	} else {
		delete(m.conns, c)
	}
	return true
}

func (m *Mux) accept(raw net.Conn) {
	defer func() {
		if r := recover(); r != nil {
			m.log.Error("cluster connection panic", "peer", raw.RemoteAddr(), "panic", r)
			raw.Close()
		}
	}()
	raw.SetDeadline(time.Now().Add(m.timeout))
	c := tls.Server(raw, m.srvTLS)
	ch, err := m.serverAuth(c)
	if err != nil {
		m.log.Warn("cluster connection refused", "peer", raw.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	raw.SetDeadline(time.Time{})
	m.mu.Lock()
	h := m.handlers[ch]
	m.mu.Unlock()
	if h == nil {
		m.log.Warn("cluster connection for unknown channel", "peer", raw.RemoteAddr(), "channel", string(ch))
		c.Close()
		return
	}
	if !m.track(c, true) {
		c.Close()
		return
	}
	defer m.track(c, false)
	h(c)
}

func (m *Mux) proof(c *tls.Conn, role string) ([]byte, error) {
	st := c.ConnectionState()
	ekm, err := st.ExportKeyingMaterial(authLabel, nil, 32)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, m.secret)
	mac.Write([]byte(role))
	mac.Write(ekm)
	return mac.Sum(nil), nil
}

func (m *Mux) serverAuth(c *tls.Conn) (Channel, error) {
	if err := c.Handshake(); err != nil {
		return 0, fmt.Errorf("tls: %w", err)
	}
	var hello [4 + 1 + 1 + 32]byte
	if _, err := io.ReadFull(c, hello[:]); err != nil {
		return 0, fmt.Errorf("read hello: %w", err)
	}
	if string(hello[:4]) != magic || hello[4] != authVersion {
		return 0, fmt.Errorf("bad hello: %w", ErrAuth)
	}
	want, err := m.proof(c, "client")
	if err != nil {
		return 0, err
	}
	if !hmac.Equal(hello[6:], want) {
		c.Write([]byte{0})
		return 0, ErrAuth
	}
	mine, err := m.proof(c, "server")
	if err != nil {
		return 0, err
	}
	if _, err := c.Write(append([]byte{1}, mine...)); err != nil {
		return 0, err
	}
	return Channel(hello[5]), nil
}

// Dial opens an authenticated connection to a peer's mux for a channel.
func (m *Mux) Dial(ctx context.Context, addr string, ch Channel) (net.Conn, error) {
	d := net.Dialer{Timeout: m.timeout}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	dl := time.Now().Add(m.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	raw.SetDeadline(dl)
	c := tls.Client(raw, m.cliTLS)
	if err := c.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("cluster dial %s: tls: %w", addr, err)
	}
	p, err := m.proof(c, "client")
	if err != nil {
		c.Close()
		return nil, err
	}
	hello := append([]byte(magic), authVersion, byte(ch))
	if _, err := c.Write(append(hello, p...)); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster dial %s: %w", addr, err)
	}
	var resp [33]byte
	if _, err := io.ReadFull(c, resp[:1]); err != nil || resp[0] != 1 {
		c.Close()
		return nil, fmt.Errorf("cluster dial %s: peer refused our secret: %w", addr, ErrAuth)
	}
	if _, err := io.ReadFull(c, resp[1:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster dial %s: %w", addr, err)
	}
	want, err := m.proof(c, "server")
	if err != nil || !hmac.Equal(resp[1:], want) {
		c.Close()
		return nil, fmt.Errorf("cluster dial %s: peer did not prove the secret: %w", addr, ErrAuth)
	}
	raw.SetDeadline(time.Time{})
	return c, nil
}

// Close stops accepting and closes every open connection.
func (m *Mux) Close() error {
	m.mu.Lock()
	m.closed = true
	for c := range m.conns {
		c.Close()
	}
	m.mu.Unlock()
	err := m.ln.Close()
	m.wg.Wait()
	return err
}

func ephemeralCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tandem-cluster"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// streamLayer adapts the mux's Raft channel to raft.StreamLayer.
type streamLayer struct {
	mux    *Mux
	conns  chan net.Conn
	done   chan struct{}
	once   sync.Once
	advert net.Addr
}

func newStreamLayer(m *Mux, advertise net.Addr) *streamLayer {
	s := &streamLayer{mux: m, conns: make(chan net.Conn), done: make(chan struct{}), advert: advertise}
	m.Handle(ChanRaft, func(c net.Conn) {
		select {
		case s.conns <- c:
			// raft owns the connection now; keep the handler goroutine
			// alive is not needed.
		case <-s.done:
			c.Close()
		}
	})
	return s
}

func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

func (s *streamLayer) Close() error {
	s.once.Do(func() { close(s.done) })
	return nil
}

func (s *streamLayer) Addr() net.Addr { return s.advert }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.mux.Dial(ctx, string(address), ChanRaft)
}
