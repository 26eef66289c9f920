package node

import (
	"bytes"
	"net/netip"
	"testing"
)

func TestProxyHeaderRoundTrip(t *testing.T) {
	for _, h := range []proxyHeader{
		{Src: netip.MustParseAddrPort("192.0.2.7:40000"), Dst: netip.MustParseAddrPort("10.0.0.100:25"), Service: "smtp"},
		{Src: netip.MustParseAddrPort("[2001:db8::7]:40000"), Dst: netip.MustParseAddrPort("[fd00::100]:993"), Service: "imaps"},
		{Src: netip.MustParseAddrPort("[2001:db8::7]:1"), Dst: netip.MustParseAddrPort("10.0.0.1:2"), Service: ""},
	} {
		raw, err := encodeProxyHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readProxyHeader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if got.Src.Addr().Unmap() != h.Src.Addr().Unmap() || got.Src.Port() != h.Src.Port() || got.Service != h.Service {
			t.Errorf("round trip %+v → %+v", h, got)
		}
	}
	for _, bad := range [][]byte{nil, []byte("PROXY TCP4 1.2.3.4"), append(append([]byte(nil), proxySig...), 0x21, 0x11, 0xff, 0xff)} {
		if _, err := readProxyHeader(bytes.NewReader(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzReadProxyHeader(f *testing.F) {
	raw, _ := encodeProxyHeader(proxyHeader{Src: netip.MustParseAddrPort("192.0.2.7:40000"), Dst: netip.MustParseAddrPort("10.0.0.100:25"), Service: "smtp"})
	f.Add(raw)
	raw6, _ := encodeProxyHeader(proxyHeader{Src: netip.MustParseAddrPort("[2001:db8::7]:4"), Dst: netip.MustParseAddrPort("[fd00::1]:5"), Service: "imap"})
	f.Add(raw6)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := readProxyHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		again, err := encodeProxyHeader(h)
		if err != nil {
			return
		}
		if _, err := readProxyHeader(bytes.NewReader(again)); err != nil {
			t.Fatalf("re-encoded header does not parse: %v", err)
		}
	})
}
