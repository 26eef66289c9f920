package storage_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Blobs reach a quorum before "250", followers hold the same mailbox state,
// and a node that joins later fetches every referenced blob (DESIGN §2).
func TestReplicatedDelivery(t *testing.T) {
	a := storetest.OpenNode(t, storetest.NodeOptions{Dir: t.TempDir(), ID: "a", Bind: "127.0.0.1:0"})
	defer a.Close()
	leaderAddr := a.Raft.Status().Leader
	b := storetest.OpenNode(t, storetest.NodeOptions{Dir: t.TempDir(), ID: "b", Bind: "127.0.0.1:0", Join: leaderAddr})
	defer b.Close()
	c := storetest.OpenNode(t, storetest.NodeOptions{Dir: t.TempDir(), ID: "c", Bind: "127.0.0.1:0", Join: leaderAddr})
	defer c.Close()
	acct := storetest.AddAccount(t, a.Store, "r@example.com", "pw")
	var shas []string
	for i := 0; i < 20; i++ {
		blob, err := a.Store.PutBlob(strings.NewReader("Subject: r\r\n\r\nreplicated " + string(rune('a'+i)) + "\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Store.Deliver(context.Background(), blob, []uint64{acct.ID}, time.Now()); err != nil {
			t.Fatal(err)
		}
		// Quorum of 3 is 2: the leader and at least one follower hold it.
		if !b.Blobs.Has(blob.SHA) && !c.Blobs.Has(blob.SHA) {
			t.Fatalf("blob %d acknowledged before a follower had it", i)
		}
		shas = append(shas, blob.SHA)
		blob.Release()
	}
	inbox, _ := a.Store.Mailbox(acct.ID, "INBOX")
	for _, e := range []*storetest.Env{b, c} {
		waitUntil(t, "follower applies", func() bool {
			m, _ := e.Store.Messages(inbox.ID)
			return len(m) == 20
		})
	}
	// A fourth node joins later and catches up: state by Raft, blobs by fetch.
	d := storetest.OpenNode(t, storetest.NodeOptions{Dir: t.TempDir(), ID: "d", Bind: "127.0.0.1:0", Join: leaderAddr})
	defer d.Close()
	waitUntil(t, "new node has every blob", func() bool {
		for _, s := range shas {
			if !d.Blobs.Has(s) {
				return false
			}
		}
		m, _ := d.Store.Messages(inbox.ID)
		return len(m) == 20
	})
	if _, err := d.Store.Authenticate(context.Background(), "r@example.com", "pw"); err != nil {
		t.Fatalf("account not replicated: %v", err)
	}
	// Writes made on a follower are forwarded to the leader, errors keep
	// their identity, and results come back typed.
	acct2, err := b.Store.AddAccount(context.Background(), storage.NewAccount{Address: "f@example.com", Password: "pw"})
	if err != nil || acct2.Address != "f@example.com" {
		t.Fatalf("add account on a follower: %+v %v", acct2, err)
	}
	if _, err := c.Store.AddAccount(context.Background(), storage.NewAccount{Address: "f@example.com", Password: "pw"}); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("duplicate via follower: %v", err)
	}
	mb, err := c.Store.CreateMailbox(context.Background(), acct.ID, "Forwarded/Sub", "")
	if err != nil || mb.Name != "Forwarded/Sub" {
		t.Fatalf("create mailbox on a follower: %+v %v", mb, err)
	}
	changed, _, err := c.Store.StoreFlags(context.Background(), inbox.ID, []uint32{1}, storage.FlagsAdd, []string{`\Seen`}, 0)
	if err != nil || len(changed) != 1 {
		t.Fatalf("store flags on a follower: %+v %v", changed, err)
	}
}
