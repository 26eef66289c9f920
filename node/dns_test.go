package node

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestDNSAddrs(t *testing.T) {
	for _, c := range []struct {
		in      []string
		want    []string
		wantErr string
	}{
		{nil, nil, ""},
		{[]string{"127.0.0.1:5353"}, []string{"127.0.0.1:5353"}, ""},
		{[]string{"127.0.0.1:0,[::1]:0"}, []string{"127.0.0.1:0", "[::1]:0"}, ""},
		// [::] is dual stack: 0.0.0.0 on the same port would fail as in use.
		{[]string{"0.0.0.0:53", "[::]:53"}, []string{"[::]:53"}, ""},
		{[]string{"0.0.0.0:53,[::]:5353"}, []string{"0.0.0.0:53", "[::]:5353"}, ""},
		{[]string{" 127.0.0.1:53 , "}, []string{"127.0.0.1:53"}, ""},
		{[]string{"127.0.0.1"}, nil, "want HOST:PORT"},
		{[]string{"localhost:53"}, nil, "must be an IP address"},
		{[]string{"127.0.0.1:99999"}, nil, "bad port"},
	} {
		got, err := dnsAddrs(c.in)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("dnsAddrs(%q) err = %v, want %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("dnsAddrs(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestDNSHost(t *testing.T) {
	for _, c := range []struct {
		cfg     Config
		v4, v6  string
		wantErr string
	}{
		{Config{VIP4: "10.0.0.100/24", VIP6: "fd00::100/64", DNSHostIPs: []string{"192.0.2.1"}}, "[10.0.0.100]", "[fd00::100]", ""},
		{Config{DNSHostIPs: []string{"192.0.2.1,2001:db8::1", "192.0.2.2"}}, "[192.0.2.1 192.0.2.2]", "[2001:db8::1]", ""},
		{Config{DNSHostIPs: []string{"::ffff:192.0.2.3"}}, "[192.0.2.3]", "[]", ""},
		{Config{}, "[]", "[]", ""},
		{Config{DNSHostIPs: []string{"mail.example.com"}}, "", "", "--dns-host-ip \"mail.example.com\": not an IP address"},
		{Config{VIP4: "10.0.0/24"}, "", "", "--vip"},
	} {
		n := &Node{cfg: c.cfg}
		h, err := n.dnsHost()
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%+v: err = %v, want %q", c.cfg, err, c.wantErr)
			}
			continue
		}
		if err != nil || fmt.Sprint(h.V4) != c.v4 || fmt.Sprint(h.V6) != c.v6 {
			t.Errorf("%+v: v4 %v v6 %v err %v; want %s %s", c.cfg, h.V4, h.V6, err, c.v4, c.v6)
		}
	}
}
