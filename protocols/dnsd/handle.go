package dnsd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime/debug"

	"github.com/miekg/dns"
)

// scratch is the per-goroutine memory the handler reuses.
type scratch struct {
	key [256]byte
	out []byte
}

func newScratch() *scratch { return &scratch{out: make([]byte, 0, dns.MaxMsgSize)} }

// serveMsg answers one request from client and never panics: a panic is recovered,
// counted and logged, and nothing is sent. resp nil means send nothing; xfr set means
// the request is an allowed zone transfer the TCP caller streams.
func (s *Server) serveMsg(t *table, req []byte, client netip.Addr, tcp bool, sc *scratch) (resp []byte, xfr *zoneData) {
	defer func() {
		if r := recover(); r != nil {
			s.stats.panics.Add(1)
			s.log.Error("dns handler panic", "client_ip", client, "panic", r, "stack", string(debug.Stack()))
			resp, xfr = nil, nil
		}
	}()
	return s.handle(t, req, client, tcp, sc)
}

// recoverLoop is deferred by serving loops: a panic is counted and logged, and
// *panicked tells the loop's owner to carry on or to drop the connection.
func (s *Server) recoverLoop(panicked *bool, where string) {
	if r := recover(); r != nil {
		s.stats.panics.Add(1)
		s.log.Error("dns serving loop panic", "where", where, "panic", r, "stack", string(debug.Stack()))
		*panicked = true
	}
}

func (s *Server) handle(t *table, req []byte, client netip.Addr, tcp bool, sc *scratch) ([]byte, *zoneData) {
	s.stats.queries.Add(1)
	// Shorter than a header, or a response: never answer (a reply to a response can
	// start a loop between two servers).
	if len(req) < headerLen || req[2]&0x80 != 0 {
		s.stats.dropped.Add(1)
		return nil, nil
	}
	q, name, ok := parseQuery(req, sc.key[:])
	if !tcp && s.rl != nil {
		switch s.rl.check(client) {
		case rateDrop:
			s.stats.rateLimited.Add(1)
			return nil, nil
		case rateSlip:
			s.stats.rateLimited.Add(1)
			if !ok {
				return nil, nil
			}
			s.stats.truncated.Add(1)
			return truncated(&q, req, false, s.maxUDP, sc.out), nil
		}
	}
	limit := dns.MaxMsgSize
	if !tcp {
		limit = dns.MinMsgSize
		if ok && q.edns {
			limit = int(min(max(q.udpSize, dns.MinMsgSize), s.maxUDP))
		}
	}
	if ok {
		if resp := t.answerFast(&q, req, name, limit, tcp, s.maxUDP, sc.out); resp != nil {
			if resp[2]&(bitTC>>8) != 0 {
				s.stats.truncated.Add(1)
			}
			return resp, nil
		}
	}
	return s.answerSlow(t, req, client, tcp, sc.out)
}

// answerSlow answers any request through miekg/dns.
func (s *Server) answerSlow(t *table, req []byte, client netip.Addr, tcp bool, out []byte) ([]byte, *zoneData) {
	m, err := strictUnpack(req)
	if err != nil {
		// RFC 1035 §4.1.1: FORMERR. The header alone is echoed: the rest is what
		// could not be read.
		s.stats.formErr.Add(1)
		out = append(out[:0], req[:headerLen]...)
		flags := bitQR | binary.BigEndian.Uint16(req[2:])&(0x7800|bitRD) | dns.RcodeFormatError
		binary.BigEndian.PutUint16(out[2:], flags)
		clear(out[4:headerLen])
		return out, nil
	}
	r := new(dns.Msg)
	r.Id = m.Id
	r.Response = true
	r.Opcode = m.Opcode
	r.RecursionDesired = m.RecursionDesired
	r.CheckingDisabled = m.CheckingDisabled
	limit := dns.MaxMsgSize
	if !tcp {
		limit = dns.MinMsgSize
	}
	var opt *dns.OPT
	nopt := 0
	for _, rr := range m.Extra {
		if o, isOpt := rr.(*dns.OPT); isOpt {
			opt = o
			nopt++
		}
	}
	switch {
	case m.Opcode != dns.OpcodeQuery:
		// NOTIFY, UPDATE and the rest: we are the only primary and take no updates.
		r.Rcode = dns.RcodeNotImplemented
	case len(m.Question) != 1 || nopt > 1 || opt != nil && opt.Hdr.Name != ".":
		// RFC 6891 §6.1.1: more than one OPT is FORMERR.
		r.Rcode = dns.RcodeFormatError
		s.stats.formErr.Add(1)
	case opt != nil && opt.Version() != 0:
		// RFC 6891 §6.1.3: an unknown version gets BADVERS and our version 0.
		r.Rcode = dns.RcodeBadVers
	default:
		r.Question = m.Question
		if opt != nil && !tcp {
			limit = int(min(max(opt.UDPSize(), dns.MinMsgSize), s.maxUDP))
		}
		if zd := s.query(t, r, m, client, tcp); zd != nil {
			return nil, zd
		}
	}
	if opt != nil {
		r.SetEdns0(s.maxUDP, opt.Do())
	}
	if r.Rcode == dns.RcodeRefused {
		s.stats.refused.Add(1)
	}
	return s.pack(r, limit, out), nil
}

