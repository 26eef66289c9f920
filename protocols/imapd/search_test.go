package imapd

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

var searchCorpus = []struct {
	msg   string
	flags []string
	date  time.Time
}{
	{"From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: Quarterly report\r\n" +
		"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\nThe numbers are in.\r\n",
		[]string{`\Seen`}, time.Date(2024, 1, 5, 12, 0, 0, 0, time.UTC)},
	{"From: carol@example.net\r\nTo: bob@example.com\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\n" +
		"Date: Sat, 10 Feb 2024 08:00:00 +0100\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n\r\nViele Gr=C3=BC=C3=9Fe aus K=C3=B6ln, sch=\r\nlie=C3=9Flich\r\n",
		[]string{`\Flagged`, `$Work`}, time.Date(2024, 2, 11, 0, 30, 0, 0, time.UTC)},
	{"From: erin@example.net\r\nTo: bob@example.com\r\nCc: Dave <dave@example.com>\r\nSubject: trip\r\n" +
		"Date: Fri, 15 Mar 2024 09:00:00 +0000\r\nContent-Type: text/plain; charset=iso-8859-1\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\nR3L832UgYXVzIFr8cmljaA==\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 70)+"\r\n", 0),
		nil, time.Date(2024, 3, 15, 9, 0, 0, 0, time.UTC)},
	{"From: frank@example.org\r\nSubject: html\r\nX-Custom: Marker-42\r\nDate: Mon, 01 Apr 2024 00:00:00 +0000\r\n" +
		"Content-Type: multipart/mixed; boundary=bb\r\n\r\n--bb\r\nContent-Type: text/html\r\n\r\n<p>the SECRET-token</p>\r\n" +
		"--bb\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\naGlkZGVu\r\n--bb--\r\n",
		[]string{`\Seen`, `\Answered`}, time.Date(2024, 4, 1, 0, 0, 0, 0, time.UTC)},
	{"From: gina@example.org\r\nSubject: Fwd: stuff\r\nContent-Type: multipart/mixed; boundary=cc\r\n\r\n--cc\r\n" +
		"Content-Type: text/plain\r\n\r\nsee below\r\n--cc\r\nContent-Type: message/rfc822\r\n\r\nFrom: inner@example.com\r\n" +
		"Subject: forwarded thing\r\n\r\nthe inner needle is here\r\n--cc--\r\n" + strings.Repeat("padding line\r\n", 100),
		[]string{`\Deleted`}, time.Date(2024, 5, 20, 23, 59, 0, 0, time.UTC)},
}

