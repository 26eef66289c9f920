package e2e

import (
	"crypto/tls"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// imapLogin opens an IMAP session over STARTTLS.
func imapLogin(t testing.TB, addr, user, pw string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialStartTLS(addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatalf("imap dial: %v", err)
	}
	if err := c.Login(user, pw).Wait(); err != nil {
		t.Fatalf("imap login: %v", err)
	}
	return c
}

type inboxEntry struct {
	uid imap.UID
	id  string
}

func inboxMessageIDs(t testing.TB, c *imapclient.Client) []inboxEntry {
	t.Helper()
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	var ss imap.SeqSet
	ss.AddRange(1, sel.NumMessages)
	msgs, err := c.Fetch(ss, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]inboxEntry, len(msgs))
	for i, m := range msgs {
		out[i] = inboxEntry{uid: m.UID, id: "<" + m.Envelope.MessageID + ">"}
	}
	return out
}

// TestDurabilityKill9: 500 messages over 20 parallel SMTP connections,
// SIGKILL right after the last 250, restart: every acknowledged message is
// in the mailbox exactly once, UIDs strictly increase and none is reused
// (issue: mail core; RELIABILITY #1, #7).
func TestDurabilityKill9(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	s.mustCLI("account", "add", "bulk@example.test", "--password", "pw")
	const conns, per = 20, 25
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			errs <- sendMX(s.addr("smtp"), c, per, "bulk@example.test", func(id string) {
				mu.Lock()
				acked[id] = true
				mu.Unlock()
			})
		}(c)
	}
	wg.Wait()
	s.kill() // right after the last 250
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(acked) != conns*per {
		t.Fatalf("acked %d of %d", len(acked), conns*per)
	}

	s2 := startServer(t, data)
	c := imapLogin(t, s2.addr("imap"), "bulk@example.test", "pw")
	defer c.Close()
	entries := inboxMessageIDs(t, c)
	seen := map[string]int{}
	var last imap.UID
	for _, e := range entries {
		seen[e.id]++
		if e.uid <= last {
			t.Fatalf("UIDs not strictly increasing: %d after %d", e.uid, last)
		}
		last = e.uid
	}
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("acknowledged %s present %d times", id, seen[id])
		}
	}
	if len(entries) != len(acked) {
		t.Errorf("mailbox holds %d messages, %d acknowledged", len(entries), len(acked))
	}
	// A message after the restart gets a fresh UID.
	if err := sendMX(s2.addr("smtp"), 99, 1, "bulk@example.test", func(string) {}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := inboxMessageIDs(t, c)
		if len(after) == len(entries)+1 {
			if u := after[len(after)-1].uid; u <= last {
				t.Fatalf("UID %d reused after restart (last was %d)", u, last)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new message not visible: %d entries", len(after))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
