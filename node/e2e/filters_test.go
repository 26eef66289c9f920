package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
)

// reputationZone serves DNSBL answers on loopback: name → A record.
// Everything else is NXDOMAIN.
func reputationZone(t *testing.T, records map[string]string) string {
	t.Helper()
	var mu sync.Mutex
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		mu.Lock()
		a, ok := records[strings.ToLower(q.Name)]
		mu.Unlock()
		if ok && q.Qtype == dns.TypeA {
			rr, _ := dns.NewRR(q.Name + " 60 IN A " + a)
			m.Answer = append(m.Answer, rr)
		} else if !ok {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: handler}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// mxAttempt is one SMTP transaction to the MX listener; it returns the
// first error (at MAIL, a RCPT or DATA) and which step gave it.
func mxAttempt(t *testing.T, s *server, from string, rcpts []string, msg string) (step string, err error) {
	t.Helper()
	c, err := smtp.Dial(s.addr("smtp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.org"); err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	if err := c.Mail(from, nil); err != nil {
		return "mail", err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return "rcpt " + r, err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "data", err
	}
	w.Write([]byte(msg))
	if err := w.Close(); err != nil {
		return "data", err
	}
	return "", nil
}

func wantSMTP(t *testing.T, what string, err error, code int, enh smtp.EnhancedCode, text string) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != code || se.EnhancedCode != enh || !strings.Contains(se.Message, text) {
		t.Errorf("%s: want %d %d.%d.%d %q, got %v", what, code, enh[0], enh[1], enh[2], text, err)
	}
}

func testMsg(from, subject, body string) string {
	return fmt.Sprintf("From: %s\r\nTo: alice@example.test\r\nSubject: %s\r\nMessage-ID: <%s@x>\r\n\r\n%s\r\n", from, subject, subject, body)
}

// verdictOf waits for the mail log record of the accepted message with
// subject and returns the verdict of stage ("" when the stage gave none
// with a score or reason).
func verdictOf(t *testing.T, s *server, subject, stage string) string {
	t.Helper()
	var out string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out = s.mustCLI("log", "search", "--subject", subject, "--event", "received")
		if strings.TrimSpace(out) != "" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec struct {
			Verdicts []struct {
				Stage  string  `json:"stage"`
				Score  float64 `json:"score"`
				Reason string  `json:"reason"`
			} `json:"verdicts"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log record %q: %v", line, err)
		}
		for _, v := range rec.Verdicts {
			if v.Stage == stage && (v.Score != 0 || v.Reason != "") {
				return fmt.Sprintf("%g %s", v.Score, v.Reason)
			}
		}
		return ""
	}
	t.Fatalf("no mail log record for %q", subject)
	return ""
}

const e2eSpam = `Dear John Miller, congratulations! You have been selected as the lucky
winner of our annual customer loyalty reward program. Your email address was
randomly drawn from more than two million entries and you are now eligible to
claim a brand new phone together with a cash prize of 5000 US dollars. To
receive your reward confirm your shipping details and pay a small handling fee
by visiting http://claim-prize.example/win?id=12345 within the next 48 hours.`

const e2eSpamCopy = `Dear Mary Chen, congratulations! You have been chosen as the lucky
winner of our annual customer loyalty reward program. Your email address was
randomly drawn from more than three million entries and you are now eligible to
claim a brand new phone together with a cash prize of 7500 US dollars. To
receive your reward confirm your delivery details and pay a small handling fee
by visiting https://other.example/x?u=987 within the next 24 hours.`

// TestReputationFilters drives the sender-reputation stages through the
// real binary and real SMTP: allow/block lists and personal rules, DNSBL
// scoring and rejection against a zone this test serves (the client is
// 127.0.0.1, listed as 1.0.0.127.<zone>), spam fingerprints learned with
// the CLI, the automatic whitelist and greylisting with a 2 s delay.
func TestReputationFilters(t *testing.T) {
	zone := reputationZone(t, map[string]string{
		"1.0.0.127.bl.test.":     "127.0.0.2",
		"1.0.0.127.reject.test.": "127.0.0.2",
		"1.0.0.127.broken.test.": "127.255.255.254",
	})
	s := startServer(t, t.TempDir(), "--dns-resolver", zone)
	s.mustCLI("account", "add", "alice@example.test", "--password", "pw")
	s.mustCLI("account", "add", "bob@example.test", "--password", "pw")
	alice, bob := "alice@example.test", "bob@example.test"

	t.Run("lists and rules", func(t *testing.T) {
		s.mustCLI("filter", "list", "add", "global", "block", "blocked.test", ".bulk.test")
		s.mustCLI("filter", "list", "add", "global", "allow", "friend@ok.test")
		s.mustCLI("filter", "list", "add", bob, "block", "pest@ok.test")
		out := s.mustCLI("filter", "list", "show")
		for _, w := range []string{"global  block  blocked.test", "global  allow  friend@ok.test", "bob@example.test  block  pest@ok.test"} {
			if !strings.Contains(strings.Join(strings.Fields(out), "  "), strings.Join(strings.Fields(w), "  ")) {
				t.Errorf("list show lacks %q:\n%s", w, out)
			}
		}
		if out, err := s.cli("filter", "list", "add", "global", "block", "not valid!"); err == nil || !strings.Contains(out, "not an address, domain, IP or CIDR") {
			t.Errorf("bad entry: %v %s", err, out)
		}

		step, err := mxAttempt(t, s, "x@blocked.test", []string{alice}, testMsg("x@blocked.test", "l1", "hi"))
		wantSMTP(t, "globally blocked domain at "+step, err, 550, smtp.EnhancedCode{5, 7, 1}, "blocked by the global list")
		step, err = mxAttempt(t, s, "x@news.bulk.test", []string{alice}, testMsg("x@news.bulk.test", "l2", "hi"))
		wantSMTP(t, "blocked subdomain at "+step, err, 550, smtp.EnhancedCode{5, 7, 1}, "blocked")
		// Bob's personal block refuses only bob.
		step, err = mxAttempt(t, s, "pest@ok.test", []string{bob}, testMsg("pest@ok.test", "l3", "hi"))
		wantSMTP(t, "personal block at "+step, err, 550, smtp.EnhancedCode{5, 7, 1}, "personal list")
		if step, err := mxAttempt(t, s, "pest@ok.test", []string{alice}, testMsg("pest@ok.test", "l4", "hi")); err != nil {
			t.Errorf("pest to alice refused at %s: %v", step, err)
		}
		if step, err := mxAttempt(t, s, "friend@ok.test", []string{alice}, testMsg("friend@ok.test", "l5", "hi")); err != nil {
			t.Fatalf("allowed sender refused at %s: %v", step, err)
		}
		if v := verdictOf(t, s, "l5", "lists"); !strings.HasPrefix(v, "-100 ") {
			t.Errorf("allow-listed sender's verdict: %q", v)
		}

		// A personal rule: alice blocks "lottery" in the subject.
		out = s.mustCLI("filter", "rule", "add", alice, "--field", "subject", "--op", "contains", "--value", "LOTTERY", "--action", "block")
		if !strings.Contains(out, "subject") {
			t.Errorf("rule add: %s", out)
		}
		step, err = mxAttempt(t, s, "a@ok.test", []string{alice}, testMsg("a@ok.test", "your lottery win", "hi"))
		wantSMTP(t, "personal rule at "+step, err, 550, smtp.EnhancedCode{5, 7, 1}, "personal rules")
		if out, err := s.cli("filter", "rule", "add", alice, "--field", "subject", "--op", "regex", "--value", "(", "--action", "block"); err == nil || !strings.Contains(out, "rule regex") {
			t.Errorf("bad regex: %v %s", err, out)
		}
	})

	t.Run("dnsbl", func(t *testing.T) {
		s.mustCLI("filter", "dnsbl", "add", "bl.test", "--score", "2.5")
		s.mustCLI("filter", "dnsbl", "add", "broken.test")
		if step, err := mxAttempt(t, s, "a@ok.test", []string{alice}, testMsg("a@ok.test", "d1", "hi")); err != nil {
			t.Fatalf("scored client refused at %s: %v", step, err)
		}
		if v := verdictOf(t, s, "d1", "dnsbl"); !strings.HasPrefix(v, "2.5 bl.test lists (127.0.0.2)") {
			t.Errorf("dnsbl verdict: %q (the 127.255.255.x answer of broken.test must not count)", v)
		}
		s.mustCLI("filter", "dnsbl", "add", "reject.test", "--reject", "--match", "127.0.0.2-127.0.0.99")
		if out := s.mustCLI("filter", "dnsbl", "list"); !strings.Contains(out, "reject.test") {
			t.Errorf("dnsbl list:\n%s", out)
		}
		step, err := mxAttempt(t, s, "a@ok.test", []string{alice}, testMsg("a@ok.test", "d2", "hi"))
		wantSMTP(t, "rejecting DNSBL at "+step, err, 550, smtp.EnhancedCode{5, 7, 1}, "blocked using reject.test")
		if step != "mail" {
			t.Errorf("DNSBL refusal at %s, want at MAIL (the connection check)", step)
		}
		// Authenticated users are not judged by the DNSBL.
		submit(t, s, alice, "pw", alice, []string{bob}, "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: d3\r\n\r\nhi\r\n")
		for _, z := range []string{"reject.test", "bl.test", "broken.test"} {
			s.mustCLI("filter", "dnsbl", "del", z)
		}
		if out, err := s.cli("filter", "dnsbl", "add", "x.test", "--allow", "--reject"); err == nil || !strings.Contains(out, "cannot reject") {
			t.Errorf("allow list with reject: %v %s", err, out)
		}
	})

	t.Run("fingerprints", func(t *testing.T) {
		cmd := exec.Command(tandemBin, "--data", s.data, "filter", "fingerprint", "add", "--note", "e2e")
		cmd.Stdin = strings.NewReader("From: x@spam.test\r\nSubject: you won\r\n\r\n" + e2eSpam + "\r\n")
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "fingerprint ") {
			t.Fatalf("fingerprint add: %v %s", err, out)
		}
		if step, err := mxAttempt(t, s, "b@ok.test", []string{alice}, testMsg("b@ok.test", "f1", e2eSpamCopy)); err != nil {
			t.Fatalf("near-copy refused at %s: %v", step, err)
		}
		if v := verdictOf(t, s, "f1", "fingerprint"); !strings.HasPrefix(v, "6 near-copy of known spam") {
			t.Errorf("near-copy verdict: %q", v)
		}
		ham := "the quarterly planning meeting moves to Thursday at ten in the large room on the third floor, please bring the budget figures"
		if step, err := mxAttempt(t, s, "b@ok.test", []string{alice}, testMsg("b@ok.test", "f2", ham)); err != nil {
			t.Fatalf("ham refused at %s: %v", step, err)
		}
		if v := verdictOf(t, s, "f2", "fingerprint"); v != "" {
			t.Errorf("ham got a fingerprint verdict: %q", v)
		}
	})

	t.Run("greylisting and automatic whitelist", func(t *testing.T) {
		out := s.mustCLI("filter", "greylist", "on", "--delay", "2s", "--expiry", "1h")
		if !strings.Contains(out, "greylisting on for all domains; delay 2s") {
			t.Errorf("greylist on: %s", out)
		}
		start := time.Now()
		step, err := mxAttempt(t, s, "new@far.test", []string{alice}, testMsg("new@far.test", "g1", "hi"))
		wantSMTP(t, "first attempt at "+step, err, 451, smtp.EnhancedCode{4, 7, 1}, "Greylisted, try again in 2 seconds")
		step, err = mxAttempt(t, s, "new@far.test", []string{alice}, testMsg("new@far.test", "g1", "hi"))
		wantSMTP(t, "early retry at "+step, err, 451, smtp.EnhancedCode{4, 7, 1}, "Greylisted")
		time.Sleep(2*time.Second - time.Since(start) + 200*time.Millisecond)
		if step, err := mxAttempt(t, s, "new@far.test", []string{alice}, testMsg("new@far.test", "g1", "hi")); err != nil {
			t.Fatalf("retry after the delay refused at %s: %v", step, err)
		}
		if v := verdictOf(t, s, "g1", "greylist"); !strings.Contains(v, "greylisting passed after") {
			t.Errorf("greylist verdict: %q", v)
		}
		// Allow-listed senders pass at once.
		if step, err := mxAttempt(t, s, "friend@ok.test", []string{alice}, testMsg("friend@ok.test", "g2", "hi")); err != nil {
			t.Errorf("allow-listed sender greylisted at %s: %v", step, err)
		}
		// Alice wrote to carol@far.test: carol's mail to alice scores -5
		// and passes greylisting at once; to bob it is greylisted.
		submit(t, s, alice, "pw", alice, []string{"carol@far.test", bob}, "From: alice@example.test\r\nTo: carol@far.test\r\nSubject: g3\r\n\r\nhi\r\n")
		time.Sleep(1500 * time.Millisecond) // the whitelist writes in batches, once a second
		if step, err := mxAttempt(t, s, "carol@far.test", []string{alice}, testMsg("carol@far.test", "g4", "hi")); err != nil {
			t.Fatalf("correspondent greylisted at %s: %v", step, err)
		}
		if v := verdictOf(t, s, "g4", "awl"); !strings.HasPrefix(v, "-5 ") {
			t.Errorf("automatic whitelist verdict: %q", v)
		}
		step, err = mxAttempt(t, s, "carol@far.test", []string{bob}, testMsg("carol@far.test", "g5", "hi"))
		wantSMTP(t, "the whitelist is per user, bob at "+step, err, 451, smtp.EnhancedCode{4, 7, 1}, "Greylisted")
		out = s.mustCLI("filter", "greylist", "show")
		if !strings.Contains(out, "new@far.test") || !strings.Contains(out, "127.0.0.0/24") {
			t.Errorf("greylist show:\n%s", out)
		}
		s.mustCLI("filter", "greylist", "off")
		if step, err := mxAttempt(t, s, "other@far.test", []string{bob}, testMsg("other@far.test", "g6", "hi")); err != nil {
			t.Errorf("greylisting off, refused at %s: %v", step, err)
		}
	})
}

// TestReputationIntakeBench measures SMTP intake with the reputation
// stages configured (a DNSBL and a DNSWL zone, 1,000 list entries, 20
// personal rules, greylisting on, 1,000 spam fingerprints) against the
// same binary with them unconfigured, in the same run, alternating
// rounds. Other stages (sender auth, spam) run in both. It is a
// benchmark, not a test: TANDEM_BENCH=1 runs it.
//
//	TANDEM_BENCH=1 go test -count=1 -run TestReputationIntakeBench -v ./node/e2e/
func TestReputationIntakeBench(t *testing.T) {
	if os.Getenv("TANDEM_BENCH") == "" {
		t.Skip("benchmark: set TANDEM_BENCH=1")
	}
	zone := reputationZone(t, map[string]string{})
	off := startServer(t, t.TempDir(), "--dns-resolver", zone)
	on := startServer(t, t.TempDir(), "--dns-resolver", zone)
	for _, s := range []*server{off, on} {
		s.mustCLI("account", "add", "alice@example.test", "--password", "pw")
	}
	on.mustCLI("filter", "dnsbl", "add", "bl.test", "--score", "3")
	on.mustCLI("filter", "dnsbl", "add", "wl.test", "--allow")
	entries := []string{"filter", "list", "add", "global", "block"}
	for i := range 1000 {
		entries = append(entries, fmt.Sprintf("spammer%d.test", i))
	}
	on.mustCLI(entries...)
	on.mustCLI("filter", "list", "add", "alice@example.test", "allow", "boss@partner.test")
	for i := range 20 {
		on.mustCLI("filter", "rule", "add", "alice@example.test", "--field", "subject", "--op", "regex",
			"--value", fmt.Sprintf("(?i)offer%d", i), "--action", "score", "--score", "2")
	}
	spamDir := t.TempDir()
	files := []string{"filter", "fingerprint", "add"}
	for i := range 1000 {
		p := fmt.Sprintf("%s/%d.eml", spamDir, i)
		var words strings.Builder
		for j := range 40 {
			fmt.Fprintf(&words, "w%d ", (i*131+j*j*7)%5000)
		}
		body := fmt.Sprintf("Subject: s\r\n\r\nspam wave %d: %s\r\n", i, words.String())
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	if out, err := on.cli(files...); err != nil {
		t.Fatalf("fingerprint add: %v %.500s", err, out)
	}
	on.mustCLI("filter", "greylist", "on", "--delay", "1s")
	mxAttempt(t, on, "sender@client.example.org", []string{"alice@example.test"}, testMsg("sender@client.example.org", "warm", "hi"))
	time.Sleep(1100 * time.Millisecond)
	if step, err := mxAttempt(t, on, "sender@client.example.org", []string{"alice@example.test"}, testMsg("sender@client.example.org", "warm", "hi")); err != nil {
		t.Fatalf("greylist warm-up at %s: %v", step, err)
	}
	const conns, perConn = 4, 100
	rate := func(s *server) float64 {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := sendMX(s.addr("smtp"), c, perConn, "alice@example.test", func(string) {}); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		return conns * perConn / time.Since(start).Seconds()
	}
	var offR, onR []float64
	for round := range 3 {
		offR = append(offR, rate(off))
		onR = append(onR, rate(on))
		t.Logf("round %d: off %.0f msg/s, on %.0f msg/s", round, offR[round], onR[round])
	}
	med := func(v []float64) float64 { sort.Float64s(v); return v[len(v)/2] }
	fmt.Printf("RESULT reputation_off_msgs_per_s=%.0f reputation_on_msgs_per_s=%.0f ratio=%.2f\n", med(offR), med(onR), med(onR)/med(offR))
}
