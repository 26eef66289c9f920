package spamstage

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/filter/spam"
	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

const corpus = "../spam/testdata/corpus"

func readCorpus(t *testing.T, class string) [][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(corpus, class, "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("corpus %s: %v (%d files)", class, err, len(files))
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

type world struct {
	st         *storage.Store
	e          *Engine
	alice, bob storage.Account
	spam, ham  [][]byte
	// spamTest and hamTest are held out of training.
	spamTest, hamTest []byte
}

// newWorld trains on all but one message of each class and keeps those
// for testing (the first spam, which the small corpus scores confidently,
// and the last ham).
func newWorld(t *testing.T) *world {
	t.Helper()
	st := storetest.New(t)
	e, err := New(st, Config{FlushInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{st: st, e: e, spam: readCorpus(t, "spam"), ham: readCorpus(t, "ham")}
	w.alice = storetest.AddAccount(t, st, "alice@example.org", "pw")
	w.bob = storetest.AddAccount(t, st, "bob@example.org", "pw")
	var items []Item
	w.spamTest, w.hamTest = w.spam[0], w.ham[len(w.ham)-1]
	for _, m := range w.spam[1:] {
		items = append(items, Item{Message: m, Class: spam.Spam})
	}
	for _, m := range w.ham[:len(w.ham)-1] {
		items = append(items, Item{Message: m, Class: spam.Ham})
	}
	res, err := e.Train(t.Context(), items)
	if err != nil {
		t.Fatal(err)
	}
	if res.Trained != len(items) {
		t.Fatalf("trained %+v, want %d", res, len(items))
	}
	return w
}

func TestTrainReplicatesAndReloads(t *testing.T) {
	w := newWorld(t)
	st := w.e.Stats()
	if st.Spam != uint32(len(w.spam)-1) || st.Ham != uint32(len(w.ham)-1) || st.Tokens == 0 {
		t.Fatalf("stats after training: %+v", st)
	}
	// A second engine over the same store (another node) loads the same
	// state from the KV store alone.
	e2, err := New(w.st, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if got := e2.Stats(); got.Tokens != st.Tokens || got.Spam != st.Spam || got.Ham != st.Ham {
		t.Fatalf("reloaded %+v, want %+v", got, st)
	}
	// Same message again: unchanged. The other way: retrained, counts move.
	ctx := t.Context()
	res, err := w.e.Train(ctx, []Item{{Message: w.spam[1], Class: spam.Spam}})
	if err != nil || res.Unchanged != 1 || res.Trained != 0 {
		t.Fatalf("retrain same: %+v %v", res, err)
	}
	res, err = w.e.Train(ctx, []Item{{Message: w.spam[1], Class: spam.Ham}})
	if err != nil || res.Trained != 1 {
		t.Fatalf("retrain other: %+v %v", res, err)
	}
	if got := w.e.Stats(); got.Spam != st.Spam-1 || got.Ham != st.Ham+1 {
		t.Fatalf("after retraining: %+v (was %+v)", got, st)
	}
	if c := w.e.TrainedAs(TrainKey(w.spam[1])); c != spam.Ham {
		t.Fatalf("trained as %v", c)
	}
	// The other node sees it after a reload.
	if err := e2.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := e2.Stats(); got.Spam != st.Spam-1 || got.Ham != st.Ham+1 {
		t.Fatalf("other node after retraining: %+v", got)
	}
}

func TestScoreAddsPriorVerdicts(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	spamMsg, hamMsg := w.spamTest, w.hamTest
	s, _, err := w.e.ScoreMessage(ctx, bytes.NewReader(spamMsg), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Spam || s.Points < 6 {
		t.Errorf("held-out spam: %+v", s)
	}
	h, _, err := w.e.ScoreMessage(ctx, bytes.NewReader(hamMsg), nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.Spam {
		t.Errorf("held-out ham: %+v", h)
	}
	// An allowlist verdict makes spam ham; a blocklist makes ham spam. Two
	// verdicts of one stage (two recipients) count once.
	prior := []filter.Verdict{{Stage: "allowlist", Score: -100}, {Stage: "allowlist", Score: -100}}
	a, _, _ := w.e.ScoreMessage(ctx, bytes.NewReader(spamMsg), prior)
	if a.Spam || a.Total != s.Total-100 {
		t.Errorf("spam with allowlist: %+v (without: %.1f)", a, s.Total)
	}
	b, _, _ := w.e.ScoreMessage(ctx, bytes.NewReader(hamMsg), []filter.Verdict{{Stage: "dnsbl", Score: 3}, {Stage: "blocklist", Score: 100}})
	if !b.Spam || b.Total != h.Total+103 {
		t.Errorf("ham with blocklist: %+v", b)
	}
	if !strings.Contains(strings.Join(b.Tests, ","), "BLOCKLIST=100.0") {
		t.Errorf("tests %v", b.Tests)
	}
}

func TestDecide(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	s := func(v string) *string { return &v }
	for _, tc := range []struct {
		name   string
		score  float64
		p      Effective
		want   filter.Disposition
		reason bool
	}{
		{"ham", 4.9, DefaultPolicy(), filter.Disposition{AccountID: 1}, false},
		{"junk", 5, DefaultPolicy(), filter.Disposition{AccountID: 1, Mailbox: "Junk", SpecialUse: `\Junk`, SubjectTag: "[SPAM]"}, true},
		{"inbox", 9, Effective{Threshold: 5, Action: ActionInbox, Tag: "***"}, filter.Disposition{AccountID: 1, SubjectTag: "***"}, true},
		{"delete", 9, Effective{Threshold: 5, Action: ActionDelete}, filter.Disposition{AccountID: 1, Drop: true}, true},
		{"quarantine", 9, Effective{Threshold: 5, Action: ActionQuarantine}, filter.Disposition{AccountID: 1, Mailbox: storage.QuarantineMailbox}, true},
		{"high threshold", 9, Effective{Threshold: 10, Action: ActionDelete}, filter.Disposition{AccountID: 1}, false},
	} {
		got := Decide(1, tc.score, tc.p)
		if (got.Reason != "") != tc.reason {
			t.Errorf("%s: reason %q", tc.name, got.Reason)
		}
		got.Reason = ""
		if got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	// Resolution: user over domain over global, field by field.
	w := &world{st: storetest.New(t)}
	e, err := New(w.st, Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.SetPolicy(ctx, "global", Policy{Threshold: f(6)}))
	must(e.SetPolicy(ctx, "d:example.org", Policy{Action: ActionQuarantine, Tag: s("-")}))
	must(e.SetPolicy(ctx, "u:bob@example.org", Policy{Threshold: f(3), Action: ActionInbox}))
	for addr, want := range map[string]Effective{
		"carol@other.org":   {Threshold: 6, Action: ActionJunk, Tag: "[SPAM]", From: "global"},
		"alice@example.org": {Threshold: 6, Action: ActionQuarantine, Tag: "", From: "d:example.org"},
		"bob@example.org":   {Threshold: 3, Action: ActionInbox, Tag: "", From: "u:bob@example.org"},
	} {
		if got := e.PolicyFor(addr); got != want {
			t.Errorf("%s: %+v, want %+v", addr, got, want)
		}
	}
	if err := e.SetPolicy(ctx, "global", Policy{Action: "bounce"}); err == nil {
		t.Error("bad action accepted")
	}
	for _, bad := range []string{"u:nobody", "d:a@b", "u:"} {
		if _, err := PolicyKey(bad); err == nil {
			t.Errorf("scope %q accepted", bad)
		}
	}
}

func mailbox(t *testing.T, st *storage.Store, a storage.Account, name string) []string {
	t.Helper()
	mb, err := st.Mailbox(a.ID, name)
	if err != nil {
		return nil
	}
	msgs, err := st.Messages(mb.ID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		f, err := st.OpenBlob(m.Blob)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		out = append(out, string(b))
	}
	return out
}

func deliver(t *testing.T, p *filter.Pipeline, msg []byte, rcpts ...string) {
	t.Helper()
	ctx := context.Background()
	tx, err := p.Begin(ctx, &filter.Envelope{ID: "T1", From: "x@sender.example"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rcpts {
		if err := tx.AddRcpt(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Body(ctx, bytes.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
}

// The pipeline with the stage: per-recipient actions, headers, quarantine
// and release.
func TestPipelineSpamActions(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	if err := w.e.SetPolicy(ctx, "u:bob@example.org", Policy{Action: ActionQuarantine}); err != nil {
		t.Fatal(err)
	}
	st := w.e.Stage()
	p := filter.New(filter.Config{Store: w.st, Checks: filter.Checks{Message: []filter.MessageCheck{st}, Dispose: st}})
	spamMsg, hamMsg := w.spamTest, w.hamTest
	deliver(t, p, spamMsg, "alice@example.org", "bob@example.org")
	deliver(t, p, hamMsg, "alice@example.org", "bob@example.org")

	junk := mailbox(t, w.st, w.alice, "Junk")
	if len(junk) != 1 || !strings.HasPrefix(junk[0], "X-Spam-Status: Yes, score=") || !strings.Contains(junk[0], "\nSubject: [SPAM] ") {
		t.Fatalf("alice's Junk: %d messages; first: %.300q", len(junk), junk)
	}
	inbox := mailbox(t, w.st, w.alice, "INBOX")
	if len(inbox) != 1 || !strings.HasPrefix(inbox[0], "X-Spam-Status: No, score=") || strings.Contains(inbox[0], "[SPAM]") {
		t.Fatalf("alice's INBOX: %.300q", inbox)
	}
	if got := mailbox(t, w.st, w.bob, "INBOX"); len(got) != 1 {
		t.Fatalf("bob's INBOX has %d messages, want the ham only", len(got))
	}
	held, err := w.e.Quarantined(w.bob.ID)
	if err != nil || len(held) != 1 {
		t.Fatalf("bob's quarantine: %+v %v", held, err)
	}
	if held[0].Subject == "" || held[0].Score < 5 {
		t.Errorf("record %+v", held[0])
	}
	// The release link is signed; a forged one fails.
	link, err := w.e.ReleaseURL(ctx, "http://mx.example", held[0].ID)
	if err != nil || !strings.Contains(link, "sig=") {
		t.Fatalf("link %q %v", link, err)
	}
	if w.e.Verify(ctx, held[0].ID, "AAAA") || w.e.Verify(ctx, quarantineKey(w.alice.ID, held[0].Blob), link[strings.Index(link, "sig=")+4:]) {
		t.Fatal("forged signature verified")
	}
	before := w.e.Stats()
	if _, err := w.e.Release(ctx, held[0].ID); err != nil {
		t.Fatal(err)
	}
	if got := mailbox(t, w.st, w.bob, "INBOX"); len(got) != 2 {
		t.Fatalf("bob's INBOX after release: %d", len(got))
	}
	if got := mailbox(t, w.st, w.bob, storage.QuarantineMailbox); len(got) != 0 {
		t.Fatalf("still held: %d", len(got))
	}
	if after := w.e.Stats(); after.Ham != before.Ham+1 {
		t.Errorf("release did not train ham: %+v → %+v", before, after)
	}
	if _, err := w.e.Release(ctx, held[0].ID); err == nil {
		t.Error("second release succeeded")
	}
}

func TestDigest(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	if err := w.e.SetPolicy(ctx, "global", Policy{Action: ActionQuarantine}); err != nil {
		t.Fatal(err)
	}
	st := w.e.Stage()
	p := filter.New(filter.Config{Store: w.st, Checks: filter.Checks{Message: []filter.MessageCheck{st}, Dispose: st}})
	deliver(t, p, w.spamTest, "alice@example.org")
	if !w.e.DigestDue(time.Hour) {
		t.Fatal("first digest not due")
	}
	n, err := w.e.SendDigests(ctx, "http://mx.example:8080", "mx.example")
	if err != nil || n != 1 {
		t.Fatalf("digests: %d %v", n, err)
	}
	if w.e.DigestDue(time.Hour) {
		t.Fatal("digest due again at once")
	}
	inbox := mailbox(t, w.st, w.alice, "INBOX")
	if len(inbox) != 1 || !strings.Contains(inbox[0], "http://mx.example:8080/quarantine/release?id=") {
		t.Fatalf("digest: %q", inbox)
	}
}

func TestAutoLearn(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { w.e.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	st := w.e.Stage()
	before := w.e.Stats()
	// A blocklist verdict makes the total confident: learned as spam.
	msg := w.hamTest
	v := st.CheckMessage(filter.WithPriorVerdicts(ctx, []filter.Verdict{{Stage: "blocklist", Score: 100}}),
		&filter.Envelope{ID: "A"}, nil, bytes.NewReader(msg), int64(len(msg)))
	if v.Score < 12 {
		t.Fatalf("verdict %+v", v)
	}
	deadline := time.Now().Add(5 * time.Second)
	for w.e.Stats().Spam == before.Spam {
		if time.Now().After(deadline) {
			t.Fatal("auto-learn did not happen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c := w.e.TrainedAs(TrainKey(msg)); c != spam.Spam && bytes.Contains(msg, []byte("Message-ID:")) {
		t.Fatalf("trained as %v", c)
	}
}

func TestTagSubject(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Subject: hi\r\n\r\nbody", "Subject: [SPAM] hi\r\n\r\nbody"},
		{"From: a\r\nsubject:hi\r\n there\r\n\r\nb", "From: a\r\nsubject: [SPAM] hi\r\n there\r\n\r\nb"},
		{"From: a\r\n\r\nb", "From: a\r\nSubject: [SPAM]\r\n\r\nb"},
	} {
		head, rest, err := filter.TagSubject(strings.NewReader(tc.in), "[SPAM]", 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := io.ReadAll(rest)
		if got := string(head) + string(r); got != tc.want {
			t.Errorf("%q: got %q want %q", tc.in, got, tc.want)
		}
	}
}

func TestDisposeSkipsAuthenticatedAndHonoursQuarantineVerdicts(t *testing.T) {
	st := storetest.New(t)
	e, err := New(st, Config{})
	if err != nil {
		t.Fatal(err)
	}
	alice := storetest.AddAccount(t, st, "alice@example.org", "pw")
	s := e.Stage()
	spamV := []filter.Verdict{{Stage: StageName, Score: 50}}
	if ds := s.Dispose(t.Context(), &filter.Envelope{AuthAccountID: alice.ID}, spamV, []uint64{alice.ID}); ds != nil {
		t.Errorf("authenticated mail disposed: %+v", ds)
	}
	ds := s.Dispose(t.Context(), &filter.Envelope{}, spamV, []uint64{alice.ID})
	if len(ds) != 1 || ds[0].Mailbox != "Junk" || ds[0].SubjectTag != "[SPAM]" {
		t.Errorf("spam: %+v", ds)
	}
	// DMARC p=quarantine on a message with a low spam score: Junk, and
	// never dropped even where spam is deleted.
	if err := e.SetPolicy(t.Context(), "global", Policy{Action: ActionDelete}); err != nil {
		t.Fatal(err)
	}
	dmarc := []filter.Verdict{{Stage: "auth", Action: filter.ActionQuarantine}, {Stage: StageName, Score: 1}}
	ds = s.Dispose(t.Context(), &filter.Envelope{}, dmarc, []uint64{alice.ID})
	if len(ds) != 1 || ds[0].Drop || ds[0].Mailbox != "Junk" {
		t.Errorf("dmarc quarantine: %+v", ds)
	}
}

// A virus verdict asking for quarantine is always held, even for a user
// whose spam goes to INBOX (submitted infected mail is refused by the
// virus stage itself).
func TestDisposeHoldsVirusQuarantine(t *testing.T) {
	st := storetest.New(t)
	e, err := New(st, Config{})
	if err != nil {
		t.Fatal(err)
	}
	alice := storetest.AddAccount(t, st, "alice@example.org", "pw")
	if err := e.SetPolicy(t.Context(), "global", Policy{Action: ActionInbox}); err != nil {
		t.Fatal(err)
	}
	vs := []filter.Verdict{{Stage: "clamav", Action: filter.ActionQuarantine, Score: 100, Reason: "virus found: Eicar"}, {Stage: StageName, Score: 100}}
	ds := e.Stage().Dispose(t.Context(), &filter.Envelope{}, vs, []uint64{alice.ID})
	if len(ds) != 1 || ds[0].Mailbox != storage.QuarantineMailbox || ds[0].SubjectTag != "" {
		t.Fatalf("virus: %+v", ds)
	}
}
