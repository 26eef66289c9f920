package imapd

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCondStore covers RFC 7162 CONDSTORE when the linked imapserver
// parses it (see condstore.go); with go-imap v2.0.0-beta.8 as released it
// checks that CONDSTORE is not advertised and the syntax is refused
// cleanly.
func TestCondStore(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 3; i++ {
		e.appendMsg("INBOX", "Subject: m"+strconv.Itoa(i)+"\r\n\r\nbody\r\n", nil, time.Time{})
	}
	r := e.raw()
	r.login()
	r.send("c CAPABILITY\r\n")
	capLines := strings.Join(r.expect("c OK"), "\n")
	if !condStoreSupported() {
		if strings.Contains(capLines, "CONDSTORE") {
			t.Fatalf("CONDSTORE advertised without library support: %s", capLines)
		}
		r.send("s SELECT INBOX\r\n")
		r.expect("s OK")
		r.send("f FETCH 1 (MODSEQ)\r\n")
		if l := r.expect("f "); !strings.HasPrefix(l[len(l)-1], "f BAD") {
			t.Errorf("FETCH MODSEQ without CONDSTORE: %v", l)
		}
		t.Skip("imapserver has no CONDSTORE wire support (go-imap v2.0.0-beta.8)")
	}
	if !strings.Contains(capLines, "CONDSTORE") {
		t.Fatalf("CONDSTORE not advertised: %s", capLines)
	}
	other := e.raw() // a second session; enables CONDSTORE by SELECT
	other.login()

	// SELECT (CONDSTORE): HIGHESTMODSEQ (RFC 7162 §3.1.2.1).
	r.send("s SELECT INBOX (CONDSTORE)\r\n")
	highest := modSeqIn(t, r.expect("s OK"), `\[HIGHESTMODSEQ (\d+)\]`)
	if highest == 0 {
		t.Fatal("no HIGHESTMODSEQ")
	}
	other.send("o SELECT INBOX (CONDSTORE)\r\n")
	other.expect("o OK")

	// FETCH MODSEQ, then CHANGEDSINCE returns only later changes.
	r.send("f FETCH 1:* (MODSEQ)\r\n")
	lines := r.expect("f OK")
	mods := map[int]uint64{}
	for _, l := range lines {
		if m := regexp.MustCompile(`^\* (\d+) FETCH \(.*MODSEQ \((\d+)\)`).FindStringSubmatch(l); m != nil {
			seq, _ := strconv.Atoi(m[1])
			mods[seq], _ = strconv.ParseUint(m[2], 10, 64)
		}
	}
	if len(mods) != 3 || mods[3] > highest {
		t.Fatalf("FETCH MODSEQ: %v (highest %d)", lines, highest)
	}
	r.send("t STORE 2 +FLAGS (\\Flagged)\r\n")
	lines = r.expect("t OK")
	if !regexp.MustCompile(`^\* 2 FETCH \(.*UID 2.*MODSEQ \(\d+\)`).MatchString(lines[0]) {
		t.Errorf("STORE response without UID/MODSEQ after CONDSTORE: %v", lines)
	}
	// The other session sees the change with MODSEQ (RFC 7162 §3.2).
	other.send("n NOOP\r\n")
	lines = other.expect("n OK")
	if !strings.Contains(strings.Join(lines, "\n"), "MODSEQ (") {
		t.Errorf("other session's FETCH without MODSEQ: %v", lines)
	}
	r.send("g UID FETCH 1:* (FLAGS) (CHANGEDSINCE " + strconv.FormatUint(highest, 10) + ")\r\n")
	lines = r.expect("g OK")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "* 2 FETCH") || !strings.Contains(lines[0], "MODSEQ") {
		t.Errorf("CHANGEDSINCE %d: %v", highest, lines)
	}

	// STORE UNCHANGEDSINCE: message 2 changed after `highest`, so it fails
	// with MODIFIED; message 1 is stored (RFC 7162 §3.1.3).
	r.send("u STORE 1:2 (UNCHANGEDSINCE " + strconv.FormatUint(highest, 10) + ") +FLAGS (\\Seen)\r\n")
	lines = r.expect("u ")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "u OK [MODIFIED 2]") {
		t.Errorf("UNCHANGEDSINCE: %v", lines)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "* 1 FETCH") {
		t.Errorf("UNCHANGEDSINCE: message 1 not stored: %v", lines)
	}

	// SEARCH MODSEQ and STATUS HIGHESTMODSEQ.
	r.send("q SEARCH MODSEQ " + strconv.FormatUint(highest+1, 10) + "\r\n")
	lines = r.expect("q OK")
	if m := regexp.MustCompile(`^\* SEARCH 1 2 \(MODSEQ (\d+)\)$`).FindStringSubmatch(lines[0]); m == nil {
		t.Errorf("SEARCH MODSEQ: %v", lines)
	}
	r.send("z STATUS Sent (HIGHESTMODSEQ MESSAGES)\r\n")
	if l := r.expect("z OK"); !strings.Contains(l[0], "HIGHESTMODSEQ ") {
		t.Errorf("STATUS HIGHESTMODSEQ: %v", l)
	}
	r.send("v UID STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)\r\n")
	if l := r.expect("v "); !strings.HasPrefix(l[len(l)-1], "v BAD") {
		t.Errorf("bad UNCHANGEDSINCE: %v", l)
	}
}

func modSeqIn(t *testing.T, lines []string, pattern string) uint64 {
	t.Helper()
	re := regexp.MustCompile(pattern)
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil {
			v, _ := strconv.ParseUint(m[1], 10, 64)
			return v
		}
	}
	return 0
}
