package filter

import (
	"context"
	"io"
	"strings"
	"testing"
)

func TestRenameFields(t *testing.T) {
	forged := func(name, value string) string {
		if strings.EqualFold(name, "Authentication-Results") && strings.HasPrefix(value, "mx.example.org;") {
			return "X-Forged-Authentication-Results"
		}
		return ""
	}
	for _, tc := range []struct{ name, in, want string }{
		{"forged one renamed, folded value kept",
			"Received: x\r\nAuthentication-Results: mx.example.org;\r\n\tspf=pass\r\nAuthentication-Results: other.example; spf=fail\r\nSubject: hi\r\n\r\nAuthentication-Results: mx.example.org; in the body\r\n",
			"Received: x\r\nX-Forged-Authentication-Results: mx.example.org;\r\n\tspf=pass\r\nAuthentication-Results: other.example; spf=fail\r\nSubject: hi\r\n\r\nAuthentication-Results: mx.example.org; in the body\r\n"},
		{"nothing to rename", "Subject: a\r\n\r\nbody\r\n", "Subject: a\r\n\r\nbody\r\n"},
		{"bare LF and no body", "Authentication-Results: mx.example.org; dkim=pass\nSubject: a\n", "X-Forged-Authentication-Results: mx.example.org; dkim=pass\nSubject: a\n"},
		{"no header end", "Authentication-Results: mx.example.org; x", "X-Forged-Authentication-Results: mx.example.org; x"},
		{"line without colon kept", "garbage line\r\nSubject: a\r\n\r\nb", "garbage line\r\nSubject: a\r\n\r\nb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := renameFields(strings.NewReader(tc.in), 1<<20, forged)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(r)
			if string(got) != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// renameCheck asks to rename forged fields, as the sender verification does.
type renameCheck struct{}

func (renameCheck) CheckMessage(context.Context, *Envelope, []string, io.ReaderAt, int64) Verdict {
	return Verdict{Stage: "auth", Action: ActionAccept, Headers: []string{"Authentication-Results: mx.example.org; spf=none\r\n"},
		Rename: func(name, value string) string {
			if strings.EqualFold(name, "Authentication-Results") && strings.HasPrefix(value, "mx.example.org") {
				return "X-Forged-Authentication-Results"
			}
			return ""
		}}
}

func TestPipelineRenamesForgedResults(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	p := New(Config{Store: w.st, Checks: Checks{Message: []MessageCheck{renameCheck{}}}})
	env := &Envelope{ID: "r", Trace: "Received: from x by y; now\r\n"}
	tx, err := p.Begin(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	tx.AddRcpt(ctx, "alice@example.org")
	if err := tx.Body(ctx, strings.NewReader("Authentication-Results: mx.example.org; dkim=pass\r\nSubject: hi\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	want := "Authentication-Results: mx.example.org; spf=none\r\n" + env.Trace +
		"X-Forged-Authentication-Results: mx.example.org; dkim=pass\r\nSubject: hi\r\n\r\nbody\r\n"
	if got := w.inbox(t, w.alice); len(got) != 1 || got[0] != want {
		t.Fatalf("inbox %q", got)
	}
}

func FuzzRenameFields(f *testing.F) {
	f.Add("Authentication-Results: a; x\r\n\tmore\r\nSubject: s\r\n\r\nbody")
	f.Add("\r\n")
	f.Fuzz(func(t *testing.T, msg string) {
		keep, err := renameFields(strings.NewReader(msg), 1<<20, func(string, string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(keep)
		if string(got) != msg {
			t.Fatalf("identity rename changed the message: %q → %q", msg, got)
		}
		all, _ := renameFields(strings.NewReader(msg), 1<<20, func(string, string) string { return "X" })
		if _, err := io.ReadAll(all); err != nil {
			t.Fatal(err)
		}
	})
}
