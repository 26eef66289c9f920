package filter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

type world struct {
	st         *storage.Store
	dir        string
	alice, bob storage.Account
	full       storage.Account
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	e := storetest.Open(t, dir)
	t.Cleanup(e.Close)
	w := &world{st: e.Store, dir: dir}
	w.alice = storetest.AddAccount(t, w.st, "alice@example.org", "pw")
	w.bob = storetest.AddAccount(t, w.st, "bob@example.org", "pw")
	ctx := t.Context()
	full, err := w.st.AddAccount(ctx, storage.NewAccount{Address: "full@example.org", Password: "pw", QuotaBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	w.full = full
	if err := w.st.AddAlias(ctx, "team@example.org", "alice@example.org", "bob@example.org"); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) inbox(t *testing.T, a storage.Account) []string {
	t.Helper()
	mb, err := w.st.Mailbox(a.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := w.st.Messages(mb.ID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		f, err := w.st.OpenBlob(m.Blob)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		out = append(out, string(b))
	}
	return out
}

func (w *world) blobFiles() int {
	n := 0
	filepath.WalkDir(filepath.Join(w.dir, "blobs"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func code(err error) string {
	if err == nil {
		return "ok"
	}
	r, ok := AsReject(err)
	if !ok {
		return "error: " + err.Error()
	}
	return fmt.Sprintf("%d %d.%d.%d", r.Code, r.Enhanced[0], r.Enhanced[1], r.Enhanced[2])
}

func TestPipelineRecipients(t *testing.T) {
	w := newWorld(t)
	p := New(Config{Store: w.st})
	ctx := t.Context()
	for _, tc := range []struct {
		auth uint64
		rcpt string
		want string
	}{
		{0, "alice@example.org", "ok"},
		{0, "team@example.org", "ok"},
		{0, "nobody@example.org", "550 5.1.1"},
		{0, "x@other.example", "554 5.7.1"},
		{0, "x%other.example@example.org", "554 5.7.1"},
		{0, "other.example!x@example.org", "554 5.7.1"},
		{0, "x@other.example@example.org", "554 5.7.1"},
		{0, "x@[127.0.0.1]", "554 5.7.1"},
		{0, "bad address", "501 5.1.3"},
		{0, "jörg@example.org", "553 5.6.7"},
		{0, "full@example.org", "452 4.2.2"},
		{w.alice.ID, "x@other.example", "451 4.3.2"}, // no outbound queue yet
		{w.alice.ID, "x%other.example@example.org", "554 5.7.1"},
		{w.alice.ID, "bob@example.org", "ok"},
	} {
		tx, err := p.Begin(ctx, &Envelope{ID: "t", AuthAccountID: tc.auth, From: "alice@example.org", Size: 100})
		if err != nil {
			t.Fatal(err)
		}
		if got := code(tx.AddRcpt(ctx, tc.rcpt)); got != tc.want {
			t.Errorf("auth=%d rcpt %q: %s, want %s", tc.auth, tc.rcpt, got, tc.want)
		}
		tx.Abort()
	}
}

func TestPipelineSender(t *testing.T) {
	w := newWorld(t)
	p := New(Config{Store: w.st})
	for _, tc := range []struct {
		auth uint64
		from string
		utf8 bool
		want string
	}{
		{0, "anyone@remote.example", false, "ok"},
		{0, "", false, "ok"},
		{0, "not an address", false, "553 5.1.7"},
		{0, "jörg@remote.example", false, "553 5.6.7"},
		{0, "jörg@remote.example", true, "ok"},
		{w.alice.ID, "alice@example.org", false, "ok"},
		{w.alice.ID, "team@example.org", false, "ok"},
		{w.alice.ID, "bob@example.org", false, "553 5.7.1"},
		{w.alice.ID, "alice@remote.example", false, "553 5.7.1"},
		{w.alice.ID, "", false, "ok"},
	} {
		_, err := p.Begin(t.Context(), &Envelope{ID: "t", AuthAccountID: tc.auth, From: tc.from, SMTPUTF8: tc.utf8})
		if got := code(err); got != tc.want {
			t.Errorf("auth=%d from %q: %s, want %s", tc.auth, tc.from, got, tc.want)
		}
	}
}

func TestPipelineDelivers(t *testing.T) {
	w := newWorld(t)
	p := New(Config{Store: w.st})
	ctx := t.Context()
	env := &Envelope{ID: "abc", From: "x@remote.example"}
	tx, err := p.Begin(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"alice@example.org", "team@example.org", "Bob@Example.org"} {
		if err := tx.AddRcpt(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	env.Trace = "Received: from x by y; now\r\n"
	msg := "Subject: hi\r\n\r\nbody\r\n"
	if err := tx.Body(ctx, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	tx.Abort() // harmless after Body
	for _, a := range []storage.Account{w.alice, w.bob} {
		got := w.inbox(t, a)
		if len(got) != 1 || got[0] != env.Trace+msg {
			t.Fatalf("%s inbox %q", a.Address, got)
		}
	}
	if err := tx.Body(ctx, strings.NewReader(msg)); err == nil {
		t.Fatal("second Body accepted")
	}
}

// A failing reader (client gone) stores nothing and is reported as the
// caller's own error, not as a policy reject.
func TestPipelineReaderError(t *testing.T) {
	w := newWorld(t)
	p := New(Config{Store: w.st})
	tx, _ := p.Begin(t.Context(), &Envelope{ID: "cut"})
	if err := tx.AddRcpt(t.Context(), "alice@example.org"); err != nil {
		t.Fatal(err)
	}
	err := tx.Body(t.Context(), io.MultiReader(strings.NewReader("Subject: x\r\n\r\npartial"), iotestErr{io.ErrUnexpectedEOF}))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v", err)
	}
	if _, ok := AsReject(err); ok {
		t.Fatal("reader error turned into a reject")
	}
	if n := w.blobFiles(); n != 0 || len(w.inbox(t, w.alice)) != 0 {
		t.Fatalf("something stored: %d blob files", n)
	}
	// Header rejections are decided before anything is stored.
	tx, _ = p.Begin(t.Context(), &Envelope{ID: "loop"})
	tx.AddRcpt(t.Context(), "alice@example.org")
	err = tx.Body(t.Context(), strings.NewReader(strings.Repeat("Received: x\r\n", 51)+"\r\nbody"))
	if code(err) != "554 5.4.6" || w.blobFiles() != 0 {
		t.Fatalf("loop: %v, %d blob files", err, w.blobFiles())
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

// Check stages: verdicts are kept, reject/tempfail refuse.
type fixedCheck struct {
	name   string
	action Action
}

func (s fixedCheck) CheckConn(context.Context, *Envelope) Verdict {
	return Verdict{Stage: s.name, Action: s.action}
}
func (s fixedCheck) CheckEnvelope(context.Context, *Envelope, string) Verdict {
	return Verdict{Stage: s.name, Action: s.action}
}
func (s fixedCheck) CheckMessage(_ context.Context, _ *Envelope, _ []string, body io.ReaderAt, size int64) Verdict {
	b := make([]byte, size)
	body.ReadAt(b, 0)
	if strings.Contains(string(b), "EICAR") {
		return Verdict{Stage: s.name, Action: ActionReject, Reason: "virus found", Score: 10}
	}
	return Verdict{Stage: s.name, Action: s.action, Score: 1}
}

func TestPipelineChecks(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	p := New(Config{Store: w.st, Checks: Checks{
		Conn:     []ConnCheck{fixedCheck{"conn", ActionAccept}},
		Envelope: []EnvelopeCheck{fixedCheck{"env", ActionTag}},
		Message:  []MessageCheck{fixedCheck{"msg", ActionAccept}},
	}})
	tx, err := p.Begin(ctx, &Envelope{ID: "v"})
	if err != nil {
		t.Fatal(err)
	}
	tx.AddRcpt(ctx, "alice@example.org")
	if err := tx.Body(ctx, strings.NewReader("Subject: clean\r\n\r\nok\r\n")); err != nil {
		t.Fatal(err)
	}
	vs := tx.(*Delivery).Verdicts()
	if len(vs) != 3 || vs[0].Stage != "conn" || vs[1].Action != ActionTag || vs[2].Score != 1 {
		t.Fatalf("verdicts %+v", vs)
	}
	tx, _ = p.Begin(ctx, &Envelope{ID: "v2"})
	tx.AddRcpt(ctx, "alice@example.org")
	if err := tx.Body(ctx, strings.NewReader("Subject: bad\r\n\r\nEICAR\r\n")); code(err) != "550 5.7.1" || !strings.Contains(err.Error(), "virus found") {
		t.Fatalf("virus: %v", err)
	}
	if len(w.inbox(t, w.alice)) != 1 {
		t.Fatal("rejected message delivered")
	}
	p2 := New(Config{Store: w.st, Checks: Checks{Conn: []ConnCheck{fixedCheck{"greylist", ActionTempFail}}}})
	if _, err := p2.Begin(ctx, &Envelope{ID: "g"}); code(err) != "451 4.7.1" {
		t.Fatalf("tempfail: %v", err)
	}
}

// fakeOutbound records what the pipeline queues.
type fakeOutbound struct {
	rcpts []string
	sha   string
}

func (f *fakeOutbound) Enqueue(_ context.Context, _ *Envelope, rcpts []string, b *storage.Blob) error {
	f.rcpts, f.sha = rcpts, b.SHA
	return nil
}

func TestPipelineOutbound(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	ob := &fakeOutbound{}
	p := New(Config{Store: w.st, Outbound: ob})
	tx, _ := p.Begin(ctx, &Envelope{ID: "o", AuthAccountID: w.alice.ID, From: "alice@example.org"})
	for _, r := range []string{"x@other.example", "bob@example.org"} {
		if err := tx.AddRcpt(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Body(ctx, strings.NewReader("From: alice@example.org\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	if strings.Join(ob.rcpts, ",") != "x@other.example" || ob.sha == "" || len(w.inbox(t, w.bob)) != 1 {
		t.Fatalf("outbound %+v, bob %d", ob, len(w.inbox(t, w.bob)))
	}
	// Unauthenticated: still no relay, even with a queue.
	tx, _ = p.Begin(ctx, &Envelope{ID: "o2", From: "x@remote.example"})
	if got := code(tx.AddRcpt(ctx, "y@other.example")); got != "554 5.7.1" {
		t.Fatalf("relay with queue: %s", got)
	}
}

// failingStore injects storage failures.
type failingStore struct {
	*storage.Store
	putErr, deliverErr error
}

func (f failingStore) PutBlob(r io.Reader) (*storage.Blob, error) {
	if f.putErr != nil {
		io.Copy(io.Discard, r)
		return nil, f.putErr
	}
	return f.Store.PutBlob(r)
}

func (f failingStore) Deliver(ctx context.Context, b *storage.Blob, ids []uint64, d time.Time) error {
	if f.deliverErr != nil {
		return f.deliverErr
	}
	return f.Store.Deliver(ctx, b, ids, d)
}

func TestPipelineStorageFailures(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	for _, tc := range []struct {
		st   failingStore
		want string
	}{
		{failingStore{Store: w.st, putErr: fmt.Errorf("write blob: %w", syscall.ENOSPC)}, "452 4.3.1"},
		{failingStore{Store: w.st, putErr: fmt.Errorf("fsync blob: %w", syscall.EIO)}, "451 4.3.0"},
		{failingStore{Store: w.st, deliverErr: storage.ErrNotLeader}, "451 4.3.0"},
		{failingStore{Store: w.st, deliverErr: storage.ErrUnavailable}, "451 4.3.0"},
	} {
		p := New(Config{Store: tc.st})
		tx, _ := p.Begin(ctx, &Envelope{ID: "f"})
		if err := tx.AddRcpt(ctx, "alice@example.org"); err != nil {
			t.Fatal(err)
		}
		if got := code(tx.Body(ctx, strings.NewReader("Subject: x\r\n\r\nx\r\n"))); got != tc.want {
			t.Errorf("%v/%v: %s, want %s", tc.st.putErr, tc.st.deliverErr, got, tc.want)
		}
	}
	if len(w.inbox(t, w.alice)) != 0 {
		t.Fatal("delivered despite failures")
	}
}

func TestMaxRecipientsFilter(t *testing.T) {
	w := newWorld(t)
	p := New(Config{Store: w.st, MaxRecipients: 2})
	tx, _ := p.Begin(t.Context(), &Envelope{ID: "m"})
	tx.AddRcpt(t.Context(), "alice@example.org")
	tx.AddRcpt(t.Context(), "bob@example.org")
	if got := code(tx.AddRcpt(t.Context(), "team@example.org")); got != "452 4.5.3" {
		t.Fatal(got)
	}
}

// headerCheck asks for a header field, as the sender verification and the
// spam stage do.
type headerCheck struct{ field string }

func (h headerCheck) CheckMessage(context.Context, *Envelope, []string, io.ReaderAt, int64) Verdict {
	return Verdict{Stage: "hdr", Action: ActionAccept, Headers: []string{h.field}}
}

func TestPipelineAddsHeaders(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	p := New(Config{Store: w.st, Checks: Checks{Message: []MessageCheck{
		headerCheck{"Authentication-Results: mx.example.org; spf=pass\r\n"},
		headerCheck{"X-Spam-Status: No, score=0.1"}, // CRLF added when missing
	}}})
	env := &Envelope{ID: "h", Trace: "Received: from x by y; now\r\n"}
	tx, err := p.Begin(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	tx.AddRcpt(ctx, "alice@example.org")
	msg := "Subject: hi\r\n\r\nbody\r\n"
	if err := tx.Body(ctx, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	want := "Authentication-Results: mx.example.org; spf=pass\r\nX-Spam-Status: No, score=0.1\r\n" + env.Trace + msg
	if got := w.inbox(t, w.alice); len(got) != 1 || got[0] != want {
		t.Fatalf("inbox %q", got)
	}
}
