package node

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/protocols/outbound"
	"github.com/tandemmail/tandem/storage/storetest"
)

func TestCalloutCache(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	c := newCalloutCache(3, time.Hour, time.Minute)
	c.put("yes", true, t0)
	c.put("no", false, t0)
	for _, tc := range []struct {
		key       string
		at        time.Duration
		valid, ok bool
	}{
		{"yes", 59 * time.Minute, true, true},
		{"no", 59 * time.Second, false, true},
		{"no", time.Minute, false, false}, // negative answers expire sooner
		{"yes", time.Hour, false, false},
		{"never", 0, false, false},
	} {
		valid, ok := c.get(tc.key, t0.Add(tc.at))
		if valid != tc.valid || ok != tc.ok {
			t.Errorf("%s at +%v: %v %v, want %v %v", tc.key, tc.at, valid, ok, tc.valid, tc.ok)
		}
	}
	// Bounded: the least recently used answer leaves first.
	for i := range 3 {
		c.put("k"+strconv.Itoa(i), true, t0)
	}
	c.get("k0", t0)
	c.put("k3", true, t0)
	if c.len() != 3 {
		t.Fatalf("%d entries, bound 3", c.len())
	}
	if _, ok := c.get("k1", t0); ok {
		t.Fatal("k1 should have been evicted")
	}
	if _, ok := c.get("k0", t0); !ok {
		t.Fatal("k0 was used recently and should stay")
	}
}

// calloutBackend accepts only known@gw.test and counts RCPT commands.
type calloutBackend struct{ rcpts atomic.Int32 }

type calloutSession struct{ b *calloutBackend }

func (b *calloutBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return calloutSession{b}, nil }
func (calloutSession) Mail(string, *smtp.MailOptions) error           { return nil }
func (s calloutSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.b.rcpts.Add(1)
	if to != "known@gw.test" {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	return nil
}
func (calloutSession) Data(io.Reader) error { return nil }
func (calloutSession) Reset()               {}
func (calloutSession) Logout() error        { return nil }

// The router answers from the replicated configuration: not a gateway
// domain (or no longer hosted) → normal routing; callout answers cached
// both ways; a config change (other backends) asks again.
func TestGatewayRouterCallout(t *testing.T) {
	st := storetest.New(t)
	ctx := context.Background()
	b := &calloutBackend{}
	srv := smtp.NewServer(b)
	srv.Domain = "backend.test"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	e := outbound.New(outbound.Config{Store: st, Hostname: "gw.node.test"})
	defer e.Close()
	g := &gatewayRouter{store: st, engine: e, cache: newCalloutCache(100, time.Hour, time.Hour), now: time.Now,
		slots: make(chan struct{}, 1)}
	env := &filter.Envelope{ID: "x", From: "a@far.test"}
	put := func(backends ...string) {
		v, _ := json.Marshal(outbound.GatewayDomain{Domain: "gw.test", Backends: backends, Verify: outbound.VerifyCallout})
		if err := st.KVPutValue(ctx, outbound.GatewayNS, "gw.test", v); err != nil {
			t.Fatal(err)
		}
	}
	put(ln.Addr().String())
	if handled, _ := g.GatewayRecipient(ctx, env, "known@gw.test"); handled {
		t.Fatal("handled a domain that is not hosted")
	}
	if err := st.AddDomain(ctx, "gw.test"); err != nil {
		t.Fatal(err)
	}
	if handled, _ := g.GatewayRecipient(ctx, env, "x@other.test"); handled {
		t.Fatal("handled a non-gateway domain")
	}
	for range 3 {
		if handled, err := g.GatewayRecipient(ctx, env, "known@gw.test"); !handled || err != nil {
			t.Fatalf("known: %v %v", handled, err)
		}
		_, err := g.GatewayRecipient(ctx, env, "ghost@gw.test")
		if r, ok := filter.AsReject(err); !ok || r.Code != 550 {
			t.Fatalf("ghost: %v", err)
		}
	}
	if n := b.rcpts.Load(); n != 2 {
		t.Fatalf("%d callouts for 2 addresses asked 3 times each: the cache is not used", n)
	}
	// Other backends: the cached answers do not apply; none reachable → 451.
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln2.Addr().String()
	ln2.Close()
	put(dead)
	_, err = g.GatewayRecipient(ctx, env, "known@gw.test")
	if r, ok := filter.AsReject(err); !ok || r.Code != 451 || r.Enhanced != [3]int{4, 4, 3} {
		t.Fatalf("no backend: %v", err)
	}
	if !strings.Contains(err.Error(), "verified") {
		t.Fatalf("reply text: %v", err)
	}
	// Every verification slot taken: the recipient is deferred, not
	// refused, once the caller's context ends.
	g.slots <- struct{}{}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = g.GatewayRecipient(cctx, env, "new@gw.test")
	if r, ok := filter.AsReject(err); !ok || r.Code != 451 {
		t.Fatalf("no free slot: %v", err)
	}
}
