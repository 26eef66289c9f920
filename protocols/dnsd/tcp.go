package dnsd

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// serveTCP accepts connections up to MaxTCPConns; beyond it new ones are closed at
// once so a connection flood cannot exhaust memory or descriptors.
func (s *Server) serveTCP(l net.Listener) {
	defer s.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off instead of spinning.
			select {
			case <-s.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if s.tcpCount.Add(1) > int64(s.cfg.MaxTCPConns) || !s.track(c, true) {
			s.tcpCount.Add(-1)
			c.Close()
			continue
		}
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

// track adds or removes c from the set Close closes; false if already closed.
func (s *Server) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.conns, c)
		return true
	}
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// serveConn answers the queries of one TCP connection in order (RFC 7766 §6.2.1.1
// allows pipelining; answering in order is always correct) until the client closes
// it or stays idle for TCPIdleTimeout.
func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer s.tcpCount.Add(-1)
	defer s.track(c, false)
	defer c.Close()
	var panicked bool
	defer s.recoverLoop(&panicked, "tcp")
	client := netip.Addr{}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		client = ap.Addr()
	}
	sc := newScratch()
	req := make([]byte, dns.MaxMsgSize)
	var lenBuf [2]byte
	for {
		c.SetReadDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if n == 0 {
			return
		}
		if _, err := io.ReadFull(c, req[:n]); err != nil {
			return
		}
		resp, xfr := s.serveMsg(s.tbl.Load(), req[:n], client, true, sc)
		c.SetWriteDeadline(time.Now().Add(s.cfg.TCPIdleTimeout))
		if xfr != nil {
			if err := s.transfer(c, req[:n], xfr, sc.out); err != nil {
				s.log.Info("dns zone transfer aborted", "zone", xfr.origin, "client_ip", client, "err", err)
				return
			}
			continue
		}
		if resp == nil {
			// Nothing to say to this message (a response, a dropped packet):
			// close, as a stream cannot skip it.
			return
		}
		if err := writeTCP(c, resp); err != nil {
			return
		}
	}
}

// writeTCP writes one length-prefixed message (RFC 1035 §4.2.2) in one write.
func writeTCP(c net.Conn, msg []byte) error {
	buf := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(buf, uint16(len(msg)))
	copy(buf[2:], msg)
	_, err := c.Write(buf)
	return err
}

// transfer streams zd as an AXFR response (RFC 5936 §2.2): the SOA, every other
// record, the SOA again, in messages of up to about 16 KiB. IXFR gets the same full
// transfer (RFC 1995 §4 allows it).
func (s *Server) transfer(c net.Conn, req []byte, zd *zoneData, out []byte) error {
	m := new(dns.Msg)
	if err := m.Unpack(req); err != nil {
		return err
	}
	const chunk = 16 << 10
	send := func(rrs []dns.RR, first bool) error {
		r := new(dns.Msg)
		r.Id = m.Id
		r.Response = true
		r.Authoritative = true
		r.Compress = true
		if first {
			r.Question = m.Question // RFC 5936 §2.2.1: only the first must carry it
		}
		r.Answer = rrs
		b, err := r.PackBuffer(out[:cap(out)])
		if err != nil {
			return err
		}
		return writeTCP(c, b)
	}
	batch := []dns.RR{zd.soa}
	size := dns.Len(zd.soa)
	first := true
	for _, rr := range append(zd.all[:len(zd.all):len(zd.all)], zd.soa) {
		l := dns.Len(rr)
		if size+l > chunk {
			if err := send(batch, first); err != nil {
				return err
			}
			first = false
			batch, size = nil, 0
		}
		batch = append(batch, rr)
		size += l
	}
	return send(batch, first)
}
