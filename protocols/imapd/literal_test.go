package imapd

import (
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestNonSyncLiteralSmuggling (RELIABILITY #25, RFC 7888 §4): a
// non-synchronizing literal the server will not read must end the
// connection with BYE. Otherwise its bytes, already sent, are parsed as
// commands: with go-imap v2.0.0-beta.8 as released, the literal of
// "APPEND INBOX {5000+}" whose data starts "x CREATE Smuggled" runs that
// CREATE. The fix is part of the imapserver patch that also brings
// CONDSTORE (condstore.go), so the test runs only against it.
func TestNonSyncLiteralSmuggling(t *testing.T) {
	if !condStoreSupported() {
		t.Skip("needs the patched imapserver (go-imap v2.0.0-beta.8 executes the literal's bytes as commands)")
	}
	e := newEnv(t, envOptions{appendLimit: 10000})
	smuggle := func(n int) string {
		data := "x CREATE Smuggled\r\n"
		return data + strings.Repeat("y", n-len(data))
	}
	for _, tc := range []struct {
		name      string
		login     bool
		cmd, data string
	}{
		{"APPEND over 4096", true, "a APPEND INBOX {5000+}\r\n", smuggle(5000)},
		{"APPEND over APPENDLIMIT", true, "a APPEND INBOX {20000+}\r\n", smuggle(20000)},
		{"SEARCH string", true, "s SELECT INBOX\r\na SEARCH TEXT {5000+}\r\n", smuggle(5000)},
		{"LOGIN before auth", false, "a LOGIN {5000+}\r\n", smuggle(5000)},
	} {
		r := e.raw()
		if tc.login {
			r.login()
		}
		r.send(tc.cmd + tc.data + "\r\nz NOOP\r\n")
		r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		out, _ := io.ReadAll(r.br)
		if !strings.Contains(string(out), "* BYE") || strings.Contains(string(out), "x OK") || strings.Contains(string(out), "z OK") {
			t.Errorf("%s: %q", tc.name, out)
		}
		if _, err := e.store.Mailbox(e.acct.ID, "Smuggled"); err == nil {
			t.Fatalf("%s: the literal's bytes ran as a command", tc.name)
		}
	}
	// Non-synchronizing literals up to 4096 bytes (LITERAL-) still work.
	r := e.raw()
	r.login()
	msg := "Subject: small\r\n\r\nbody\r\n"
	r.send("a APPEND INBOX {" + strconv.Itoa(len(msg)) + "+}\r\n" + msg + "\r\n")
	if l := r.expect("a "); !strings.HasPrefix(l[len(l)-1], "a OK") {
		t.Errorf("small non-synchronizing literal: %v", l)
	}
}
