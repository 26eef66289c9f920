package imapd

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzCommandLines feeds command lines to a live, logged-in session with a
// selected mailbox, then proves the server still answers on another
// connection and recovered no panic (RELIABILITY #41). Run:
//
//	go test -run '^$' -fuzz FuzzCommandLines -fuzztime 20s ./protocols/imapd
func FuzzCommandLines(f *testing.F) {
	for _, seed := range []string{
		"a NOOP",
		"a SELECT INBOX",
		"a EXAMINE \"Sent\"",
		"a FETCH 1:* (FLAGS UID RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)",
		"a FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)] BODY[1.MIME] BODY[3.1]<0.10>)",
		"a UID FETCH 1:* (BINARY.PEEK[1] BINARY.SIZE[2])",
		"a FETCH * BODY[]",
		"a UID SEARCH OR FROM alice NOT BODY \"grüße\" SINCE 1-Jan-2024",
		"a SEARCH RETURN (MIN MAX COUNT) CHARSET UTF-8 TEXT hello",
		"a SEARCH NOT NOT NOT (OR SEEN UNSEEN) LARGER 10 UID 1:*",
		"a STORE 1:2 +FLAGS.SILENT (\\Seen $Work)",
		"a UID STORE * FLAGS (\\Deleted)",
		"a COPY 1:* Archive",
		"a UID MOVE 2 Trash",
		"a EXPUNGE",
		"a UID EXPUNGE 1:5",
		"a CLOSE",
		"a UNSELECT",
		"a LIST \"\" *",
		"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" % RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN))",
		"a LSUB \"\" *",
		"a STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE APPENDLIMIT)",
		"a CREATE \"Fuzz/&ZeVnLIqe-\"",
		"a CREATE Fuzz/x (USE (\\Archive))",
		"a RENAME Fuzz/x Fuzz/y",
		"a DELETE Fuzz/y",
		"a SUBSCRIBE Fuzz",
		"a NAMESPACE",
		"a ENABLE IMAP4rev2 UTF8=ACCEPT",
		"a APPEND INBOX (\\Seen) \"01-Jan-2024 10:00:00 +0000\" {12+}\r\nSubject: x\r\n",
		"a IDLE\r\nDONE",
		"a CAPABILITY",
		"a CHECK",
		"a LOGIN a b",
		"a AUTHENTICATE PLAIN",
		"a STARTTLS",
		"a FETCH 1 BODY[" + strings.Repeat("1.", 50) + "1]",
		"a SELECT {5}\r\nINBOX",
	} {
		f.Add(seed)
	}
	e := newEnv(f)
	for _, m := range []string{"simple", "alternative", "mixed", "nested", "digest", "bare-lf"} {
		e.appendMsg("INBOX", corpus[m], nil, time.Time{})
	}
	probe := e.raw()
	probe.login()

	f.Fuzz(func(t *testing.T, cmds string) {
		if len(cmds) > 8192 {
			return
		}
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		c.SetDeadline(time.Now().Add(10 * time.Second)) // generous: fuzz workers share the CPU
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("L LOGIN " + testUser + " " + testPass + "\r\nS SELECT INBOX\r\n"))
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("set-up: %v", err)
			}
			if strings.HasPrefix(l, "S ") {
				break
			}
		}
		c.Write([]byte(cmds + "\r\nzz NOOP\r\n"))
		// Drain briefly: the input may leave the session waiting for a
		// literal or closed; either is fine.
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		for {
			l, err := br.ReadString('\n')
			if err != nil || strings.HasPrefix(l, "zz ") {
				break
			}
		}
		c.Close()

		probe.t = t
		probe.send("p NOOP\r\n")
		probe.expect("p OK")
		if n := e.srv.Panics(); n != 0 {
			t.Fatalf("%d panics after %q", n, cmds)
		}
	})
}
