package filter

import (
	"context"
	"io"
	"strings"
	"testing"
)

// recordCheck remembers the prior verdicts it saw.
type recordCheck struct {
	name  string
	score float64
	saw   []Verdict
}

func (c *recordCheck) CheckMessage(ctx context.Context, _ *Envelope, _ []string, _ io.ReaderAt, _ int64) Verdict {
	c.saw = PriorVerdicts(ctx)
	return Verdict{Stage: c.name, Score: c.score}
}

type scoreConn struct{}

func (scoreConn) CheckConn(context.Context, *Envelope) Verdict {
	return Verdict{Stage: "dnsbl", Score: 3}
}

// routeDisposer sends alice's copy to Junk with a tag, drops bob's.
type routeDisposer struct {
	w         *world
	delivered []Disposition
}

func (r *routeDisposer) Dispose(_ context.Context, _ *Envelope, vs []Verdict, accounts []uint64) []Disposition {
	var out []Disposition
	for _, id := range accounts {
		switch id {
		case r.w.alice.ID:
			out = append(out, Disposition{AccountID: id, Mailbox: "Junk", SpecialUse: `\Junk`, SubjectTag: "[SPAM]"})
		case r.w.bob.ID:
			out = append(out, Disposition{AccountID: id, Drop: true})
		}
	}
	return out
}

func (r *routeDisposer) Delivered(_ context.Context, _ *Envelope, ds []Disposition) { r.delivered = ds }

func TestPriorVerdictsAndDisposer(t *testing.T) {
	w := newWorld(t)
	first, second := &recordCheck{name: "virus", score: 1}, &recordCheck{name: "spam"}
	disp := &routeDisposer{w: w}
	p := New(Config{Store: w.st, Checks: Checks{Conn: []ConnCheck{scoreConn{}},
		Message: []MessageCheck{first, second}, Dispose: disp}})
	ctx := t.Context()
	tx, err := p.Begin(ctx, &Envelope{ID: "D1", From: "x@other.example"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"alice@example.org", "bob@example.org"} {
		if err := tx.AddRcpt(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Body(ctx, strings.NewReader("Subject: hello\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	if len(first.saw) != 1 || first.saw[0].Stage != "dnsbl" {
		t.Errorf("first message check saw %+v", first.saw)
	}
	if len(second.saw) != 2 || second.saw[1].Stage != "virus" {
		t.Errorf("second message check saw %+v", second.saw)
	}
	if PriorVerdicts(ctx) != nil {
		t.Error("prior verdicts outside the pipeline")
	}
	if got := w.inbox(t, w.alice); len(got) != 0 {
		t.Errorf("alice's INBOX: %q", got)
	}
	if got := w.inbox(t, w.bob); len(got) != 0 {
		t.Errorf("bob's INBOX (dropped): %q", got)
	}
	junk, err := w.st.Mailbox(w.alice.ID, "Junk")
	if err != nil || junk.Messages != 1 || junk.SpecialUse != `\Junk` {
		t.Fatalf("alice's Junk: %+v %v", junk, err)
	}
	if len(disp.delivered) != 2 || disp.delivered[0].Blob == "" || disp.delivered[1].Blob != "" {
		t.Fatalf("delivered %+v", disp.delivered)
	}
	f, err := w.st.OpenBlob(disp.delivered[0].Blob)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if !strings.Contains(string(b), "Subject: [SPAM] hello\r\n") {
		t.Errorf("tagged copy: %q", b)
	}
}

func FuzzTagSubject(f *testing.F) {
	f.Add("Subject: hi\r\n\r\nbody", "[SPAM]")
	f.Add("From: a\r\n\r\n", "x")
	f.Add("subject:\r\n x\r\n", "")
	f.Fuzz(func(t *testing.T, msg, tag string) {
		head, rest, err := TagSubject(strings.NewReader(msg), tag, 1<<16)
		if err != nil {
			return
		}
		r, _ := io.ReadAll(rest)
		if len(head)+len(r) < len(msg) {
			t.Fatalf("lost bytes: %d+%d < %d", len(head), len(r), len(msg))
		}
	})
}
