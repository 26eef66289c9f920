package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const spamCorpus = "../../filter/spam/testdata/corpus"

// copyCorpus copies one class of the test corpus except the held-out file.
func copyCorpus(t *testing.T, class, except string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), class)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(spamCorpus, class, "*.eml"))
	if err != nil || len(files) < 10 {
		t.Fatalf("corpus %s: %v", class, err)
	}
	for _, f := range files {
		if filepath.Base(f) == except {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type classified struct {
	Verdict string  `json:"verdict"`
	Score   float64 `json:"score"`
	Bayes   float64 `json:"bayes_probability"`
}

func classify(t *testing.T, s *server, file string) classified {
	t.Helper()
	out := s.mustCLI("filter", "classify", file)
	var c classified
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("classify output %q: %v", out, err)
	}
	return c
}

func filterStats(t *testing.T, s *server) map[string]any {
	t.Helper()
	var st map[string]any
	if err := json.Unmarshal([]byte(s.mustCLI("filter", "stats")), &st); err != nil {
		t.Fatal(err)
	}
	delete(st, "revision")
	return st
}

// Train through the CLI, then real clients: spam lands in Junk with the
// tag, ham in INBOX, a per-user quarantine holds spam until its digest
// link releases it, IMAP MOVE into Junk teaches the filter, and the
// learned state survives a restart.
func TestSpamFilterEndToEnd(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	data := t.TempDir()
	s := startServer(t, data, "--allow-insecure-auth")
	s.mustCLI("account", "add", "alice@example.test", "--password", "alice-pw")
	s.mustCLI("account", "add", "bob@example.test", "--password", "bob-pw")
	s.mustCLI("filter", "policy", "set", "u:bob@example.test", "--action", "quarantine")

	spamFile := filepath.Join(spamCorpus, "spam", "spam-01.eml")
	hamFile := filepath.Join(spamCorpus, "ham", "ham-20.eml")
	if _, err := os.Stat(spamFile); err != nil {
		t.Fatal(err)
	}
	out := s.mustCLI("filter", "train", "--spam", copyCorpus(t, "spam", "spam-01.eml"), "--ham", copyCorpus(t, "ham", "ham-20.eml"))
	if !strings.Contains(out, "37 learned") {
		t.Fatalf("train: %s", out)
	}
	if c := classify(t, s, spamFile); c.Verdict != "spam" || c.Score < 5 {
		t.Fatalf("held-out spam classified %+v", c)
	}
	hamBefore := classify(t, s, hamFile)
	if hamBefore.Verdict != "ham" {
		t.Fatalf("held-out ham classified %+v", hamBefore)
	}
	// Bad input gets a clear error.
	if out, err := s.cli("filter", "policy", "set", "global", "--action", "bounce"); err == nil || !strings.Contains(out, "want junk, inbox, delete or quarantine") {
		t.Errorf("bad action: %v %s", err, out)
	}

	// Both messages to both users over SMTP.
	out = python(t, `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as c:
    for f in sys.argv[2:]:
        c.sendmail("sender@outside.example", ["alice@example.test", "bob@example.test"], open(f, "rb").read())
print("sent")
`, s.port("smtp"), spamFile, hamFile)
	if !strings.Contains(out, "sent") {
		t.Fatal(out)
	}

	imapScript := `
import imaplib, sys
c = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
c.login(sys.argv[2], sys.argv[3])
for box in sys.argv[4:]:
    typ, data = c.select(box)
    if typ != "OK":
        print(box, "missing"); continue
    typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT X-SPAM-STATUS)])")
    for p in data:
        if isinstance(p, tuple):
            print(box, "|", " ".join(p[1].decode().split()))
typ, data = c.list()
print("list", [d.decode() for d in data])
c.logout()
`
	out = python(t, imapScript, s.port("imap"), "alice@example.test", "alice-pw", "INBOX", "Junk")
	junkTag := regexp.MustCompile(`(?m)^Junk \| .*Subject: \[SPAM\] `)
	junk := regexp.MustCompile(`(?m)^Junk \| .*X-Spam-Status: Yes, score=`)
	inbox := regexp.MustCompile(`(?m)^INBOX \| .*X-Spam-Status: No, score=`)
	if !junkTag.MatchString(out) || !junk.MatchString(out) || !inbox.MatchString(out) || strings.Count(out, "INBOX |") != 1 {
		t.Fatalf("alice's mailboxes:\n%s", out)
	}
	out = python(t, imapScript, s.port("imap"), "bob@example.test", "bob-pw", "INBOX", "#quarantine")
	if strings.Count(out, "INBOX |") != 1 || !strings.Contains(out, "#quarantine missing") || strings.Contains(out, "quarantine\"") {
		t.Fatalf("bob's mailboxes (quarantine must be hidden):\n%s", out)
	}

	// Bob's digest carries a signed release link; a forged one fails.
	var held []struct {
		ID         string `json:"id"`
		Address    string `json:"address"`
		ReleaseURL string `json:"release_url"`
	}
	if err := json.Unmarshal([]byte(s.mustCLI("quarantine", "list", "--json")), &held); err != nil || len(held) != 1 || held[0].Address != "bob@example.test" {
		t.Fatalf("quarantine list: %+v %v", held, err)
	}
	if out := s.mustCLI("quarantine", "digest"); !strings.Contains(out, "1 digest(s) sent") {
		t.Fatalf("digest: %s", out)
	}
	out = python(t, `
import imaplib, sys, re
c = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
c.login("bob@example.test", "bob-pw")
c.select("INBOX")
typ, data = c.search(None, "SUBJECT", '"Quarantine digest"')
n = data[0].split()[-1]
typ, data = c.fetch(n, "(BODY.PEEK[TEXT])")
text = b"".join(p[1] for p in data if isinstance(p, tuple)).decode()
m = re.search(r"http://\S+", text)
print(m.group(0) if m else "no link in: " + repr(data))
`, s.port("imap"))
	link := strings.TrimSpace(out)
	if !strings.Contains(link, "/quarantine/release?id=") {
		t.Fatalf("digest link %q", link)
	}
	// The link names the public host name; the test reaches it on loopback.
	link = regexp.MustCompile(`^http://[^/]+`).ReplaceAllString(link, "http://"+s.addr("http"))
	forged := regexp.MustCompile(`sig=[^&]+`).ReplaceAllString(link, "sig=AAAA")
	if code, _ := exec.Command(curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", forged).Output(); string(code) != "403" {
		t.Errorf("forged link answered %s", code)
	}
	if page, err := exec.Command(curl, "-sf", link).Output(); err != nil || !strings.Contains(string(page), "<form method=\"post\"") {
		t.Fatalf("GET release page: %v %s", err, page)
	}
	if page, err := exec.Command(curl, "-sf", "-X", "POST", link).Output(); err != nil || !strings.Contains(string(page), "Released") {
		t.Fatalf("POST release: %v %s", err, page)
	}
	out = python(t, imapScript, s.port("imap"), "bob@example.test", "bob-pw", "INBOX")
	if strings.Count(out, "INBOX |") != 3 { // ham, digest, released spam
		t.Fatalf("bob's INBOX after release:\n%s", out)
	}
	if out := s.mustCLI("quarantine", "list"); strings.Contains(out, "bob@") {
		t.Fatalf("still held after release:\n%s", out)
	}

	// Alice moves the ham into Junk: the filter learns it as spam.
	out = python(t, `
import imaplib, sys
c = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
c.login("alice@example.test", "alice-pw")
c.select("INBOX")
typ, data = c.uid("MOVE", "1:*", "Junk")
print("move", typ)
`, s.port("imap"))
	if !strings.Contains(out, "move OK") {
		t.Fatal(out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c := classify(t, s, hamFile)
		if c.Bayes > hamBefore.Bayes {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("moving into Junk did not change the score: before %+v, now %+v", hamBefore, c)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The moved message's fuzzy fingerprint is remembered as known spam.
	waitCond(t, "fingerprint of the moved message", 15*time.Second, func() bool {
		out, err := s.cli("filter", "fingerprint", "list")
		return err == nil && strings.Contains(out, "marked as spam by a user")
	})

	// The learned state is replicated state: a restart keeps it.
	before := filterStats(t, s)
	s.stop()
	s = startServer(t, data, "--allow-insecure-auth")
	if after := filterStats(t, s); !equalJSON(before, after) {
		t.Fatalf("learned state changed over a restart: %v → %v", before, after)
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
