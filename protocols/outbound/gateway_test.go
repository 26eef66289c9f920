package outbound

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/storage"
)

// greeter421 answers every connection with 421 (RFC 5321 §3.8: service not
// available) and closes it: a backend that is up but refuses mail now.
func greeter421(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("421 4.3.2 backend busy, try later\r\n"))
			c.Close()
		}
	}()
	return l.Addr().String()
}

// downBackend is an address on which nothing listens.
func downBackend(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

func (te *testEnv) submitRelay(e *Engine, from string, relay map[string][]string, body string) string {
	te.t.Helper()
	id := "G" + strconv.FormatInt(time.Now().UnixNano(), 36)
	b, err := te.st.PutBlob(strings.NewReader(body))
	if err != nil {
		te.t.Fatal(err)
	}
	defer b.Release()
	var rcpts []string
	for r := range relay {
		rcpts = append(rcpts, r)
	}
	env := &filter.Envelope{ID: id, From: from, ClientIP: net.IPv4(192, 0, 2, 1), HELO: "client.test"}
	if err := e.EnqueueRelay(context.Background(), env, rcpts, relay, b); err != nil {
		te.t.Fatal(err)
	}
	return id
}

// SPEC M9: the backends are tried in order; one that is down and one that
// answers 421 at connect are skipped, the third gets the message. No MX
// lookup happens, and the gateway domain being hosted here does not make
// the recipient local.
func TestRelayFailsOverInOrder(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	if err := te.st.AddDomain(context.Background(), "gw.test"); err != nil {
		t.Fatal(err)
	}
	port, ls := listenSame(t, "127.0.0.5")
	mx := newMXServer(t, nil, ls...)
	backends := []string{downBackend(t, "127.0.0.3"), greeter421(t, "127.0.0.4"), "127.0.0.5:" + strconv.Itoa(port)}
	e, _ := te.start(te.config(1)) // port 1: the MX route would fail
	id := te.submitRelay(e, "someone@far.test", map[string][]string{"bob@gw.test": backends, "carol@gw.test": backends}, testBody)
	te.waitQueueEmpty(10 * time.Second)
	got := mx.received()
	if len(got) != 1 || len(got[0].Rcpts) != 2 || got[0].From != "someone@far.test" || string(got[0].Data) != testBody {
		t.Fatalf("received %+v", got)
	}
	r := te.rendered(id)
	if strings.Contains(r, "IN MX") {
		t.Fatalf("an MX lookup was made for a gateway recipient:\n%s", r)
	}
	for _, want := range []string{backends[0], "421", backends[2], "C RCPT TO:<bob@gw.test>"} {
		if !strings.Contains(r, want) {
			t.Errorf("transcript lacks %q:\n%s", want, r)
		}
	}
}

// Every backend down: the recipient is deferred (never bounced at once)
// and keeps its route for the retry.
func TestRelayAllBackendsDownDefers(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	backends := []string{downBackend(t, "127.0.0.3"), greeter421(t, "127.0.0.4")}
	cfg := te.config(1)
	cfg.Backoff = []time.Duration{time.Hour}
	e, _ := te.start(cfg)
	id := te.submitRelay(e, "someone@far.test", map[string][]string{"bob@gw.test": backends}, testBody)
	waitFor(t, "a recorded attempt", 10*time.Second, func() bool {
		qe, ok := te.entry(id)
		return ok && qe.Rcpts[0].Attempts == 1
	})
	qe, _ := te.entry(id)
	r := qe.Rcpts[0]
	if r.Status != storage.RcptPending || r.LastCode/100 != 4 || strings.Join(r.Relay, ",") != strings.Join(backends, ",") {
		t.Fatalf("recipient %+v", r)
	}
}

// A backend that refuses the recipient with 5xx: a DSN goes to the sender.
func TestRelayPermanentFailureBounces(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.5")
	mx := newMXServer(t, nil, ls...)
	mx.rcptHook = func(string) error { return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "no such mailbox") }
	e, _ := te.start(te.config(1))
	te.submitRelay(e, "alice@here.test", map[string][]string{"ghost@gw.test": {"127.0.0.5:" + strconv.Itoa(port)}}, testBody)
	te.waitQueueEmpty(10 * time.Second)
	waitFor(t, "the DSN", 5*time.Second, func() bool { return len(te.inbox(te.alice)) == 1 })
	if d := parseDSN(t, te.inbox(te.alice)[0]); d.recipients["ghost@gw.test"].Status != "5.1.1" {
		t.Fatalf("DSN %+v", d.recipients)
	}
}

