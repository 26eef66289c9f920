package outbound

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/tandemmail/tandem/storage"
)

const testBody = "From: alice@here.test\r\nTo: bob@far.test\r\nSubject: hello far\r\n\r\nSECRET-BODY-MARKER line one\r\n.leading dot\r\n"

// Delivery to a remote MX found by its MX record, over STARTTLS; the
// transcript holds DNS, address, TLS and the dialogue, not the body.
func TestDeliverMXWithSTARTTLS(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	tlsCfg, _ := testCA(t, "mx1.far.test")
	port, ls := listenSame(t, "127.0.0.2")
	mx := newMXServer(t, tlsCfg, ls...)
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	e, _ := te.start(te.config(port))
	id := te.submit(e, "alice@here.test", []string{"bob@far.test"}, testBody)
	te.waitQueueEmpty(10 * time.Second)

	got := mx.received()
	if len(got) != 1 {
		t.Fatalf("received %d messages", len(got))
	}
	m := got[0]
	if !m.TLS || m.From != "alice@here.test" || len(m.Rcpts) != 1 || m.Rcpts[0] != "bob@far.test" {
		t.Fatalf("received %+v", m)
	}
	if string(m.Data) != testBody {
		t.Fatalf("body changed:\n%q\n%q", m.Data, testBody)
	}
	tr := te.sink.Transcripts(id)
	if len(tr) != 1 {
		t.Fatalf("%d transcripts", len(tr))
	}
	x := tr[0]
	r := x.Render()
	for _, want := range []string{"dns far.test. IN MX", "10 mx1.far.test.", "dns mx1.far.test. IN A", "127.0.0.2",
		"C EHLO tandem.test", "C STARTTLS", "S 220", "C MAIL FROM:<alice@here.test>", "C RCPT TO:<bob@far.test>",
		"[message body,", "C .", "S 250"} {
		if !strings.Contains(r, want) {
			t.Errorf("transcript lacks %q:\n%s", want, r)
		}
	}
	if strings.Contains(r, "SECRET-BODY-MARKER") || strings.Contains(r, "hello far") {
		t.Fatalf("transcript contains the message:\n%s", r)
	}
	if !strings.HasPrefix(x.TLS, "TLS1.3 ") || !strings.Contains(x.TLS, "verified=false") {
		t.Fatalf("TLS %q", x.TLS)
	}
	if len(x.Addresses) != 1 || x.Addresses[0].Error != "" || x.Addresses[0].Host != "mx1.far.test" {
		t.Fatalf("addresses %+v", x.Addresses)
	}
	// EHLO is sent again after STARTTLS (RFC 3207 §4.2).
	if strings.Count(r, "C EHLO") != 2 {
		t.Fatalf("EHLO not repeated after TLS:\n%s", r)
	}
}

// The first attempt gets 451, the retry succeeds: exactly one copy.
func TestRetryAfterTemporaryFailure(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.2")
	mx := newMXServer(t, nil, ls...)
	var n atomic.Int32
	mx.rcptHook = func(string) error {
		if n.Add(1) == 1 {
			return smtpErr(451, smtp.EnhancedCode{4, 7, 1}, "greylisted, come back later")
		}
		return nil
	}
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	e, _ := te.start(te.config(port))
	id := te.submit(e, "alice@here.test", []string{"bob@far.test"}, testBody)
	waitFor(t, "first attempt", 10*time.Second, func() bool {
		qe, ok := te.entry(id)
		return !ok || qe.Rcpts[0].Attempts >= 1
	})
	if qe, ok := te.entry(id); ok && qe.Rcpts[0].Attempts == 1 {
		if qe.Rcpts[0].Status != storage.RcptPending || qe.Rcpts[0].LastCode != 451 || !strings.Contains(qe.Rcpts[0].LastError, "greylisted") {
			t.Fatalf("after attempt 1: %+v", qe.Rcpts[0])
		}
	}
	te.waitQueueEmpty(10 * time.Second)
	if got := mx.received(); len(got) != 1 {
		t.Fatalf("received %d copies", len(got))
	}
	tr := te.sink.Transcripts(id)
	if len(tr) != 2 || tr[0].Attempt != 1 || tr[1].Attempt != 2 {
		t.Fatalf("transcripts %+v", tr)
	}
	if !strings.Contains(tr[0].Outcome, "deferred") || !strings.Contains(tr[1].Outcome, "delivered") {
		t.Fatalf("outcomes %q / %q", tr[0].Outcome, tr[1].Outcome)
	}
	if len(te.inbox(te.alice)) != 0 {
		t.Fatal("a DSN was sent for a delivered message")
	}
}

