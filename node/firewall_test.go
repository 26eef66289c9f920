package node

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/tandemmail/tandem/filter/firewall"
)

// Each protocol gets its own greeting-time refusal; implicit-TLS ports
// are closed without a word (nothing may precede the TLS handshake).
func TestFirewallRefusal(t *testing.T) {
	blocked := fmt.Errorf("%w: test", firewall.ErrBlocked)
	limit := errors.New("too many connections")
	tests := []struct {
		service string
		why     error
		want    string
	}{
		{"smtp", blocked, "421 4.7.0 mx.example Client blocked by the mail firewall\r\n"},
		{"submission", limit, "421 4.7.0 mx.example Too many connections, try again later\r\n"},
		{"imap", blocked, "* BYE [UNAVAILABLE] Client blocked by the mail firewall\r\n"},
		{"pop3", limit, "-ERR [SYS/TEMP] Too many connections, try again later\r\n"},
		{"imaps", blocked, ""},
		{"submissions", limit, ""},
		{"pop3s", limit, ""},
	}
	for _, tc := range tests {
		server, client := net.Pipe()
		go refuse(server, tc.service, "mx.example", tc.why)
		got, err := io.ReadAll(client)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %q %v, want %q", tc.service, got, err, tc.want)
		}
		client.Close()
	}
}
