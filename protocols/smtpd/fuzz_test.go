package smtpd

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"
)

// refSmuggle is the obvious definition the scanner must agree with.
func refSmuggle(s string) bool {
	s = "\r\n" + s
	for i := 0; i+3 <= len(s); i++ {
		if s[i:i+3] == "\n.\n" {
			return true
		}
		if i >= 1 && i+4 <= len(s) && s[i:i+4] == "\n.\r\n" && s[i-1] != '\r' {
			return true
		}
	}
	return false
}

func FuzzSmuggleCheck(f *testing.F) {
	for _, s := range []string{"a\n.\nb", "a\r\n.\r\nb", "\n.\r\n", ".\n", "x\r\n..\n", "\r.\r", "a\r\r\n.\r\r\n"} {
		f.Add(s, uint8(1))
	}
	f.Fuzz(func(t *testing.T, s string, chunk uint8) {
		want := refSmuggle(s)
		n := int(chunk)%7 + 1
		c := newSmuggleCheck()
		got := false
		for i := 0; i < len(s) && !got; i += n {
			got = c.scan([]byte(s[i:min(i+n, len(s))])) >= 0
		}
		if got != want {
			t.Fatalf("scan(%q, chunks of %d) = %v, reference %v", s, n, got, want)
		}
	})
}

// FuzzSession feeds random client input to a live MX server over the real
// store. Invariants: no panic, and every "queued" reply matches exactly one
// committed message (never a 250 without a commit, never a commit without
// its 250, never two messages out of one DATA).
func FuzzSession(f *testing.F) {
	seeds := []string{
		"EHLO a\r\nMAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n",
		"EHLO a\r\nMAIL FROM:<x@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\n.\nMAIL FROM:<y@z>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nevil\r\n.\r\nQUIT\r\n",
		"EHLO a\r\nMAIL FROM:<x@remote.example>\r\nRCPT TO:<sales@example.org>\r\nBDAT 5\r\nabcdeBDAT 3 LAST\r\nxyzQUIT\r\n",
		"HELO a\r\nAUTH PLAIN " + b64("\x00alice@example.org\x00alice-pw") + "\r\nMAIL FROM:<alice@example.org>\r\nRCPT TO:<x@other.example>\r\nRCPT TO:<bob@example.org>\r\n",
		"EHLO a\r\nAUTH LOGIN\r\n" + b64("alice@example.org") + "\r\n*\r\nRSET\r\nVRFY x\r\nEXPN y\r\nNOOP\r\nSTARTTLS\r\n",
		"EHLO a\r\nMAIL FROM:<x@remote.example> SIZE=99999999999\r\nMAIL FROM:<> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<jörg@example.org>\r\nRCPT TO:<\"a@b\"@example.org>\r\n",
		"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03GET / HTTP/1.1\r\n\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	te := newTestEnv(f, func(c *Config) {
		c.AllowInsecureAuth = true
		c.Timeout = 2 * time.Second
		c.MaxMessageBytes = 1 << 20
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	})
	counts := func() int {
		n := 0
		for _, a := range []string{"alice@example.org", "bob@example.org", "carol@example.net"} {
			acc, _ := te.st.AccountByAddress(a)
			mb, err := te.st.Mailbox(acc.ID, "INBOX")
			if err != nil {
				f.Fatal(err)
			}
			n += int(mb.Messages)
		}
		return n
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		before := counts()
		c, err := net.Dial("tcp", te.mxAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			c.Write(in)
			c.(*net.TCPConn).CloseWrite()
		}()
		out, _ := io.ReadAll(c)
		// go-smtp's own BDAT panic (LibraryPanics) is tolerated; ours not.
		if te.mx.Panics() != 0 {
			t.Fatalf("server panicked on %q", in)
		}
		queued := bytes.Count(out, []byte("OK queued as "))
		// Deliveries to aliases count once per account.
		if got := counts() - before; got < queued || queued == 0 && got != 0 {
			t.Fatalf("%d queued replies but %d new messages\ninput %q\noutput %q", queued, got, in, out)
		}
		if !bytes.HasPrefix(out, []byte("220 ")) {
			t.Fatalf("no greeting: %q", out)
		}
	})
}
