package imapd

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

func TestAppendAndFetch(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	date := time.Date(2024, 3, 5, 10, 11, 12, 0, time.FixedZone("", 3600))
	var uids []imap.UID
	var uidValidity uint32
	for _, name := range []string{"simple", "alternative", "mixed"} {
		msg := corpus[name]
		cmd := c.Append("INBOX", int64(len(msg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDraft, "$Custom"}, Time: date})
		if _, err := cmd.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Close(); err != nil {
			t.Fatal(err)
		}
		data, err := cmd.Wait()
		if err != nil {
			t.Fatalf("APPEND %s: %v", name, err)
		}
		uids = append(uids, data.UID)
		uidValidity = data.UIDValidity
	}
	if !slices.Equal(uids, []imap.UID{1, 2, 3}) || uidValidity == 0 {
		t.Fatalf("APPENDUID %v %d", uids, uidValidity)
	}
	// APPEND to a missing mailbox: TRYCREATE.
	cmd := c.Append("Nope", 3, nil)
	cmd.Write([]byte("x\r\n"))
	cmd.Close()
	if _, err := cmd.Wait(); codeOf(err) != imap.ResponseCodeTryCreate {
		t.Errorf("APPEND to missing: %v", err)
	}

	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 3 {
		t.Fatalf("select: %+v %v", sel, err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 {
		t.Fatalf("%d messages", len(msgs))
	}
	for i, m := range msgs {
		raw := corpus[[]string{"simple", "alternative", "mixed"}[i]]
		if m.UID != imap.UID(i+1) || m.RFC822Size != int64(len(raw)) || !m.InternalDate.Equal(date) {
			t.Errorf("msg %d: uid %d size %d date %v", i+1, m.UID, m.RFC822Size, m.InternalDate)
		}
		if !slices.Contains(m.Flags, imap.FlagDraft) || !slices.Contains(m.Flags, "$Custom") {
			t.Errorf("msg %d flags %v", i+1, m.Flags)
		}
		if m.BodyStructure == nil || m.Envelope == nil {
			t.Fatalf("msg %d: no structure/envelope", i+1)
		}
	}
	env := msgs[0].Envelope
	if env.Subject != "Hello there" || len(env.From) != 1 || env.From[0].Name != "Alice" || env.From[0].Host != "example.org" ||
		env.MessageID != "m1@example.org" || env.Date.IsZero() {
		t.Errorf("envelope %+v", env)
	}
	if env := msgs[1].Envelope; env.Subject != "Grüße" {
		t.Errorf("encoded subject: %q", env.Subject)
	}
	mp, ok := msgs[2].BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || mp.Subtype != "mixed" || len(mp.Children) != 3 {
		t.Fatalf("bodystructure %#v", msgs[2].BodyStructure)
	}
	if inner := mp.Children[2].(*imap.BodyStructureSinglePart); inner.MessageRFC822 == nil || inner.MessageRFC822.Envelope.Subject != "inner" {
		t.Errorf("message/rfc822 part: %+v", inner)
	}

	// Body sections, checked against go-imap's extractor. BODY.PEEK
	// leaves \Seen alone.
	raw := corpus["mixed"]
	items := []*imap.FetchItemBodySection{
		{Peek: true},
		{Peek: true, Specifier: imap.PartSpecifierHeader},
		{Peek: true, Specifier: imap.PartSpecifierText},
		{Peek: true, Part: []int{1}},
		{Peek: true, Part: []int{2}, Specifier: imap.PartSpecifierMIME},
		{Peek: true, Part: []int{3}, Specifier: imap.PartSpecifierHeader},
		{Peek: true, Part: []int{3, 2}},
		{Peek: true, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}},
		{Peek: true, Partial: &imap.SectionPartial{Offset: 6, Size: 10}},
	}
	got, err := c.Fetch(imap.UIDSetNum(3), &imap.FetchOptions{BodySection: items, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, item := range items {
		data := got[0].FindBodySection(item)
		want := imapserver.ExtractBodySection(strings.NewReader(raw), item)
		if len(item.Part) == 0 && item.Specifier == imap.PartSpecifierNone {
			want = []byte(raw)
			if item.Partial != nil {
				want = want[6:16]
			}
		}
		if !bytes.Equal(data, want) {
			t.Errorf("BODY[%v %s]: got %q want %q", item.Part, item.Specifier, data, want)
		}
	}
	if slices.Contains(got[0].Flags, imap.FlagSeen) {
		t.Error("BODY.PEEK set \\Seen")
	}
	// BODY[] without PEEK sets \Seen and reports it.
	got, err = c.Fetch(imap.SeqSetNum(3), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Part: []int{1}}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got[0].Flags, imap.FlagSeen) {
		t.Errorf("BODY[1] did not report \\Seen: %v", got[0].Flags)
	}
	// BINARY and BINARY.SIZE decode the transfer encoding.
	bin := &imap.FetchItemBinarySection{Part: []int{1}, Peek: true}
	binSize := &imap.FetchItemBinarySectionSize{Part: []int{1}}
	got, err = c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{BinarySection: []*imap.FetchItemBinarySection{bin},
		BinarySectionSize: []*imap.FetchItemBinarySectionSize{binSize}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	// The CRLF before the boundary belongs to the boundary.
	if b := got[0].FindBinarySection(bin); string(b) != "Grüße aus Köln" {
		t.Errorf("BINARY[1] = %q", b)
	}
	if n, ok := got[0].FindBinarySectionSize(binSize.Part); !ok || n != uint32(len("Grüße aus Köln")) {
		t.Errorf("BINARY.SIZE[1] = %d %v", n, ok)
	}
	// "*" is the last message. (UID FETCH 10:* is checked in
	// TestRawEdgeCases: imapclient drops the answer itself.)
	got, err = c.Fetch(imap.SeqSet{{Start: 3, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(got) != 1 || got[0].UID != 3 {
		t.Errorf("FETCH 3:*: %+v %v", got, err)
	}
}

// TestFetchLarge streams a message larger than any buffer.
func TestFetchLarge(t *testing.T) {
	e := newEnv(t)
	body := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n", 200000) // ~15 MB
	msg := "Subject: big\r\n\r\n" + body
	e.appendMsg("INBOX", msg, nil, time.Time{})
	c := e.client()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	item := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierText}
	got, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{item}, RFC822Size: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if got[0].RFC822Size != int64(len(msg)) || string(got[0].FindBodySection(item)) != body {
		t.Errorf("large body: size %d, %d bytes", got[0].RFC822Size, len(got[0].FindBodySection(item)))
	}
}
