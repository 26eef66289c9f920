package dnsd

import (
	"errors"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
)

// udpBatch is how many datagrams one recvmmsg/sendmmsg moves (Linux; elsewhere
// x/net falls back to one at a time). Batching halves the system calls per query
// under load, which is where an authoritative server spends most of its time.
const udpBatch = 32

// serveUDP is one of the fixed set of readers of u: no goroutine per packet, so a
// flood queues in the socket buffer instead of growing memory.
func (s *Server) serveUDP(u *net.UDPConn) {
	defer s.wg.Done()
	for s.udpLoop(u) {
		// A panic outside the handler (which recovers its own) ended the loop:
		// it was counted and logged; serve on.
	}
}

// udpLoop serves u until it is closed (false) or a panic escapes (true).
func (s *Server) udpLoop(u *net.UDPConn) (panicked bool) {
	defer s.recoverLoop(&panicked, "udp")
	// ipv4.PacketConn's batch calls work on IPv6 sockets too: they only move
	// buffers and socket addresses.
	pc := ipv4.NewPacketConn(u)
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, 0, udpBatch)
	scs := make([]*scratch, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 65536)}
		scs[i] = newScratch()
	}
	for {
		n, err := pc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return false
			}
			// Transient (ICMP-induced errors on some systems): keep serving.
			continue
		}
		t := s.tbl.Load()
		out = out[:0]
		for i := range n {
			ua, ok := in[i].Addr.(*net.UDPAddr)
			if !ok || ua.Port == 0 {
				continue // a reply to port 0 could not reach anyone honest
			}
			from, _ := netip.AddrFromSlice(ua.IP)
			resp, _ := s.serveMsg(t, in[i].Buffers[0][:in[i].N], from, false, scs[i])
			if resp != nil {
				out = append(out, ipv4.Message{Buffers: [][]byte{resp}, Addr: ua})
			}
		}
		for len(out) > 0 {
			w, err := pc.WriteBatch(out, 0)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return false
				}
				w = max(w, 1) // drop the datagram the kernel refused
			}
			out = out[w:]
		}
	}
}
