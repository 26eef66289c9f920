package imapd

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/tandemmail/tandem/storage"
)

func fillInbox(e *env, n int) {
	for i := 1; i <= n; i++ {
		e.appendMsg("INBOX", fmt.Sprintf("Subject: m%d\r\n\r\nbody %d\r\n", i, i), nil, time.Time{})
	}
}

func uidsOf(t *testing.T, c *imapclient.Client) []imap.UID {
	t.Helper()
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var out []imap.UID
	for i, m := range msgs {
		if m.SeqNum != uint32(i+1) {
			t.Errorf("sequence numbers not dense: %d at %d", m.SeqNum, i)
		}
		out = append(out, m.UID)
	}
	return out
}

func TestStoreCopyMoveExpunge(t *testing.T) {
	e := newEnv(t)
	fillInbox(e, 5)
	c := e.client()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	// STORE answers with FETCH FLAGS; .SILENT does not.
	res, err := c.Store(imap.SeqSetNum(1, 2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Work"}}, nil).Collect()
	if err != nil || len(res) != 2 || !slices.Contains(res[0].Flags, imap.FlagFlagged) || !slices.Contains(res[1].Flags, "$Work") {
		t.Fatalf("STORE +FLAGS: %+v %v", res, err)
	}
	res, err = c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsDel, Silent: true, Flags: []imap.Flag{"$Work"}}, nil).Collect()
	if err != nil || len(res) != 0 {
		t.Fatalf("STORE -FLAGS.SILENT: %+v %v", res, err)
	}
	res, err = c.Store(imap.UIDSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsSet, Flags: []imap.Flag{imap.FlagSeen}}, nil).Collect()
	if err != nil || len(res) != 1 || res[0].UID != 3 || !slices.Equal(res[0].Flags, []imap.Flag{imap.FlagSeen}) {
		t.Fatalf("UID STORE FLAGS: %+v %v", res, err)
	}
	msgs, _ := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
	if !slices.Equal(msgs[0].Flags, []imap.Flag{imap.FlagFlagged}) {
		t.Errorf("flags of 1: %v", msgs[0].Flags)
	}

	// COPY answers COPYUID.
	cd, err := c.Copy(imap.SeqSetNum(1, 2), "Archive").Wait()
	if err != nil || cd.UIDValidity == 0 || cd.SourceUIDs.String() != "1:2" || cd.DestUIDs.String() != "1:2" {
		t.Fatalf("COPY: %+v %v", cd, err)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "Nope").Wait(); codeOf(err) != imap.ResponseCodeTryCreate {
		t.Errorf("COPY to missing: %v", err)
	}
	// COPY into the selected mailbox reports EXISTS.
	if _, err := c.Copy(imap.SeqSetNum(5), "INBOX").Wait(); err != nil {
		t.Fatal(err)
	}
	if n := c.Mailbox().NumMessages; n != 6 {
		t.Errorf("after COPY into INBOX: %d messages", n)
	}

	// MOVE: COPYUID, then EXPUNGE for each moved message.
	md, err := c.Move(imap.SeqSetNum(2, 4), "Trash").Wait()
	if err != nil || md.SourceUIDs.String() != "2,4" || md.DestUIDs.String() != "1:2" {
		t.Fatalf("MOVE: %+v %v", md, err)
	}
	if got := uidsOf(t, c); !slices.Equal(got, []imap.UID{1, 3, 5, 6}) {
		t.Fatalf("after MOVE: %v", got)
	}
	// EXPUNGE reports sequence numbers in order.
	if _, err := c.Store(imap.UIDSetNum(3, 6), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	seqs, err := c.Expunge().Collect()
	if err != nil || !slices.Equal(seqs, []uint32{2, 3}) {
		t.Fatalf("EXPUNGE: %v %v", seqs, err)
	}
	// UID EXPUNGE only removes the given UIDs (RFC 4315).
	if _, err := c.Store(imap.UIDSetNum(1, 5), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	seqs, err = c.UIDExpunge(imap.UIDSetNum(5)).Collect()
	if err != nil || !slices.Equal(seqs, []uint32{2}) {
		t.Fatalf("UID EXPUNGE: %v %v", seqs, err)
	}
	if got := uidsOf(t, c); !slices.Equal(got, []imap.UID{1}) {
		t.Fatalf("after UID EXPUNGE: %v", got)
	}
	// CLOSE expunges silently.
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Fatal(err)
	}
	st, _ := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if *st.NumMessages != 0 {
		t.Errorf("after CLOSE: %d messages", *st.NumMessages)
	}

	// EXAMINE is read-only: STORE fails, FETCH BODY[] does not set \Seen,
	// CLOSE removes nothing.
	fillInbox(e, 1)
	if _, err := c.Select("Archive", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err == nil {
		t.Error("STORE in EXAMINE succeeded")
	}
	got, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}, Flags: true}).Collect()
	if err != nil || slices.Contains(got[0].Flags, imap.FlagSeen) {
		t.Errorf("FETCH BODY[] in EXAMINE: %+v %v", got, err)
	}
	if _, err := c.Move(imap.SeqSetNum(1), "INBOX").Wait(); err == nil {
		t.Error("MOVE from EXAMINE succeeded")
	}
}