func TestEnqueueRelayRejectsBadBackends(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	e, _ := te.start(te.config(1))
	b, err := te.st.PutBlob(strings.NewReader(testBody))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	env := &filter.Envelope{ID: "BAD1", From: "x@far.test"}
	err = e.EnqueueRelay(context.Background(), env, []string{"bob@gw.test"}, map[string][]string{"bob@gw.test": {"no-port"}}, b)
	if err == nil || !strings.Contains(err.Error(), "HOST:PORT") {
		t.Fatalf("err %v", err)
	}
	if _, ok := te.entry("BAD1"); ok {
		t.Fatal("entry queued")
	}
}

// RCPT callout: the first backend is down, the second answers; 2xx and 5xx
// decide, 4xx and no backend at all are "unavailable".
func TestCallout(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.5")
	mx := newMXServer(t, nil, ls...)
	mx.rcptHook = func(to string) error {
		switch {
		case strings.HasPrefix(to, "nobody@"):
			return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "no such mailbox")
		case strings.HasPrefix(to, "grey@"):
			return smtpErr(451, smtp.EnhancedCode{4, 7, 1}, "try later")
		}
		return nil
	}
	live := "127.0.0.5:" + strconv.Itoa(port)
	backends := []string{downBackend(t, "127.0.0.3"), live}
	e := New(te.config(1))
	defer e.Close()
	ctx := context.Background()

	res, err := e.Callout(ctx, backends, "bob@gw.test")
	if err != nil || !res.Valid || res.Backend != live {
		t.Fatalf("bob: %+v %v", res, err)
	}
	res, err = e.Callout(ctx, backends, "nobody@gw.test")
	if err != nil || res.Valid || !strings.Contains(res.Reply, "550") {
		t.Fatalf("nobody: %+v %v", res, err)
	}
	if _, err = e.Callout(ctx, backends, "grey@gw.test"); !errors.Is(err, ErrCalloutUnavailable) {
		t.Fatalf("grey: %v", err)
	}
	if _, err = e.Callout(ctx, []string{downBackend(t, "127.0.0.3"), greeter421(t, "127.0.0.4")}, "bob@gw.test"); !errors.Is(err, ErrCalloutUnavailable) {
		t.Fatalf("all down: %v", err)
	}
	if _, err = e.Callout(ctx, backends, "bob@gw.test>\r\nDATA"); err == nil || errors.Is(err, ErrCalloutUnavailable) {
		t.Fatalf("injection: %v", err)
	}
	// Nothing was delivered by a callout.
	if n := len(mx.received()); n != 0 {
		t.Fatalf("%d messages delivered by callouts", n)
	}
}

// A callout stops when its context ends, even against a backend that
// never answers.
func TestCalloutHonoursContext(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	l, err := net.Listen("tcp", "127.0.0.6:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent: never greets
		}
	}()
	e := New(te.config(1))
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = e.Callout(ctx, []string{l.Addr().String()}, "bob@gw.test")
	if !errors.Is(err, ErrCalloutUnavailable) || time.Since(start) > 3*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
}

