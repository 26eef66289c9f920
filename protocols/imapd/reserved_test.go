package imapd

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemmail/tandem/storage"
)

// The server's quarantine mailbox is neither listed nor reachable, and
// COPY/MOVE report what moved (spam learning hooks in there).
func TestReservedMailboxAndTransferHook(t *testing.T) {
	type moved struct {
		from, to string
		blobs    int
	}
	var mu sync.Mutex
	var got []moved
	e := newEnv(t, envOptions{transferred: func(_ context.Context, _ uint64, from, to storage.Mailbox, msgs []storage.Message) {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, m := range msgs {
			if m.Blob != "" {
				n++
			}
		}
		got = append(got, moved{from.Name, to.Name, n})
	}})
	if _, err := e.store.CreateMailbox(t.Context(), e.acct.ID, storage.QuarantineMailbox, ""); err != nil {
		t.Fatal(err)
	}
	e.deliver("Subject: one\r\n\r\nx\r\n")
	e.deliver("Subject: two\r\n\r\ny\r\n")
	r := e.raw()
	r.login()
	r.send("A1 LIST \"\" *\r\n")
	lines := r.expect("A1 ")
	if strings.Contains(strings.Join(lines, "\n"), "quarantine") || !strings.HasPrefix(lines[len(lines)-1], "A1 OK") {
		t.Fatalf("LIST shows the reserved mailbox: %q", lines)
	}
	for _, cmd := range []string{"SELECT #quarantine", "STATUS #quarantine (MESSAGES)", "CREATE #Quarantine", "DELETE #quarantine", "RENAME #quarantine x"} {
		r.send("A2 " + cmd + "\r\n")
		if l := r.expect("A2 "); !strings.HasPrefix(l[len(l)-1], "A2 NO") {
			t.Errorf("%s: %q", cmd, l)
		}
	}
	r.send("A3 SELECT INBOX\r\n")
	r.expect("A3 OK")
	r.send("A4 COPY 1 #quarantine\r\n")
	if l := r.expect("A4 "); !strings.HasPrefix(l[len(l)-1], "A4 NO") {
		t.Errorf("COPY into the reserved mailbox: %q", l)
	}
	r.send("A5 UID MOVE 1:* Junk\r\n")
	r.expect("A5 OK")
	r.send("A6 SELECT Junk\r\n")
	r.expect("A6 OK")
	r.send("A7 COPY 1 Archive\r\n")
	r.expect("A7 OK")
	deadline := time.Now().Add(2 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []moved{{"INBOX", "Junk", 2}, {"Junk", "Archive", 1}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("transfers %+v, want %+v", got, want)
	}
}