func TestQuota(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	fillInbox(e, 2)
	q := int64(60)
	if _, err := e.store.UpdateAccount(context.Background(), testUser, storage.AccountUpdate{QuotaBytes: &q}); err != nil {
		t.Fatal(err)
	}
	msg := "Subject: too big for the quota\r\n\r\n0123456789012345678901234567890123456789\r\n"
	cmd := c.Append("INBOX", int64(len(msg)), nil)
	cmd.Write([]byte(msg))
	cmd.Close()
	if _, err := cmd.Wait(); codeOf(err) != imap.ResponseCodeOverQuota {
		t.Errorf("APPEND over quota: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Copy(imap.SeqSetNum(1, 2), "Archive").Wait(); codeOf(err) != imap.ResponseCodeOverQuota {
		t.Errorf("COPY over quota: %v", err)
	}
	// MOVE does not grow usage.
	if _, err := c.Move(imap.SeqSetNum(1), "Archive").Wait(); err != nil {
		t.Errorf("MOVE within quota: %v", err)
	}
}

// recorder collects unilateral responses of a client.
type recorder struct {
	mu       sync.Mutex
	exists   []uint32
	expunged []uint32
	flags    map[uint32][]imap.Flag
	notify   chan struct{}
}

func newRecorder() (*recorder, *imapclient.Options) {
	r := &recorder{flags: map[uint32][]imap.Flag{}, notify: make(chan struct{}, 100)}
	return r, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) {
			r.mu.Lock()
			r.expunged = append(r.expunged, seq)
			r.mu.Unlock()
			r.notify <- struct{}{}
		},
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				r.mu.Lock()
				r.exists = append(r.exists, *d.NumMessages)
				r.mu.Unlock()
				r.notify <- struct{}{}
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, err := m.Collect()
			if err == nil {
				r.mu.Lock()
				r.flags[buf.SeqNum] = buf.Flags
				r.mu.Unlock()
				r.notify <- struct{}{}
			}
		},
	}}
}

func (r *recorder) take() (exists, expunged []uint32, flags map[uint32][]imap.Flag) {
	r.mu.Lock()
	defer r.mu.Unlock()
	exists, expunged, flags = r.exists, r.expunged, r.flags
	r.exists, r.expunged, r.flags = nil, nil, map[uint32][]imap.Flag{}
	return
}

