package storage_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

var ctx = context.Background()

func deliver(t *testing.T, s *storage.Store, body string, ids ...uint64) {
	t.Helper()
	b, err := s.PutBlob(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	if err := s.Deliver(ctx, b, ids, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func TestAccountsAliasesAndResolve(t *testing.T) {
	s := storetest.New(t)
	a := storetest.AddAccount(t, s, "Tech@ABC.example", "pw-abc")
	b := storetest.AddAccount(t, s, "tech@def.example", "pw-def")
	if a.Address != "tech@abc.example" || a.ID == b.ID {
		t.Fatalf("accounts %+v %+v", a, b)
	}
	// M2: same local part on two domains = two accounts, two passwords.
	if _, err := s.Authenticate(ctx, "tech@abc.example", "pw-def"); !errors.Is(err, storage.ErrAuthFailed) {
		t.Fatalf("cross-domain password accepted: %v", err)
	}
	if got, err := s.Authenticate(ctx, "TECH@abc.example", "pw-abc"); err != nil || got.ID != a.ID {
		t.Fatalf("auth: %v %+v", err, got)
	}
	if _, err := s.Authenticate(ctx, "nobody@abc.example", "x"); !errors.Is(err, storage.ErrAuthFailed) {
		t.Fatalf("unknown user: %v", err)
	}
	mbs, _ := s.Mailboxes(a.ID)
	var names []string
	for _, m := range mbs {
		names = append(names, m.Name+m.SpecialUse)
	}
	want := []string{`Archive\Archive`, `Drafts\Drafts`, "INBOX", `Junk\Junk`, `Sent\Sent`, `Trash\Trash`}
	if !slices.Equal(names, want) {
		t.Fatalf("mailboxes %v want %v", names, want)
	}
	if err := s.AddAlias(ctx, "sales@abc.example", "tech@abc.example", "tech@def.example"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCatchAll(ctx, "def.example", "tech@def.example"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		addr string
		want []uint64
		err  error
	}{
		{"tech@abc.example", []uint64{a.ID}, nil},
		{"sales@abc.example", []uint64{a.ID, b.ID}, nil},
		{"tech+news@abc.example", []uint64{a.ID}, nil},
		{"who@def.example", []uint64{b.ID}, nil},
		{"who@abc.example", nil, storage.ErrUnknownRecipient},
		{"x@other.example", nil, storage.ErrNotLocal},
		{"a%b@abc.example", nil, storage.ErrBadAddress},
	}
	for _, c := range cases {
		got, err := s.ResolveRecipient(c.addr)
		if !errors.Is(err, c.err) || !slices.Equal(got, c.want) {
			t.Errorf("resolve %s = %v, %v; want %v, %v", c.addr, got, err, c.want, c.err)
		}
	}
	if !s.SenderAllowed(a.ID, "sales@abc.example") || s.SenderAllowed(a.ID, "tech@def.example") {
		t.Error("sender rules wrong")
	}
	if err := s.DeleteDomain(ctx, "abc.example"); !errors.Is(err, storage.ErrNotEmpty) {
		t.Errorf("delete non-empty domain: %v", err)
	}
}

func TestMessagesLifecycle(t *testing.T) {
	s := storetest.New(t)
	a := storetest.AddAccount(t, s, "u@example.com", "pw")
	inbox, _ := s.Mailbox(a.ID, "inbox")
	for i := 0; i < 3; i++ {
		deliver(t, s, "Subject: m\r\n\r\nbody\r\n", a.ID)
	}
	msgs, _ := s.Messages(inbox.ID)
	if len(msgs) != 3 || msgs[0].UID != 1 || msgs[2].UID != 3 {
		t.Fatalf("messages %+v", msgs)
	}
	inbox, _ = s.MailboxByID(inbox.ID)
	if inbox.Messages != 3 || inbox.Unseen != 3 || inbox.UIDNext != 4 {
		t.Fatalf("inbox %+v", inbox)
	}
	changed, _, err := s.StoreFlags(ctx, inbox.ID, []uint32{1, 2}, storage.FlagsAdd, []string{`\seen`, "$Work"}, 0)
	if err != nil || len(changed) != 2 || !slices.Equal(changed[0].Flags, []string{"$Work", `\Seen`}) {
		t.Fatalf("store: %v %+v", err, changed)
	}
	// CONDSTORE: UNCHANGEDSINCE older than the message's modseq fails it.
	_, failed, _ := s.StoreFlags(ctx, inbox.ID, []uint32{1}, storage.FlagsAdd, []string{`\Flagged`}, 1)
	if !slices.Equal(failed, []uint32{1}) {
		t.Fatalf("unchangedsince: failed %v", failed)
	}
	work, err := s.CreateMailbox(ctx, a.ID, "Work/2024", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mailbox(a.ID, "Work"); err != nil {
		t.Fatal("parent not created:", err)
	}
	src, dst, uv, err := s.Copy(ctx, inbox.ID, []uint32{1, 3}, work.ID)
	if err != nil || !slices.Equal(src, []uint32{1, 3}) || !slices.Equal(dst, []uint32{1, 2}) || uv != work.UIDValidity {
		t.Fatalf("copy %v %v %v %v", src, dst, uv, err)
	}
	src, dst, _, err = s.Move(ctx, inbox.ID, []uint32{2}, work.ID)
	if err != nil || !slices.Equal(src, []uint32{2}) || !slices.Equal(dst, []uint32{3}) {
		t.Fatalf("move %v %v %v", src, dst, err)
	}
	s.StoreFlags(ctx, inbox.ID, []uint32{1}, storage.FlagsAdd, []string{`\Deleted`}, 0)
	exp, err := s.Expunge(ctx, inbox.ID, nil, true)
	if err != nil || !slices.Equal(exp, []uint32{1}) {
		t.Fatalf("expunge %v %v", exp, err)
	}
	inbox, _ = s.MailboxByID(inbox.ID)
	if inbox.Messages != 1 || inbox.UIDNext != 4 {
		t.Fatalf("inbox after %+v", inbox)
	}
	if err := s.RenameMailbox(ctx, a.ID, "Work", "Jobs"); err != nil {
		t.Fatal(err)
	}
	if mb, err := s.Mailbox(a.ID, "Jobs/2024"); err != nil || mb.ID != work.ID || mb.Messages != 3 {
		t.Fatalf("renamed child %+v %v", mb, err)
	}
	if err := s.RenameMailbox(ctx, a.ID, "INBOX", "Old"); err != nil {
		t.Fatal(err)
	}
	inbox, _ = s.MailboxByID(inbox.ID)
	old, _ := s.Mailbox(a.ID, "Old")
	if inbox.Messages != 0 || old.Messages != 1 {
		t.Fatalf("rename INBOX: inbox %+v old %+v", inbox, old)
	}
	if err := s.DeleteMailbox(ctx, a.ID, "INBOX"); !errors.Is(err, storage.ErrCannotDelete) {
		t.Fatalf("delete INBOX: %v", err)
	}
	for _, bad := range []string{"../x", "a//b", "/a", "a/", "a/../b", "x\x00", strings.Repeat("x", 300)} {
		if _, err := s.CreateMailbox(ctx, a.ID, bad, ""); !errors.Is(err, storage.ErrBadMailboxName) {
			t.Errorf("create %q: %v", bad, err)
		}
	}
	// NFC: "Café" in two spellings is one mailbox.
	if _, err := s.CreateMailbox(ctx, a.ID, "Caf\u00e9", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateMailbox(ctx, a.ID, "Cafe\u0301", ""); !errors.Is(err, storage.ErrMailboxExists) {
		t.Fatalf("NFD duplicate: %v", err)
	}
	// Blob content round-trips.
	m, _ := s.Messages(old.ID)
	f, err := s.OpenBlob(m[0].Blob)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f)
	f.Close()
	if string(got) != "Subject: m\r\n\r\nbody\r\n" {
		t.Fatalf("blob %q", got)
	}
}

func TestQuota(t *testing.T) {
	s := storetest.New(t)
	a := storetest.AddAccount(t, s, "q@example.com", "pw")
	q := int64(100)
	if _, err := s.UpdateAccount(ctx, a.Address, storage.AccountUpdate{QuotaBytes: &q}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Append(ctx, a.ID, "INBOX", strings.NewReader(strings.Repeat("x", 80)), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Append(ctx, a.ID, "INBOX", strings.NewReader(strings.Repeat("y", 80)), nil, time.Time{}); !errors.Is(err, storage.ErrOverQuota) {
		t.Fatalf("over quota append: %v", err)
	}
	if !s.QuotaExceeded(a.ID, 30) || s.QuotaExceeded(a.ID, 10) {
		t.Fatal("QuotaExceeded wrong")
	}
}

func TestWatchNotifies(t *testing.T) {
	s := storetest.New(t)
	a := storetest.AddAccount(t, s, "w@example.com", "pw")
	ch, cancel := s.Watch(a.ID)
	defer cancel()
	deliver(t, s, "x\r\n", a.ID)
	inbox, _ := s.Mailbox(a.ID, "INBOX")
	select {
	case id := <-ch:
		if id != inbox.ID {
			t.Fatalf("notified %d want %d", id, inbox.ID)
		}
	case <-time.After(time.Second):
		t.Fatal("no notification")
	}
}

// Restart and snapshot restore keep state identical and never reuse UIDs.
func TestRestartAndSnapshotRestore(t *testing.T) {
	dir := t.TempDir()
	e := storetest.Open(t, dir)
	a := storetest.AddAccount(t, e.Store, "r@example.com", "pw")
	for i := 0; i < 50; i++ {
		deliver(t, e.Store, "m "+string(rune('a'+i%26))+"\r\n", a.ID)
	}
	inbox, _ := e.Store.Mailbox(a.ID, "INBOX")
	e.Store.Expunge(ctx, inbox.ID, []uint32{50}, false)
	if err := e.Raft.Snapshot(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		deliver(t, e.Store, "after snapshot\r\n", a.ID)
	}
	before, _ := e.Store.Messages(inbox.ID)
	e.Close()

	e2 := storetest.Open(t, dir)
	after, _ := e2.Store.Messages(inbox.ID)
	if len(after) != len(before) || after[len(after)-1].UID != before[len(before)-1].UID {
		t.Fatalf("restart: %d/%d messages", len(after), len(before))
	}
	deliver(t, e2.Store, "new\r\n", a.ID)
	m, _ := e2.Store.Messages(inbox.ID)
	if m[len(m)-1].UID != 56 {
		t.Fatalf("UID after restart %d, want 56 (no reuse)", m[len(m)-1].UID)
	}
	// Restore the snapshot into a fresh FSM: same state as of the snapshot.
	if err := e2.Raft.Snapshot(); err != nil {
		t.Fatal(err)
	}
	e2.Close()
	fresh := t.TempDir()
	e3 := storetest.Open(t, fresh)
	defer e3.Close()
	e4 := storetest.Open(t, dir)
	sn, err := e4.FSM.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() { sn.Persist(&sink{pw}) }()
	if err := e3.FSM.Restore(pr); err != nil {
		t.Fatal(err)
	}
	got, _ := e3.Store.Messages(inbox.ID)
	want, _ := e4.Store.Messages(inbox.ID)
	e4.Close()
	if len(got) != len(want) || got[len(got)-1].UID != 56 {
		t.Fatalf("restored %d messages, want %d", len(got), len(want))
	}
	acct, err := e3.Store.Authenticate(ctx, "r@example.com", "pw")
	if err != nil || acct.ID != a.ID {
		t.Fatalf("restored account: %v", err)
	}
}

type sink struct{ *io.PipeWriter }

func (s *sink) ID() string    { return "test" }
func (s *sink) Cancel() error { return s.CloseWithError(io.ErrUnexpectedEOF) }
