package outbound

import (
	"bufio"
	"io"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-smtp"
	"github.com/tandemmail/tandem/storage/storetest"
)

type dsnRecipient struct {
	Action, Status, RemoteMTA, Diagnostic string
}

type parsedDSN struct {
	header     message.Header
	human      string
	perMessage textproto.MIMEHeader
	recipients map[string]dsnRecipient
	original   string // the text/rfc822-headers part
	statusType string
}

// parseDSN checks the RFC 3464 / RFC 6522 structure of a report and
// returns its fields.
func parseDSN(t *testing.T, raw string) parsedDSN {
	t.Helper()
	ent, err := message.Read(strings.NewReader(raw))
	if err != nil {
		t.Fatalf("read DSN: %v\n%s", err, raw)
	}
	var d parsedDSN
	d.header = ent.Header
	mt, params, _ := ent.Header.ContentType()
	if mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("content type %s %v", mt, params)
	}
	if !strings.HasPrefix(ent.Header.Get("From"), "Mail Delivery System <MAILER-DAEMON@tandem.test>") {
		t.Fatalf("From %q", ent.Header.Get("From"))
	}
	if ent.Header.Get("Auto-Submitted") != "auto-replied" {
		t.Fatal("no Auto-Submitted")
	}
	mr := ent.MultipartReader()
	var parts []*message.Entity
	var bodies []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p.Body)
		parts = append(parts, p)
		bodies = append(bodies, string(b))
	}
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	if mt, _, _ := parts[0].Header.ContentType(); mt != "text/plain" {
		t.Fatalf("part 1 %s", mt)
	}
	d.human = bodies[0]
	d.statusType, _, _ = parts[1].Header.ContentType()
	if d.statusType != "message/delivery-status" && d.statusType != "message/global-delivery-status" {
		t.Fatalf("part 2 %s", d.statusType)
	}
	if mt, _, _ := parts[2].Header.ContentType(); mt != "text/rfc822-headers" && mt != "message/global-headers" {
		t.Fatalf("part 3 %s", mt)
	}
	d.original = bodies[2]
	// The status part is groups of header fields separated by blank lines.
	groups := strings.Split(strings.ReplaceAll(bodies[1], "\r\n", "\n"), "\n\n")
	d.recipients = map[string]dsnRecipient{}
	for i, g := range groups {
		g = strings.TrimSpace(g)
		if g == "" {
			continue
		}
		h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(g + "\n\n"))).ReadMIMEHeader()
		if err != nil {
			t.Fatalf("status group %q: %v", g, err)
		}
		if i == 0 {
			d.perMessage = h
			if !strings.HasPrefix(h.Get("Reporting-MTA"), "dns; ") {
				t.Fatalf("per-message fields %v", h)
			}
			continue
		}
		fr := h.Get("Final-Recipient")
		_, addr, ok := strings.Cut(fr, "; ")
		if !ok {
			t.Fatalf("Final-Recipient %q", fr)
		}
		d.recipients[addr] = dsnRecipient{Action: h.Get("Action"), Status: h.Get("Status"),
			RemoteMTA: h.Get("Remote-MTA"), Diagnostic: h.Get("Diagnostic-Code")}
	}
	return d
}

// A 5xx recipient: the DSN reaches the local sender's INBOX as a
// multipart/report with the original headers.
func TestPermanentFailureSendsDSN(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.2")
	mx := newMXServer(t, nil, ls...)
	mx.rcptHook = func(string) error { return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "no such user: bob") }
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	e, _ := te.start(te.config(port))
	te.submit(e, "alice@here.test", []string{"bob@far.test"}, testBody)
	te.waitQueueEmpty(10 * time.Second)
	in := te.inbox(te.alice)
	if len(in) != 1 {
		t.Fatalf("%d messages in INBOX", len(in))
	}
	d := parseDSN(t, in[0])
	r, ok := d.recipients["bob@far.test"]
	if !ok || r.Action != "failed" || r.Status != "5.1.1" || r.RemoteMTA != "dns; mx1.far.test" ||
		!strings.Contains(r.Diagnostic, "smtp; 550 5.1.1 no such user: bob") {
		t.Fatalf("recipient fields %+v", d.recipients)
	}
	if !strings.Contains(d.original, "Subject: hello far\r\n") || strings.Contains(d.original, "SECRET-BODY-MARKER") {
		t.Fatalf("original headers part %q", d.original)
	}
	if !strings.Contains(d.human, "<bob@far.test>: 550 5.1.1 no such user: bob") {
		t.Fatalf("human part %q", d.human)
	}
	if d.header.Get("Subject") != "Undelivered Mail Returned to Sender" {
		t.Fatalf("subject %q", d.header.Get("Subject"))
	}
	if len(mx.received()) != 0 {
		t.Fatal("message delivered despite 550")
	}
}