func TestGatewayDomainNormalize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		in      GatewayDomain
		wantErr string
		check   func(GatewayDomain) bool
	}{
		{"defaults to callout", GatewayDomain{Domain: "GW.Test.", Backends: []string{"mail.gw.test:25"}}, "",
			func(g GatewayDomain) bool { return g.Domain == "gw.test" && g.Verify == VerifyCallout }},
		{"list lower-cased and deduplicated", GatewayDomain{Domain: "gw.test", Backends: []string{"[::1]:2525"}, Verify: VerifyList,
			Recipients: []string{"Bob@GW.test", "bob@gw.test", " carol@gw.test "}}, "",
			func(g GatewayDomain) bool {
				return len(g.Recipients) == 2 && g.HasRecipient("BOB@gw.test") && !g.HasRecipient("dave@gw.test")
			}},
		{"no backend", GatewayDomain{Domain: "gw.test"}, "at least one backend", nil},
		{"bad port", GatewayDomain{Domain: "gw.test", Backends: []string{"h:0"}}, "port must be", nil},
		{"no port", GatewayDomain{Domain: "gw.test", Backends: []string{"h"}}, "HOST:PORT", nil},
		{"bad host", GatewayDomain{Domain: "gw.test", Backends: []string{"a b:25"}}, "DNS name or an IP", nil},
		{"duplicate", GatewayDomain{Domain: "gw.test", Backends: []string{"h:25", "H:25"}}, "twice", nil},
		{"bad verify", GatewayDomain{Domain: "gw.test", Backends: []string{"h:25"}, Verify: "ldap"}, "want callout", nil},
		{"list without addresses", GatewayDomain{Domain: "gw.test", Backends: []string{"h:25"}, Verify: VerifyList}, "at least one address", nil},
		{"recipients without list", GatewayDomain{Domain: "gw.test", Backends: []string{"h:25"}, Recipients: []string{"a@gw.test"}}, "only used with", nil},
		{"foreign recipient", GatewayDomain{Domain: "gw.test", Backends: []string{"h:25"}, Verify: VerifyList, Recipients: []string{"a@other.test"}}, "not in gw.test", nil},
		{"not an address", GatewayDomain{Domain: "gw.test", Backends: []string{"h:25"}, Verify: VerifyList, Recipients: []string{"a<b>@gw.test"}}, "not an address", nil},
		{"bad domain", GatewayDomain{Domain: "gw test", Backends: []string{"h:25"}}, "not a domain", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.in
			err := g.Normalize()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(g) {
				t.Fatalf("%+v %v", g, err)
			}
		})
	}
}

// FuzzGatewayDomainNormalize: admin input never panics, and what passes
// is stable (normalizing twice changes nothing) and safe on the wire.
func FuzzGatewayDomainNormalize(f *testing.F) {
	f.Add("gw.test", "mail.gw.test:25", "list", "bob@gw.test")
	f.Add("GW.TEST.", "[::1]:2525", "callout", "")
	f.Add("x", "h:99999", "none", "a@b")
	f.Fuzz(func(t *testing.T, domain, backend, verify, rcpt string) {
		g := GatewayDomain{Domain: domain, Backends: []string{backend}, Verify: verify}
		if rcpt != "" {
			g.Recipients = []string{rcpt}
		}
		if g.Normalize() != nil {
			return
		}
		again := g
		again.Recipients = append([]string(nil), g.Recipients...)
		if err := again.Normalize(); err != nil || again.Domain != g.Domain || len(again.Recipients) != len(g.Recipients) {
			t.Fatalf("not stable: %+v %v", again, err)
		}
		for _, s := range append([]string{g.Domain}, append(g.Backends, g.Recipients...)...) {
			if strings.ContainsAny(s, "\r\n\x00<>") {
				t.Fatalf("unsafe value %q accepted", s)
			}
		}
	})
}

// SPEC M8: a backend given as an IPv6 literal is reached over IPv6.
func TestRelayIPv6Backend(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	te := newEnv(t)
	mx := newMXServer(t, nil, l)
	e, _ := te.start(te.config(1))
	te.submitRelay(e, "someone@far.test", map[string][]string{"bob@gw.test": {l.Addr().String()}}, testBody)
	te.waitQueueEmpty(10 * time.Second)
	if got := mx.received(); len(got) != 1 || !strings.HasPrefix(got[0].Addr, "[::1]:") {
		t.Fatalf("received %+v", got)
	}
}
