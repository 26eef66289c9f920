package virus_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/filter/virus"
	"github.com/tandemmail/tandem/filter/virus/clamdtest"
)

func mime(attachName, ctype string, content []byte) string {
	var b strings.Builder
	b.WriteString("From: a@example.org\r\nTo: b@example.com\r\nSubject: files\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: multipart/mixed; boundary=\"BOUND\"\r\n\r\n")
	b.WriteString("--BOUND\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n")
	fmt.Fprintf(&b, "--BOUND\r\nContent-Type: %s; name=%q\r\nContent-Disposition: attachment; filename=%q\r\nContent-Transfer-Encoding: base64\r\n\r\n", ctype, attachName, attachName)
	enc := base64.StdEncoding.EncodeToString(content)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--BOUND--\r\n")
	return b.String()
}

func zipOf(t *testing.T, name string, content []byte) []byte { return zipOfB(t, name, content) }

func zipOfB(t testing.TB, name string, content []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(content)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func check(st *virus.Stage, msg string, auth uint64) filter.Verdict {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := &filter.Envelope{ID: "T1", AuthAccountID: auth}
	return st.CheckMessage(ctx, env, []string{"b@example.com"}, strings.NewReader(msg), int64(len(msg)))
}

func hasHeader(v filter.Verdict, h string) bool {
	for _, x := range v.Headers {
		if x == h {
			return true
		}
	}
	return false
}

func TestStageRealClamd(t *testing.T) {
	srv := clamdtest.Start(t, clamdtest.Options{})
	eng, err := virus.ParseClamdAddr(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	eng.MaxSize = 3 << 20 // below the test clamd's StreamMaxLength (4M)
	clean := "From: a@example.org\r\nTo: b@example.com\r\nSubject: hello\r\n\r\nJust a normal message.\r\n"
	eicarInline := "From: a@example.org\r\nSubject: test\r\n\r\n" + clamdtest.EICAR + "\r\n"
	eicarB64 := mime("eicar.com", "application/octet-stream", []byte(clamdtest.EICAR))
	eicarZip := mime("eicar.zip", "application/zip", zipOf(t, "eicar.com", []byte(clamdtest.EICAR)))
	cleanZip := mime("notes.zip", "application/zip", zipOf(t, "notes.txt", []byte("nothing to see")))

	reject := &virus.Stage{Engine: eng, Unavailable: virus.PolicyTempFail, Infected: virus.ActionReject}
	quar := &virus.Stage{Engine: eng, Unavailable: virus.PolicyTempFail, Infected: virus.ActionQuarantine}
	tests := []struct {
		name   string
		stage  *virus.Stage
		msg    string
		auth   uint64
		action filter.Action
	}{
		{"clean", reject, clean, 0, filter.ActionAccept},
		{"clean zip", reject, cleanZip, 0, filter.ActionAccept},
		{"eicar inline", reject, eicarInline, 0, filter.ActionReject},
		{"eicar base64 attachment", reject, eicarB64, 0, filter.ActionReject},
		{"eicar in zip", reject, eicarZip, 0, filter.ActionReject},
		{"quarantine inbound", quar, eicarZip, 0, filter.ActionQuarantine},
		{"submitted mail is refused even with quarantine", quar, eicarB64, 7, filter.ActionReject},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := check(tc.stage, tc.msg, tc.auth)
			if v.Action != tc.action {
				t.Fatalf("action %v (%s), want %v", v.Action, v.Reason, tc.action)
			}
			switch v.Action {
			case filter.ActionAccept:
				if !hasHeader(v, "X-Virus-Scanned: clamav\r\n") {
					t.Errorf("clean mail headers %q", v.Headers)
				}
			case filter.ActionReject, filter.ActionQuarantine:
				if !strings.Contains(v.Reason, clamdtest.Signature) {
					t.Errorf("reason %q lacks the signature %s", v.Reason, clamdtest.Signature)
				}
			}
		})
	}

	t.Run("too large", func(t *testing.T) {
		big := clean + strings.Repeat("0123456789abcdef\r\n", (4<<20)/18)
		if v := check(reject, big, 0); v.Action != filter.ActionReject || !strings.Contains(v.Reason, "too large") {
			t.Fatalf("oversized message: %v %q", v.Action, v.Reason)
		}
		// clamd's own StreamMaxLength, when ours is set higher.
		loose := *eng
		loose.MaxSize = 64 << 20
		st := &virus.Stage{Engine: &loose}
		if v := check(st, big, 0); v.Action != filter.ActionReject || !strings.Contains(v.Reason, "too large") {
			t.Fatalf("message over clamd's StreamMaxLength: %v %q", v.Action, v.Reason)
		}
	})

	// clamd stopped: the policy holds.
	srv.Stop()
	t.Run("clamd down tempfail", func(t *testing.T) {
		v := check(reject, eicarInline, 0)
		if v.Action != filter.ActionTempFail {
			t.Fatalf("clamd down: %v %q, want tempfail", v.Action, v.Reason)
		}
		v = check(reject, clean, 0)
		if v.Action != filter.ActionTempFail {
			t.Fatalf("clamd down, clean mail: %v, want tempfail (never accept unscanned)", v.Action)
		}
	})
	t.Run("clamd down accept", func(t *testing.T) {
		st := &virus.Stage{Engine: eng, Unavailable: virus.PolicyAccept}
		v := check(st, clean, 0)
		if v.Action != filter.ActionAccept || !hasHeader(v, "X-Virus-Scanned: unscanned (scanner unavailable)\r\n") {
			t.Fatalf("accept policy: %v %q", v.Action, v.Headers)
		}
	})
}

func TestParsePolicyAndAction(t *testing.T) {
	for in, want := range map[string]virus.UnavailablePolicy{"": virus.PolicyTempFail, "tempfail": virus.PolicyTempFail, "ACCEPT": virus.PolicyAccept} {
		if got, err := virus.ParsePolicy(in); err != nil || got != want {
			t.Errorf("ParsePolicy(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := virus.ParsePolicy("ignore"); err == nil {
		t.Error("ParsePolicy(ignore) accepted")
	}
	for in, want := range map[string]virus.InfectedAction{"": virus.ActionReject, "reject": virus.ActionReject, "quarantine": virus.ActionQuarantine} {
		if got, err := virus.ParseAction(in); err != nil || got != want {
			t.Errorf("ParseAction(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := virus.ParseAction("delete"); err == nil {
		t.Error("ParseAction(delete) accepted")
	}
}
