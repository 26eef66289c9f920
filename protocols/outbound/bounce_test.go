package outbound

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/tandemmail/tandem/storage"
)

// The admin bounce fails the pending recipients now with one DSN to the
// sender; a recipient already delivered is not reported.
func TestBounceSendsOneDSN(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.2")
	mx := newMXServer(t, nil, ls...)
	mx.rcptHook = func(to string) error {
		if strings.HasPrefix(to, "slow@") {
			return smtpErr(451, smtp.EnhancedCode{4, 2, 0}, "mailbox busy")
		}
		return nil
	}
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	cfg := te.config(port)
	cfg.Backoff = []time.Duration{time.Hour}
	e, _ := te.start(cfg)
	id := te.submit(e, "alice@here.test", []string{"bob@far.test", "slow@far.test"}, testBody)
	waitFor(t, "the first attempt", 10*time.Second, func() bool {
		qe, ok := te.entry(id)
		return ok && qe.Rcpts[0].Attempts == 1
	})
	if err := e.Bounce(context.Background(), id, "returned by the administrator"); err != nil {
		t.Fatal(err)
	}
	if _, ok := te.entry(id); ok {
		t.Fatal("the bounced entry is still queued")
	}
	waitFor(t, "the DSN", 10*time.Second, func() bool { return len(te.inbox(te.alice)) == 1 })
	d := parseDSN(t, te.inbox(te.alice)[0])
	if len(d.recipients) != 1 || d.recipients["slow@far.test"].Action != "failed" || d.recipients["slow@far.test"].Status != "5.0.0" {
		t.Fatalf("DSN recipients %+v", d.recipients)
	}
	if !strings.Contains(te.inbox(te.alice)[0], "returned by the administrator") {
		t.Fatal("the DSN does not give the reason")
	}
	if err := e.Bounce(context.Background(), id, ""); !errors.Is(err, storage.ErrNoMessage) {
		t.Fatalf("second bounce: %v", err)
	}
}

// No DSN for the null sender (RFC 5321 §4.5.5): the entry just goes.
func TestBounceNullSenderNoDSN(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	cfg := te.config(1)
	cfg.Backoff = []time.Duration{time.Hour}
	cfg.PollInterval = time.Hour // never attempted during the test
	e := New(cfg)
	defer e.Close()
	id := te.submit(e, "", []string{"bob@far.test"}, testBody)
	if err := e.Bounce(context.Background(), id, "spam run"); err != nil {
		t.Fatal(err)
	}
	if q, _ := te.st.Queue(); len(q) != 0 {
		t.Fatalf("queue %+v", q)
	}
}

// A bounce while the entry is being delivered is refused, not raced.
func TestBounceWhileInFlight(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	e := New(te.config(1))
	defer e.Close()
	id := "INFLIGHT" + strconv.Itoa(1)
	e.mu.Lock()
	e.inflight[id] = true
	e.mu.Unlock()
	if err := e.Bounce(context.Background(), id, ""); !errors.Is(err, ErrBusy) {
		t.Fatalf("err %v", err)
	}
}