// The preferred MX refuses connections; the next one takes the message in
// the same attempt.
func TestNextMXAfterConnectionRefused(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.3")
	freePortOn(t, "127.0.0.2", port)
	mx := newMXServer(t, nil, ls...)
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "far.test. MX 20 mx2.far.test.",
		"mx1.far.test. A 127.0.0.2", "mx2.far.test. A 127.0.0.3")
	e, _ := te.start(te.config(port))
	id := te.submit(e, "alice@here.test", []string{"bob@far.test"}, testBody)
	te.waitQueueEmpty(10 * time.Second)
	if len(mx.received()) != 1 {
		t.Fatal("not delivered to the second MX")
	}
	tr := te.sink.Transcripts(id)[0]
	if len(tr.Addresses) != 2 || tr.Addresses[0].Host != "mx1.far.test" || tr.Addresses[0].Error == "" ||
		tr.Addresses[1].Host != "mx2.far.test" || tr.Addresses[1].Error != "" {
		t.Fatalf("addresses %+v", tr.Addresses)
	}
	if tr.Attempt != 1 {
		t.Fatalf("attempt %d", tr.Attempt)
	}
}

// No MX record: the domain's own AAAA and A records are used (RFC 5321
// §5.1), IPv6 first, IPv4 when IPv6 fails.
func TestImplicitMXFallsBackToAddressRecords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		listen []string
		first  string
		via    string
	}{
		{"ipv6", []string{"::1", "127.0.0.3"}, "[::1]", "[::1]"},
		{"ipv4 after ipv6 refused", []string{"127.0.0.3"}, "[::1]", "127.0.0.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newEnv(t)
			port, ls := listenSame(t, tc.listen...)
			if len(tc.listen) == 1 {
				freePortOn(t, "::1", port)
			}
			mx := newMXServer(t, nil, ls...)
			te.dns.add(t, "far.test. AAAA ::1", "far.test. A 127.0.0.3")
			e, _ := te.start(te.config(port))
			id := te.submit(e, "alice@here.test", []string{"bob@far.test"}, testBody)
			te.waitQueueEmpty(10 * time.Second)
			got := mx.received()
			if len(got) != 1 || !strings.HasPrefix(got[0].Addr, tc.via) {
				t.Fatalf("received %+v", got)
			}
			tr := te.sink.Transcripts(id)[0]
			if !strings.HasPrefix(tr.Addresses[0].Addr, tc.first) || tr.Addresses[0].Host != "far.test" {
				t.Fatalf("addresses %+v", tr.Addresses)
			}
			if len(tr.DNS) != 3 || tr.DNS[0].Question != "far.test. IN MX" || len(tr.DNS[0].Answers) != 0 {
				t.Fatalf("dns %+v", tr.DNS)
			}
		})
	}
}

// A null MX (RFC 7505) bounces at once, without any connection.
func TestNullMXBouncesAtOnce(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	te.dns.add(t, "far.test. MX 0 .")
	e, _ := te.start(te.config(1))
	id := te.submit(e, "alice@here.test", []string{"bob@far.test"}, testBody)
	te.waitQueueEmpty(10 * time.Second)
	in := te.inbox(te.alice)
	if len(in) != 1 {
		t.Fatalf("%d messages in the sender's INBOX", len(in))
	}
	r := parseDSN(t, in[0])
	if r.recipients["bob@far.test"].Status != "5.1.10" || r.recipients["bob@far.test"].Action != "failed" {
		t.Fatalf("DSN %+v", r.recipients)
	}
	tr := te.sink.Transcripts(id)
	if len(tr) != 1 || len(tr[0].Addresses) != 0 || !strings.Contains(tr[0].Outcome, "null MX") {
		t.Fatalf("transcript %+v", tr)
	}
}

