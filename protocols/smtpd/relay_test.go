package smtpd

import (
	"fmt"
	"strings"
	"testing"
)

// The classic open-relay probes (RELIABILITY: never an open relay). The
// RCPT arguments are sent verbatim.
var relayProbes = []struct {
	name string
	rcpt string
}{
	{"remote domain", "<user@other.example>"},
	{"percent hack", "<user%other.example@example.org>"},
	{"source route", "<@example.org:user@other.example>"},
	{"quoted at", `<"user@other.example"@example.org>`},
	{"bang path", "<other.example!user@example.org>"},
	{"address literal", "<user@[127.0.0.1]>"},
	{"ipv6 literal", "<user@[IPv6:::1]>"},
	{"trailing dot remote", "<user@other.example.>"},
	{"no brackets remote", "user@other.example"},
}

func TestRelayDeniedUnauthenticated(t *testing.T) {
	te := newTestEnv(t)
	for _, starttls := range []bool{false, true} {
		for _, p := range relayProbes {
			t.Run(fmt.Sprintf("%s/starttls=%v", p.name, starttls), func(t *testing.T) {
				c := dialRaw(t, te.mxAddr)
				c.greet()
				if starttls {
					c.startTLS()
					c.ehlo()
				}
				expect(t, c.cmd("MAIL FROM:<spammer@other.example>"), "250 ")
				r := c.cmd("RCPT TO:%s", p.rcpt)
				if !strings.HasPrefix(r, "554 5.7.1 ") && !strings.HasPrefix(r, "550 5.7.1 ") {
					t.Fatalf("RCPT TO:%s got %q, want 554/550 5.7.1", p.rcpt, r)
				}
				expect(t, c.cmd("DATA"), "502 ") // no recipient was accepted
			})
		}
	}
	// The probe forms must not leak into any mailbox either.
	for _, a := range []struct{ n int }{{len(te.inbox(te.alice))}, {len(te.inbox(te.bob))}, {len(te.inbox(te.carol))}} {
		if a.n != 0 {
			t.Fatal("a relay probe was delivered locally")
		}
	}
}

// Authenticated users may send to remote domains (once the outbound queue
// exists), but the hidden-destination forms are refused for them too.
func TestRelayAuthenticated(t *testing.T) {
	te := newTestEnv(t)
	c := dialRaw(t, te.subAddr)
	c.greet()
	c.startTLS()
	c.ehlo()
	expect(t, c.cmd("AUTH PLAIN %s", plainAuth("alice@example.org", "alice-pw")), "235 ")
	expect(t, c.cmd("MAIL FROM:<alice@example.org>"), "250 ")
	for _, p := range relayProbes {
		r := c.cmd("RCPT TO:%s", p.rcpt)
		switch p.name {
		case "remote domain", "source route", "trailing dot remote", "no brackets remote":
			// Remote recipient of an authenticated user: the outbound
			// queue does not exist yet — temporary, never dropped.
			expect(t, r, "451 4.3.2 ")
		default:
			expect(t, r, "554 5.7.1 ")
		}
	}
	expect(t, c.cmd("RCPT TO:<bob@example.org>"), "250 ")
}