// strictUnpack reads req with miekg/dns and, beyond Msg.Unpack, insists that the
// header counts are true and that nothing follows the last record, as BIND does:
// a packet that lies about itself gets FORMERR rather than a guess.
func strictUnpack(req []byte) (*dns.Msg, error) {
	m := new(dns.Msg)
	if err := m.Unpack(req); err != nil {
		return nil, err
	}
	off := headerLen
	var err error
	for range binary.BigEndian.Uint16(req[4:]) {
		if _, off, err = dns.UnpackDomainName(req, off); err != nil {
			return nil, err
		}
		if off += 4; off > len(req) {
			return nil, errors.New("question cut short")
		}
	}
	rrs := int(binary.BigEndian.Uint16(req[6:])) + int(binary.BigEndian.Uint16(req[8:])) + int(binary.BigEndian.Uint16(req[10:]))
	for range rrs {
		if off >= len(req) {
			return nil, errors.New("fewer records than the header counts")
		}
		if _, off, err = dns.UnpackRR(req, off); err != nil {
			return nil, err
		}
	}
	if off != len(req) {
		return nil, fmt.Errorf("%d bytes after the last record", len(req)-off)
	}
	return m, nil
}

// query answers the single question of m into r. A non-nil result is the zone of an
// allowed transfer.
func (s *Server) query(t *table, r, m *dns.Msg, client netip.Addr, tcp bool) *zoneData {
	q := m.Question[0]
	qname := dns.CanonicalName(q.Name)
	switch {
	case q.Qclass != dns.ClassINET:
		// CHAOS "version.bind" and friends: nothing to say.
		r.Rcode = dns.RcodeRefused
	case m.IsTsig() != nil:
		// We hold no TSIG keys (RFC 8945 §5.2 would say BADKEY); refuse.
		r.Rcode = dns.RcodeRefused
	case q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR:
		zd := t.zones[qname]
		if zd == nil || !s.transferAllowed(client) {
			s.stats.xfrRefused.Add(1)
			r.Rcode = dns.RcodeRefused
			return nil
		}
		if !tcp {
			if q.Qtype == dns.TypeIXFR {
				// RFC 1995 §2: over UDP, the current SOA tells the client to use TCP.
				r.Authoritative = true
				r.Answer = []dns.RR{zd.soa}
				return nil
			}
			// RFC 5936 §4.2: AXFR is TCP only.
			r.Rcode = dns.RcodeNotImplemented
			return nil
		}
		s.stats.xfrServed.Add(1)
		return zd
	case q.Qtype == 0 || q.Qtype == dns.TypeOPT:
		r.Rcode = dns.RcodeFormatError
		s.stats.formErr.Add(1)
	case q.Qtype >= 128 && q.Qtype <= 254:
		// Meta and obsolete question types (RFC 6895 §3.1: MAILA, MAILB, TKEY...).
		r.Rcode = dns.RcodeNotImplemented
	default:
		t.resolve(r, qname, q.Qtype, tcp)
	}
	return nil
}

// pack packs r within limit: first whole, then without additional data (RFC 2181
// §9), then as an empty TC=1 answer so the client retries over TCP (RFC 7766 §5).
func (s *Server) pack(r *dns.Msg, limit int, out []byte) []byte {
	r.Compress = true
	b, err := r.PackBuffer(out[:cap(out)])
	if err == nil && len(b) <= limit {
		return b
	}
	var keep []dns.RR
	for _, rr := range r.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			keep = append(keep, rr)
		}
	}
	if len(keep) != len(r.Extra) {
		r.Extra = keep
		if b, err = r.PackBuffer(out[:cap(out)]); err == nil && len(b) <= limit {
			return b
		}
	}
	r.Answer, r.Ns = nil, nil
	r.Truncated = true
	s.stats.truncated.Add(1)
	if b, err = r.PackBuffer(out[:cap(out)]); err != nil {
		return nil
	}
	return b
}

// transferAllowed reports whether client may AXFR: only from Config.AllowTransfer.
func (s *Server) transferAllowed(client netip.Addr) bool {
	client = client.Unmap()
	for _, p := range s.cfg.AllowTransfer {
		if p.Contains(client) {
			return true
		}
	}
	return false
}