// One message, recipients with every outcome: one connection per domain
// carries all of that domain's recipients; the DSN names only the failed
// one; the deferred one stays queued.
func TestMixedRecipients(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	carol := storetest.AddAccount(t, te.st, "carol@here.test", "carol-pw")
	port, ls := listenSame(t, "127.0.0.2", "127.0.0.3")
	far := newMXServer(t, nil, ls[0])
	other := newMXServer(t, nil, ls[1])
	var rcptCalls atomic.Int32
	far.rcptHook = func(to string) error {
		rcptCalls.Add(1)
		switch to {
		case "bad@far.test":
			return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "unknown")
		case "later@far.test":
			return smtpErr(452, smtp.EnhancedCode{4, 2, 2}, "mailbox full")
		}
		return nil
	}
	te.dns.add(t, "far.test. MX 10 mx.far.test.", "mx.far.test. A 127.0.0.2",
		"other.test. MX 10 mx.other.test.", "mx.other.test. A 127.0.0.3")
	cfg := te.config(port)
	cfg.Backoff = []time.Duration{time.Hour}
	e, _ := te.start(cfg)
	id := te.submit(e, "alice@here.test",
		[]string{"ok@far.test", "bad@far.test", "later@far.test", "x@other.test", "carol@here.test", "nobody@here.test"}, testBody)
	waitFor(t, "the attempt", 10*time.Second, func() bool {
		qe, _ := te.entry(id)
		return qe.Rcpts[0].Attempts == 1
	})
	waitFor(t, "the DSN", 10*time.Second, func() bool { return len(te.inbox(te.alice)) == 1 })
	if f := far.received(); len(f) != 1 || len(f[0].Rcpts) != 1 || f[0].Rcpts[0] != "ok@far.test" {
		t.Fatalf("far got %+v", f)
	}
	if far.connCount() != 1 || rcptCalls.Load() != 3 {
		t.Fatalf("far: %d connections, %d RCPTs", far.connCount(), rcptCalls.Load())
	}
	if o := other.received(); len(o) != 1 || o[0].Rcpts[0] != "x@other.test" {
		t.Fatalf("other got %+v", o)
	}
	if in := te.inbox(carol); len(in) != 1 || !strings.Contains(in[0], "SECRET-BODY-MARKER") {
		t.Fatalf("carol's INBOX %d", len(in))
	}
	d := parseDSN(t, te.inbox(te.alice)[0])
	if len(d.recipients) != 2 || d.recipients["bad@far.test"].Status != "5.1.1" || d.recipients["nobody@here.test"].Status != "5.1.1" {
		t.Fatalf("DSN recipients %+v", d.recipients)
	}
	qe, ok := te.entry(id)
	if !ok {
		t.Fatal("entry removed with a recipient pending")
	}
	want := map[string]string{"ok@far.test": "delivered", "bad@far.test": "failed", "later@far.test": "pending",
		"x@other.test": "delivered", "carol@here.test": "delivered", "nobody@here.test": "failed"}
	for _, r := range qe.Rcpts {
		if r.Status != want[r.Addr] {
			t.Errorf("%s: %s, want %s (%s)", r.Addr, r.Status, want[r.Addr], r.LastError)
		}
	}
}

// A recipient that never stops deferring gets one "delayed" DSN after
// DelayWarning and one "failed" DSN at expiry; then the entry is gone.
func TestDelayWarningAndExpiry(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.2")
	mx := newMXServer(t, nil, ls...)
	mx.rcptHook = func(string) error { return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "try later") }
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	cfg := te.config(port)
	cfg.DelayWarning = 400 * time.Millisecond
	cfg.Expiry = 1500 * time.Millisecond
	cfg.Backoff = []time.Duration{200 * time.Millisecond}
	e, _ := te.start(cfg)
	te.submit(e, "alice@here.test", []string{"bob@far.test"}, testBody)
	te.waitQueueEmpty(15 * time.Second)
	time.Sleep(300 * time.Millisecond) // no further DSN may follow
	in := te.inbox(te.alice)
	if len(in) != 2 {
		t.Fatalf("%d DSNs", len(in))
	}
	var actions []string
	for _, m := range in {
		d := parseDSN(t, m)
		r := d.recipients["bob@far.test"]
		actions = append(actions, r.Action)
		if r.Status != "4.3.0" || !strings.Contains(r.Diagnostic, "451") {
			t.Fatalf("recipient %+v", r)
		}
		if r.Action == "delayed" && d.header.Get("Subject") != "Delayed Mail (still being retried)" {
			t.Fatalf("subject %q", d.header.Get("Subject"))
		}
	}
	if actions[0] != "delayed" || actions[1] != "failed" {
		t.Fatalf("actions %v", actions)
	}
}

// No DSN for the null sender: DSNs themselves never bounce (no loops).
func TestNoBounceForNullSender(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.2")
	mx := newMXServer(t, nil, ls...)
	mx.rcptHook = func(string) error { return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "unknown") }
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	e, _ := te.start(te.config(port))
	id := te.submit(e, "", []string{"bob@far.test"}, testBody)
	te.waitQueueEmpty(10 * time.Second)
	if q, _ := te.st.Queue(); len(q) != 0 {
		t.Fatalf("queue %+v", q)
	}
	if len(te.inbox(te.alice)) != 0 {
		t.Fatal("bounce sent for the null sender")
	}
	if tr := te.sink.Transcripts(id); len(tr) != 1 || !strings.Contains(tr[0].Render(), "C MAIL FROM:<>") {
		t.Fatalf("transcript %+v", tr)
	}
}

// A DSN to a remote sender goes out with the null reverse-path; when it
// fails in turn, nothing more is generated.
func TestBounceOfBounceIsDropped(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.2")
	mx := newMXServer(t, nil, ls...)
	var mu atomic.Int32
	mx.rcptHook = func(to string) error {
		mu.Add(1)
		return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "unknown "+to)
	}
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	e, _ := te.start(te.config(port))
	te.submit(e, "sender@far.test", []string{"bob@far.test"}, testBody)
	te.waitQueueEmpty(10 * time.Second)
	time.Sleep(300 * time.Millisecond)
	// Two RCPTs: the message, then its DSN to sender@far.test; no third.
	if n := mu.Load(); n != 2 {
		t.Fatalf("%d RCPT commands", n)
	}
	all := te.rendered("")
	if !strings.Contains(all, "C MAIL FROM:<>") || !strings.Contains(all, "C RCPT TO:<sender@far.test>") {
		t.Fatalf("DSN not sent with the null sender:\n%s", all)
	}
}