// NXDOMAIN bounces; SERVFAIL defers.
func TestDNSFailures(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	te.dns.fail("broken.test.")
	e, _ := te.start(te.config(1))
	nx := te.submit(e, "alice@here.test", []string{"bob@nowhere.test"}, testBody)
	sf := te.submit(e, "alice@here.test", []string{"bob@broken.test"}, testBody)
	waitFor(t, "the NXDOMAIN bounce", 10*time.Second, func() bool { return len(te.inbox(te.alice)) == 1 })
	if _, ok := te.entry(nx); ok {
		t.Fatal("NXDOMAIN entry still queued")
	}
	r := parseDSN(t, te.inbox(te.alice)[0])
	if r.recipients["bob@nowhere.test"].Status != "5.1.2" {
		t.Fatalf("DSN %+v", r.recipients)
	}
	waitFor(t, "SERVFAIL attempts", 10*time.Second, func() bool {
		qe, ok := te.entry(sf)
		return ok && qe.Rcpts[0].Attempts >= 2
	})
	qe, _ := te.entry(sf)
	if qe.Rcpts[0].Status != storage.RcptPending || !strings.Contains(qe.Rcpts[0].LastError, "4.4.3") {
		t.Fatalf("SERVFAIL entry %+v", qe.Rcpts[0])
	}
}

// A second message to the same destination reuses the connection (after
// RSET); a cached connection the remote has closed is replaced.
func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	tlsCfg, _ := testCA(t, "mx1.far.test")
	port, ls := listenSame(t, "127.0.0.2")
	mx := newMXServerWith(t, tlsCfg, func(m *mxServer) {
		m.srv.ReadTimeout = 1500 * time.Millisecond // closes idle connections
	}, ls...)
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	cfg := te.config(port)
	cfg.ConnReuseIdle = 5 * time.Second
	e, _ := te.start(cfg)
	first := te.submit(e, "alice@here.test", []string{"bob@far.test"}, testBody)
	te.waitQueueEmpty(10 * time.Second)
	// The connection is cached once the outcome is committed, just after
	// the entry leaves the queue.
	waitFor(t, "the cached connection", 5*time.Second, func() bool { return e.cache.idleCount("far.test") == 1 })
	second := te.submit(e, "alice@here.test", []string{"carl@far.test"}, testBody)
	te.waitQueueEmpty(10 * time.Second)
	if n := mx.tcpCount(); n != 1 || len(mx.received()) != 2 {
		t.Fatalf("%d connections, %d messages:\n%s", n, len(mx.received()), te.rendered(""))
	}
	tr := te.sink.Transcripts(second)[0]
	r := tr.Render()
	if !strings.Contains(r, "reusing the connection to mx1.far.test 127.0.0.2:") || !strings.Contains(r, "C RSET") ||
		strings.Contains(r, "C EHLO") || !strings.Contains(tr.TLS, "TLS1.3") || !strings.Contains(tr.TLS, "reused") {
		t.Fatalf("second transcript:\n%s", r)
	}
	if strings.Contains(te.rendered(first), "C QUIT") {
		t.Fatal("QUIT sent on a cached connection")
	}
	time.Sleep(2 * time.Second) // the remote drops the idle connection
	third := te.submit(e, "alice@here.test", []string{"dan@far.test"}, testBody)
	te.waitQueueEmpty(10 * time.Second)
	if n := mx.tcpCount(); n != 2 || len(mx.received()) != 3 {
		t.Fatalf("%d connections, %d messages", n, len(mx.received()))
	}
	if r := te.rendered(third); !strings.Contains(r, "no longer works") || !strings.Contains(r, "C EHLO") {
		t.Fatalf("third transcript:\n%s", r)
	}
}

// Many messages, many connections: each arrives exactly once (a stale
// copy of an entry whose attempt just finished is never tried again).
func TestManyMessagesExactlyOnce(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.2")
	mx := newMXServer(t, nil, ls...)
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	cfg := te.config(port)
	cfg.MaxConcurrency = 5
	cfg.Store = slowDueStore{te.st} // widen the window between reading the list and using it
	const n = 100
	queuer := New(cfg) // fill the queue first: all entries due at once
	for i := 0; i < n; i++ {
		te.submit(queuer, "alice@here.test", []string{"bob@far.test"}, fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i))
	}
	te.start(cfg)
	te.waitQueueEmpty(20 * time.Second)
	seen := map[string]int{}
	for _, m := range mx.received() {
		seen[string(m.Data)]++
	}
	if len(seen) != n {
		t.Fatalf("%d distinct messages of %d", len(seen), n)
	}
	for s, c := range seen {
		if c != 1 {
			t.Fatalf("%q arrived %d times", s, c)
		}
	}
}

// slowDueStore returns the due list late, as a busy node might.
type slowDueStore struct{ Store }

func (s slowDueStore) QueueDue(now time.Time, limit int) ([]storage.QueueEntry, error) {
	l, err := s.Store.QueueDue(now, limit)
	time.Sleep(20 * time.Millisecond)
	return l, err
}
