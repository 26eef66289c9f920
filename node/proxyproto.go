package node

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
)

// The PROXY protocol v2 header (haproxy's proxy-protocol.txt §2.2) carries
// a relayed client's real address from a follower to the leader. It is only
// ever read from authenticated cluster connections, never from the public
// ports, so a client cannot forge its address.

var proxySig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// tlvService is an application-specific TLV type (0xE0-0xEF are reserved
// for that by §2.2.8) naming the listener the client connected to.
const tlvService = 0xE0

// maxProxyHeader bounds what we accept (addresses + a short TLV).
const maxProxyHeader = 512

type proxyHeader struct {
	Src, Dst netip.AddrPort
	Service  string
}

func encodeProxyHeader(h proxyHeader) ([]byte, error) {
	src, dst := h.Src.Addr().Unmap(), h.Dst.Addr().Unmap()
	var fam byte
	var addrs []byte
	switch {
	case src.Is4() && dst.Is4():
		fam = 0x11 // TCP over IPv4
		a, b := src.As4(), dst.As4()
		addrs = append(append(addrs, a[:]...), b[:]...)
	default:
		fam = 0x21 // TCP over IPv6
		a, b := h.Src.Addr().As16(), h.Dst.Addr().As16()
		addrs = append(append(addrs, a[:]...), b[:]...)
	}
	addrs = binary.BigEndian.AppendUint16(addrs, h.Src.Port())
	addrs = binary.BigEndian.AppendUint16(addrs, h.Dst.Port())
	if len(h.Service) > 64 {
		return nil, errors.New("proxy header: service name too long")
	}
	tlv := append([]byte{tlvService}, byte(len(h.Service)>>8), byte(len(h.Service)))
	tlv = append(tlv, h.Service...)
	body := append(addrs, tlv...)
	out := append([]byte(nil), proxySig...)
	out = append(out, 0x21, fam)
	out = binary.BigEndian.AppendUint16(out, uint16(len(body)))
	return append(out, body...), nil
}

func readProxyHeader(r io.Reader) (proxyHeader, error) {
	var h proxyHeader
	var fixed [16]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return h, fmt.Errorf("proxy header: %w", err)
	}
	if !bytes.Equal(fixed[:12], proxySig) {
		return h, errors.New("proxy header: bad signature")
	}
	if fixed[12] != 0x21 {
		return h, fmt.Errorf("proxy header: version/command %#x not v2 PROXY", fixed[12])
	}
	n := int(binary.BigEndian.Uint16(fixed[14:]))
	if n > maxProxyHeader {
		return h, fmt.Errorf("proxy header: %d bytes is too long", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return h, fmt.Errorf("proxy header: %w", err)
	}
	var alen int
	switch fixed[13] {
	case 0x11:
		alen = 12
		if n < alen {
			return h, errors.New("proxy header: short IPv4 block")
		}
		h.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:]))
	case 0x21:
		alen = 36
		if n < alen {
			return h, errors.New("proxy header: short IPv6 block")
		}
		h.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])).Unmap(), binary.BigEndian.Uint16(body[32:]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])).Unmap(), binary.BigEndian.Uint16(body[34:]))
	default:
		return h, fmt.Errorf("proxy header: family %#x not TCP", fixed[13])
	}
	tlvs := body[alen:]
	for len(tlvs) >= 3 {
		t, l := tlvs[0], int(binary.BigEndian.Uint16(tlvs[1:3]))
		if 3+l > len(tlvs) {
			return h, errors.New("proxy header: truncated TLV")
		}
		if t == tlvService {
			h.Service = string(tlvs[3 : 3+l])
		}
		tlvs = tlvs[3+l:]
	}
	if len(tlvs) != 0 {
		return h, errors.New("proxy header: trailing bytes")
	}
	return h, nil
}

// relayedConn is a client connection relayed by a peer: its remote address
// is the client's, from the PROXY header.
type relayedConn struct {
	net.Conn
	remote, local net.Addr
}

func (c *relayedConn) RemoteAddr() net.Addr { return c.remote }
func (c *relayedConn) LocalAddr() net.Addr  { return c.local }