func TestSearch(t *testing.T) {
	e := newEnv(t)
	for _, m := range searchCorpus {
		e.appendMsg("INBOX", m.msg, m.flags, m.date)
	}
	c := e.client()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	date := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	hdr := func(k, v string) []imap.SearchCriteriaHeaderField {
		return []imap.SearchCriteriaHeaderField{{Key: k, Value: v}}
	}
	for _, tc := range []struct {
		name string
		c    imap.SearchCriteria
		want []uint32
	}{
		{"all", imap.SearchCriteria{}, []uint32{1, 2, 3, 4, 5}},
		{"from", imap.SearchCriteria{Header: hdr("From", "ALICE")}, []uint32{1}},
		{"to", imap.SearchCriteria{Header: hdr("To", "bob@")}, []uint32{1, 2, 3}},
		{"cc", imap.SearchCriteria{Header: hdr("Cc", "dave")}, []uint32{3}},
		{"subject", imap.SearchCriteria{Header: hdr("Subject", "report")}, []uint32{1}},
		{"subject decoded", imap.SearchCriteria{Header: hdr("Subject", "grüße")}, []uint32{2}},
		{"header exists", imap.SearchCriteria{Header: hdr("X-Custom", "")}, []uint32{4}},
		{"header value", imap.SearchCriteria{Header: hdr("x-custom", "marker-4")}, []uint32{4}},
		{"body qp", imap.SearchCriteria{Body: []string{"KÖLN, SCHLIEßLICH"}}, []uint32{2}},
		{"body base64 latin1", imap.SearchCriteria{Body: []string{"zürich"}}, []uint32{3}},
		{"body html", imap.SearchCriteria{Body: []string{"secret-token"}}, []uint32{4}},
		{"body skips binary parts", imap.SearchCriteria{Body: []string{"hidden"}}, nil},
		{"body attached message", imap.SearchCriteria{Body: []string{"inner needle"}}, []uint32{5}},
		{"body attached header", imap.SearchCriteria{Body: []string{"forwarded thing"}}, []uint32{5}},
		{"body not header", imap.SearchCriteria{Body: []string{"alice"}}, nil},
		{"text header", imap.SearchCriteria{Text: []string{"alice"}}, []uint32{1}},
		{"text body", imap.SearchCriteria{Text: []string{"numbers are"}}, []uint32{1}},
		{"two bodies", imap.SearchCriteria{Body: []string{"viele", "köln"}}, []uint32{2}},
		{"seen", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, []uint32{1, 4}},
		{"unseen", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, []uint32{2, 3, 5}},
		{"keyword", imap.SearchCriteria{Flag: []imap.Flag{"$work"}}, []uint32{2}},
		{"deleted answered", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Flag: []imap.Flag{imap.FlagDeleted}}, {Flag: []imap.Flag{imap.FlagAnswered}}}}}, []uint32{4, 5}},
		{"recent", imap.SearchCriteria{Flag: []imap.Flag{`\Recent`}}, nil},
		{"larger", imap.SearchCriteria{Larger: 1000}, []uint32{5}},
		{"smaller", imap.SearchCriteria{Smaller: 200}, []uint32{1}},
		{"since", imap.SearchCriteria{Since: date(2024, 3, 15)}, []uint32{3, 4, 5}},
		{"before", imap.SearchCriteria{Before: date(2024, 2, 11)}, []uint32{1}},
		{"on", imap.SearchCriteria{Since: date(2024, 2, 11), Before: date(2024, 2, 12)}, []uint32{2}},
		{"sentsince", imap.SearchCriteria{SentSince: date(2024, 3, 1)}, []uint32{3, 4, 5}},
		{"sentbefore", imap.SearchCriteria{SentBefore: date(2024, 2, 10)}, []uint32{1}},
		{"senton", imap.SearchCriteria{SentSince: date(2024, 2, 10), SentBefore: date(2024, 2, 11)}, []uint32{2}},
		{"not", imap.SearchCriteria{Not: []imap.SearchCriteria{{Header: hdr("From", "alice")}}}, []uint32{2, 3, 4, 5}},
		{"or", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Header: hdr("From", "alice")}, {Header: hdr("Cc", "dave")}}}}, []uint32{1, 3}},
		{"seq", imap.SearchCriteria{SeqNum: []imap.SeqSet{imap.SeqSetNum(2, 4)}}, []uint32{2, 4}},
		{"seq star", imap.SearchCriteria{SeqNum: []imap.SeqSet{{{Start: 4, Stop: 0}}}}, []uint32{4, 5}},
		{"uid", imap.SearchCriteria{UID: []imap.UIDSet{{{Start: 2, Stop: 3}}}}, []uint32{2, 3}},
		{"uid and text", imap.SearchCriteria{UID: []imap.UIDSet{{{Start: 2, Stop: 0}}}, Text: []string{"bob"}}, []uint32{2, 3}},
	} {
		data, err := c.Search(&tc.c, nil).Wait()
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := data.AllSeqNums(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}

	// UID SEARCH answers UIDs; ESEARCH return options.
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UIDExpunge(imap.UIDSetNum(1)).Collect(); err != nil {
		t.Fatal(err)
	}
	data, err := c.UIDSearch(&imap.SearchCriteria{Header: hdr("To", "bob")}, nil).Wait()
	if err != nil || !slices.Equal(data.AllUIDs(), []imap.UID{2, 3}) {
		t.Errorf("UID SEARCH: %v %v", data, err)
	}
	data, err = c.Search(&imap.SearchCriteria{}, &imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true}).Wait()
	if err != nil || data.Min != 1 || data.Max != 4 || data.Count != 4 {
		t.Errorf("ESEARCH: %+v %v", data, err)
	}
	data, err = c.UIDSearch(&imap.SearchCriteria{Body: []string{"nothing like this"}}, &imap.SearchOptions{ReturnCount: true}).Wait()
	if err != nil || data.Count != 0 {
		t.Errorf("ESEARCH empty: %+v %v", data, err)
	}
}

// TestSearchLimits: deep nesting is refused with BAD, not a crash
// (RELIABILITY #26).
func TestSearchLimits(t *testing.T) {
	e := newEnv(t)
	fillInbox(e, 3)
	r := e.raw()
	r.login()
	r.send("s SELECT INBOX\r\n")
	r.expect("s OK")
	for _, tc := range []struct {
		cmd, want string
	}{
		{"a SEARCH " + strings.Repeat("NOT ", 60) + "ALL\r\n", "a OK"},
		{"b SEARCH " + strings.Repeat("NOT ", 10000) + "ALL\r\n", "b BAD"},
		{"c SEARCH " + strings.Repeat("(", 10000) + "ALL" + strings.Repeat(")", 10000) + "\r\n", "c "},
		{"d SEARCH " + strings.Repeat("OR ALL ", 5000) + "ALL\r\n", "d BAD"},
		{"e SEARCH " + strings.Repeat("1,", 20000) + "1\r\n", "e OK"},
		{"f SEARCH BODY " + strings.Repeat("x", 100) + " " + strings.Repeat("SUBJECT y ", 3000) + "\r\n", "f "},
	} {
		start := time.Now()
		r.send(tc.cmd)
		lines := r.expect(tc.cmd[:2])
		last := lines[len(lines)-1]
		if !strings.HasPrefix(last, tc.want) {
			t.Errorf("%s...: %.200s", tc.cmd[:12], last)
		}
		if d := time.Since(start); d > timeSlack*time.Second {
			t.Errorf("%s...: took %v", tc.cmd[:12], d)
		}
	}
	r.send("z NOOP\r\n")
	r.expect("z OK")
}