// TestTwoSessions: each session keeps its own numbering until it is told
// of the other's changes, and then sees them in order.
func TestTwoSessions(t *testing.T) {
	e := newEnv(t)
	fillInbox(e, 5)
	a := e.client()
	rec, opts := newRecorder()
	b := e.client(opts)
	for _, c := range []*imapclient.Client{a, b} {
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if err := b.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	// imapclient hands unilateral FETCH to the handler in a goroutine.
	select {
	case <-rec.notify:
	case <-time.After(2 * time.Second):
	}
	if _, _, flags := rec.take(); !slices.Contains(flags[2], imap.FlagFlagged) {
		t.Fatalf("B did not see A's STORE: %v", flags)
	}

	// A expunges 2 and 4.
	if _, err := a.Store(imap.SeqSetNum(2, 4), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if seqs, err := a.Expunge().Collect(); err != nil || !slices.Equal(seqs, []uint32{2, 3}) {
		t.Fatalf("A EXPUNGE: %v %v", seqs, err)
	}
	// B's FETCH may not report expunges (RFC 9051 §7.4.1): its numbers
	// are still the old ones, and the gone messages are skipped.
	msgs, err := b.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	// Flag updates of A's STORE may follow (B still numbers 2 and 4 as
	// before); every number must still mean B's old message.
	var pairs []string
	for _, m := range msgs {
		pairs = append(pairs, fmt.Sprintf("%d=%d", m.SeqNum, m.UID))
		if m.UID != imap.UID(m.SeqNum) {
			t.Errorf("B FETCH before NOOP: seq %d is UID %d", m.SeqNum, m.UID)
		}
	}
	if len(pairs) < 3 || fmt.Sprint(pairs[:3]) != "[1=1 3=3 5=5]" {
		t.Errorf("B FETCH before NOOP: %v", pairs)
	}
	// B's STORE on a message A expunged is ignored, not misapplied.
	if _, err := b.Store(imap.SeqSetNum(4), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if err := b.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if _, expunged, _ := rec.take(); !slices.Equal(expunged, []uint32{2, 3}) {
		t.Fatalf("B expunges: %v", expunged)
	}
	if got := uidsOf(t, b); !slices.Equal(got, []imap.UID{1, 3, 5}) {
		t.Fatalf("B after NOOP: %v", got)
	}
	// Two deliveries while B is busy: B sees only what it was told about
	// until it polls, then every message.
	e.deliver("Subject: new1\r\n\r\nx\r\n")
	e.deliver("Subject: new2\r\n\r\ny\r\n")
	waitFor(t, func() bool { st, _ := e.store.MailboxByID(b1(e)); return st.Messages == 5 })
	time.Sleep(50 * time.Millisecond) // let the watcher queue the updates
	msgs, err = b.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	// FETCH may announce the new messages (EXISTS is allowed during FETCH);
	// every FETCH response must name a message the client was told of.
	exists, _, _ := rec.take()
	known := uint32(3)
	if len(exists) > 0 {
		known = exists[len(exists)-1]
	}
	for _, m := range msgs {
		if m.SeqNum > 3 {
			t.Errorf("FETCH 1:* returned seq %d before its EXISTS", m.SeqNum)
		}
	}
	if err := b.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if exists, _, _ = rec.take(); len(exists) > 0 {
		known = exists[len(exists)-1]
	}
	if known != 5 {
		t.Fatalf("B knows %d messages, want 5", known)
	}
	if got := uidsOf(t, b); !slices.Equal(got, []imap.UID{1, 3, 5, 6, 7}) {
		t.Fatalf("B after deliveries: %v", got)
	}
	// "*" is the last message A was told of (UID 5, seq 3), not the
	// newest stored one.
	res, err := a.Store(imap.SeqSet{{Start: 3, Stop: 0}}, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Collect()
	if err != nil || len(res) != 1 || res[0].SeqNum != 3 {
		t.Fatalf("A STORE 3:*: %+v %v", res, err)
	}
	if got := uidsOf(t, a); !slices.Equal(got, []imap.UID{1, 3, 5, 6, 7}) {
		t.Fatalf("A after STORE: %v", got)
	}
}

func b1(e *env) uint64 {
	mb, err := e.store.Mailbox(e.acct.ID, "INBOX")
	if err != nil {
		e.t.Fatal(err)
	}
	return mb.ID
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIdlePush: a delivery reaches an idling client within one second,
// and so does another session's expunge.
func TestIdlePush(t *testing.T) {
	e := newEnv(t)
	fillInbox(e, 2)
	rec, opts := newRecorder()
	c := e.client(opts)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the server is in IDLE
	for i := 0; i < 3; i++ {
		start := time.Now()
		e.deliver(fmt.Sprintf("Subject: push %d\r\n\r\nhello\r\n", i))
		select {
		case <-rec.notify:
		case <-time.After(time.Second):
			t.Fatalf("delivery %d not pushed within 1s", i)
		}
		exists, _, _ := rec.take()
		if len(exists) != 1 || exists[0] != uint32(3+i) {
			t.Fatalf("EXISTS %v", exists)
		}
		t.Logf("push latency %v", time.Since(start))
	}
	// Another session's EXPUNGE is pushed too.
	a := e.client()
	if _, err := a.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(time.Second)
	for {
		_, expunged, _ := rec.take()
		if slices.Equal(expunged, []uint32{1}) {
			break
		}
		select {
		case <-rec.notify:
		case <-deadline:
			t.Fatal("expunge not pushed within 1s")
		}
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := uidsOf(t, c); !slices.Equal(got, []imap.UID{2, 3, 4, 5}) {
		t.Fatalf("after IDLE: %v", got)
	}
}

// TestDeleteSelectedMailbox: another session deletes the mailbox this one
// has selected; its messages are reported expunged and nothing breaks.
func TestDeleteSelectedMailbox(t *testing.T) {
	e := newEnv(t)
	a := e.client()
	if err := a.Create("Doomed", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	e.appendMsg("Doomed", "Subject: 1\r\n\r\nx\r\n", nil, time.Time{})
	e.appendMsg("Doomed", "Subject: 2\r\n\r\ny\r\n", nil, time.Time{})
	rec, opts := newRecorder()
	b := e.client(opts)
	if _, err := b.Select("Doomed", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete("Doomed").Wait(); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(2 * time.Second)
	var expunged []uint32
	for len(expunged) < 2 {
		if err := b.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		_, x, _ := rec.take()
		expunged = append(expunged, x...)
		select {
		case <-deadline:
			t.Fatalf("expunges after DELETE: %v", expunged)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if !slices.Equal(expunged, []uint32{1, 1}) {
		t.Errorf("expunges after DELETE: %v", expunged)
	}
	if got := uidsOf(t, b); len(got) != 0 {
		t.Errorf("messages left: %v", got)
	}
	if _, err := b.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Collect(); err != nil {
		t.Errorf("STORE on the emptied view: %v", err)
	}
	if _, err := b.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
}
