package imapd

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/tandemmail/tandem/storage"
)

func TestMailboxName(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" = refused
	}{
		{"INBOX", "INBOX"},
		{"inbox", "INBOX"},
		{"InBoX/Sub", "INBOX/Sub"},
		{"Work/2024", "Work/2024"},
		{"Cafe\u0301", "Café"}, // NFC
		{"Café", "Café"},
		{"../etc", ""},
		{"a/../b", ""},
		{"a/./b", ""},
		{"..", ""},
		{"a//b", ""},
		{"/a", ""},
		{"a/", ""},
		{"", ""},
		{"a\x00b", ""},
		{"a\nb", ""},
		{"a\x7fb", ""},
		{"tab\there", ""},
		{"bad\xffutf8", ""},
		{strings.Repeat("x", 255), strings.Repeat("x", 255)},
		{strings.Repeat("x", 256), ""},
		{"wild*card", ""},
		{"per%cent", ""},
	} {
		got, err := mailboxName(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("mailboxName(%q) = %q, want refusal", tc.in, got)
			}
			if e := badNameError(tc.in, err, true); codeOf(e) != imap.ResponseCodeCannot {
				t.Errorf("create %q: %v", tc.in, e)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("mailboxName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestListMatcher(t *testing.T) {
	names := []string{"INBOX", "INBOX/Sub", "Work", "Work/2024", "Work/2024/Q1", "Sent", "Wonder"}
	for _, tc := range []struct {
		ref, pattern string
	}{
		{"", "*"}, {"", "%"}, {"", "Work/%"}, {"", "Work/*"}, {"Work", "%"}, {"Work/", "%"},
		{"", "W*"}, {"", "W%"}, {"", "*4"}, {"", "%/%"}, {"", "INBOX"}, {"", "Work/2024/Q1"},
		{"", "*/Q1"}, {"", "%/Q1"}, {"", "/Work"}, {"Work", "/Sent"}, {"", "*%"}, {"", "%*"},
		{"", "%%"}, {"", "**"}, {"", "Wo%er"}, {"", "W*2*"},
	} {
		m, err := newListMatcher(tc.ref, tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			want := imapserver.MatchList(n, '/', tc.ref, tc.pattern)
			if got := m.match(n); got != want {
				t.Errorf("ref %q pattern %q name %q: got %v, go-imap says %v", tc.ref, tc.pattern, n, got, want)
			}
		}
	}
	// "inbox" in a pattern matches INBOX (RFC 9051 §5.1).
	if m, _ := newListMatcher("", "inbox/%"); !m.match("INBOX/Sub") {
		t.Error("case-insensitive INBOX in pattern")
	}
	if _, err := newListMatcher("", strings.Repeat("a", maxPatternLen+1)); codeOf(err) != imap.ResponseCodeLimit {
		t.Errorf("long pattern: %v", err)
	}
}

// TestListPathological: LIST "" "*%*%*%..." over 10k mailboxes stays fast
// (RELIABILITY #26; go-imap's MatchList backtracks exponentially).
func TestListPathological(t *testing.T) {
	boxes := make([]storage.Mailbox, 10000)
	for i := range boxes {
		boxes[i] = storage.Mailbox{Name: fmt.Sprintf("a%d/b%d/c%d/dddddddddddddddddddddd%d", i%10, i%100, i, i)}
	}
	start := time.Now()
	for _, p := range []string{"*%*%*%*%*%*%", "%a%b%c%d%e%f%g%h%i%j%k%l%", strings.Repeat("*a", 400) + "x"} {
		m, err := newListMatcher("", p)
		if err != nil {
			t.Fatal(err)
		}
		listEntries(boxes, []*listMatcher{m}, &imap.ListOptions{})
	}
	if d := time.Since(start); d > timeSlack*time.Second {
		t.Errorf("pathological LIST took %v", d)
	}
}

func TestListEntriesParents(t *testing.T) {
	boxes := []storage.Mailbox{{Name: "INBOX"}, {Name: "a/b/c", Subscribed: true}, {Name: "x"}}
	m, _ := newListMatcher("", "%")
	got := listEntries(boxes, []*listMatcher{m}, &imap.ListOptions{})
	var names []string
	for _, e := range got {
		names = append(names, e.name)
		if e.name == "a" && (e.box != nil || e.attrs[0] != imap.MailboxAttrNoSelect) {
			t.Errorf("parent a: %+v", e)
		}
	}
	if strings.Join(names, ",") != "INBOX,a,x" {
		t.Errorf("LIST %%: %v", names)
	}
}
