package node

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/tandemmail/tandem/cluster"
)

// routedListener is a service's listener on a node of a cluster (DESIGN
// §3): the leader serves the connections it accepts and those its peers
// relay to it; a follower relays what it accepts to the leader, so any
// node's address works.
type routedListener struct {
	inner   net.Listener
	service string
	n       *Node
	conns   chan net.Conn
	done    chan struct{}
	once    sync.Once
}

func (n *Node) routed(service string, l net.Listener) *routedListener {
	r := &routedListener{inner: l, service: service, n: n, conns: make(chan net.Conn), done: make(chan struct{})}
	n.mu.Lock()
	if n.routes == nil {
		n.routes = map[string]*routedListener{}
	}
	n.routes[service] = r
	n.mu.Unlock()
	go r.acceptLoop()
	return r
}

func (r *routedListener) acceptLoop() {
	for {
		c, err := r.inner.Accept()
		if err != nil {
			r.stop()
			return
		}
		if r.n.servesLocally() {
			if !r.hand(c) {
				c.Close()
				return
			}
			continue
		}
		go r.n.relay(c, r.service)
	}
}

// hand gives a connection to the service's server.
func (r *routedListener) hand(c net.Conn) bool {
	select {
	case r.conns <- c:
		return true
	case <-r.done:
		return false
	}
}

func (r *routedListener) stop() { r.once.Do(func() { close(r.done) }) }

func (r *routedListener) Accept() (net.Conn, error) {
	select {
	case c := <-r.conns:
		return c, nil
	case <-r.done:
		return nil, net.ErrClosed
	}
}

func (r *routedListener) Close() error {
	r.stop()
	return r.inner.Close()
}

func (r *routedListener) Addr() net.Addr { return r.inner.Addr() }

// servesLocally: a single node or the leader serves its own clients.
func (n *Node) servesLocally() bool {
	return n.raft.Mux() == nil || n.raft.IsLeader()
}

// relay passes a client connection to the leader over the cluster mux with
// a PROXY v2 header carrying the client's address.
func (n *Node) relay(c net.Conn, service string) {
	defer c.Close()
	var leader string
	for i := 0; i < 50; i++ { // an election takes well under 5 s
		if leader = n.raft.LeaderAddr(); leader != "" && !n.raft.IsLeader() {
			break
		}
		if n.raft.IsLeader() {
			// We became the leader meanwhile: serve it here.
			n.mu.Lock()
			r := n.routes[service]
			n.mu.Unlock()
			if r != nil && r.hand(c) {
				c = nil
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	if leader == "" {
		n.log.Warn("no leader to relay a client to", "service", service, "client", c.RemoteAddr())
		return
	}
	src, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	dst, _ := netip.ParseAddrPort(c.LocalAddr().String())
	hdr, err := encodeProxyHeader(proxyHeader{Src: src, Dst: dst, Service: service})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	up, err := n.raft.Mux().Dial(ctx, leader, cluster.ChanRelay)
	cancel()
	if err != nil {
		n.log.Warn("relay to leader", "leader", leader, "service", service, "err", err)
		return
	}
	defer up.Close()
	if _, err := up.Write(hdr); err != nil {
		return
	}
	pipe(c, up)
}

// pipe copies both ways until either side closes.
func pipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite()
		} else {
			dst.Close()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	a.Close()
	b.Close()
	<-done
}

// serveRelay accepts a connection relayed by a peer and hands it to the
// named service as if the client had connected here.
func (n *Node) serveRelay(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, err := readProxyHeader(c)
	if err != nil {
		n.log.Warn("relayed connection refused", "peer", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	n.mu.Lock()
	r := n.routes[h.Service]
	n.mu.Unlock()
	if r == nil || !n.raft.IsLeader() {
		c.Close()
		return
	}
	rc := &relayedConn{Conn: c, remote: net.TCPAddrFromAddrPort(h.Src), local: net.TCPAddrFromAddrPort(h.Dst)}
	if !r.hand(rc) {
		c.Close()
	}
}
