package imapd

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// stillServing proves a fresh connection logs in and works.
func stillServing(t *testing.T, e *env) {
	t.Helper()
	r := e.raw()
	r.login()
	r.send("n NOOP\r\n")
	r.expect("n OK")
}

// TestLiteralAbuse (RELIABILITY #25): oversized, malformed and numerous
// literals get a tagged reply, no continuation, and the server survives.
func TestLiteralAbuse(t *testing.T) {
	e := newEnv(t)
	fillInbox(e, 2)
	for _, preAuth := range []bool{true, false} {
		// go-imap loses the TOOBIG code of a refused buffered literal and
		// answers BAD; a name that merely looks like a literal is NO.
		for _, tc := range []struct {
			cmd string
		}{
			{"a LOGIN {4294967296}\r\n"},
			{"a LOGIN {99999999999999999999}\r\n"},
			{"a LOGIN {-1}\r\n"},
			{"a LOGIN {}\r\n"},
			{"a LOGIN {100000000+}\r\n"},
			{"a LOGIN {5000}\r\n"},
		} {
			r := e.raw()
			if !preAuth {
				r.login()
				tc.cmd = strings.Replace(tc.cmd, "LOGIN", "SELECT", 1)
			}
			r.send(tc.cmd)
			// go-imap v2.0.0-beta.8 decides, then discards the rest of
			// the command line before replying: a refused literal's reply
			// comes once the client ends the line (a waiting client gets
			// nothing until the 30 s command timeout closes the
			// connection). What matters here: no "+" continuation, a
			// tagged refusal, no crash.
			r.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			buf := make([]byte, 64)
			n, _ := r.br.Read(buf)
			if n > 0 && buf[0] == '+' {
				t.Errorf("%q: continuation sent for a refused literal", tc.cmd)
				continue
			}
			// A non-synchronizing literal the server will not read ends
			// the connection with BYE where the imapserver supports it
			// (TestNonSyncLiteralSmuggling).
			if strings.HasPrefix(string(buf[:n]), "* BYE") && strings.Contains(tc.cmd, "+}") {
				continue
			}
			if n > 0 {
				r.br = bufio.NewReader(io.MultiReader(bytes.NewReader(buf[:n]), r.c))
			}
			r.send("\r\n")
			l := r.line()
			if !strings.HasPrefix(l, "a BAD") && !strings.HasPrefix(l, "a NO") {
				t.Errorf("preAuth=%v %q: got %q, want a tagged BAD or NO", preAuth, tc.cmd, l)
			}
		}
	}
	// APPEND over APPENDLIMIT: NO [TOOBIG] before any data.
	r := e.raw()
	r.login()
	r.send("p APPEND INBOX {999999999}\r\n")
	if l := r.line(); !strings.HasPrefix(l, "p NO [TOOBIG]") {
		t.Errorf("APPEND over limit: %q", l)
	}
	// 1001 small literals in one command.
	r.send("s SELECT INBOX\r\n")
	r.expect("s OK")
	var b strings.Builder
	b.WriteString("m SEARCH")
	for i := 0; i < 1001; i++ {
		b.WriteString(" SUBJECT {1+}\r\nx")
	}
	b.WriteString("\r\n")
	r.send(b.String())
	if l := r.expect("m "); !strings.HasPrefix(l[len(l)-1], "m OK") && !strings.HasPrefix(l[len(l)-1], "m BAD") && !strings.HasPrefix(l[len(l)-1], "m NO") {
		t.Errorf("1001 literals: %v", l)
	}
	stillServing(t, e)
}

// TestWrongStateAndPasswords: commands in the wrong state and bad
// passwords get proper replies; the connection and server go on.
func TestWrongStateAndPasswords(t *testing.T) {
	e := newEnv(t)
	fillInbox(e, 1)
	r := e.raw()
	for _, tc := range []struct{ cmd, want string }{
		{"a SELECT INBOX\r\n", "a BAD"},
		{"b FETCH 1 FLAGS\r\n", "b BAD"},
		{"c LIST \"\" *\r\n", "c BAD"},
		{"d IDLE\r\n", "d BAD"},
	} {
		r.send(tc.cmd)
		if l := r.expect(tc.cmd[:2]); !strings.HasPrefix(l[len(l)-1], tc.want) {
			t.Errorf("%q: %v", tc.cmd, l)
		}
	}
	for i := 0; i < 5; i++ {
		r.send(fmt.Sprintf("w%d LOGIN %s wrong%d\r\n", i, testUser, i))
		if l := r.expect(fmt.Sprintf("w%d ", i)); !strings.HasPrefix(l[len(l)-1], fmt.Sprintf("w%d NO [AUTHENTICATIONFAILED]", i)) {
			t.Errorf("wrong password: %v", l)
		}
	}
	r.send("u LOGIN nobody@example.com x\r\n")
	if l := r.expect("u "); !strings.HasPrefix(l[len(l)-1], "u NO [AUTHENTICATIONFAILED]") {
		t.Errorf("unknown user: %v", l)
	}
	r.send("v LOGIN \"not an address\" x\r\n")
	if l := r.expect("v "); !strings.HasPrefix(l[len(l)-1], "v NO [AUTHENTICATIONFAILED]") {
		t.Errorf("bad address: %v", l)
	}
	r.login()
	for _, tc := range []struct{ cmd, want string }{
		{"e LOGIN a b\r\n", "e BAD"},
		{"f FETCH 1 FLAGS\r\n", "f BAD"},
		{"g EXPUNGE\r\n", "g BAD"},
		{"h STORE 1 +FLAGS (\\Seen)\r\n", "h BAD"},
		{"i SELECT INBOX\r\n", "i OK"},
		{"j FETCH 1 (FLAGS\r\n", "j BAD"},
		{"k FETCH 0 FLAGS\r\n", "k "},
		{"l STORE 1 +BOGUS (\\Seen)\r\n", "l BAD"},
		{"m COPY 1 \"../../etc\"\r\n", "m NO [NONEXISTENT]"},
		{"n CREATE \"a/../b\"\r\n", "n NO [CANNOT]"},
		{"o CREATE \"&Jjo-!\"\r\n", "o OK"}, // modified UTF-7 for U+263A
		{"p CREATE \"&Jjo\"\r\n", "p NO"},   // broken modified UTF-7
		{"q RENAME INBOX \"\"\r\n", "q NO"},
		{"r XYZZY\r\n", "r BAD"},
	} {
		r.send(tc.cmd)
		if l := r.expect(tc.cmd[:2]); !strings.HasPrefix(l[len(l)-1], tc.want) {
			t.Errorf("%q: %v", tc.cmd, l)
		}
	}
	// IDLE ended by something other than DONE.
	r.send("t IDLE\r\n")
	r.expect("+")
	r.send("NOT DONE\r\n")
	if l := r.expect("t "); !strings.HasPrefix(l[len(l)-1], "t BAD") {
		t.Errorf("IDLE garbage: %v", l)
	}
	// An unknown command before login ends that connection (go-imap's
	// cross-protocol defence), not the server.
	r2 := e.raw()
	r2.send("GET / HTTP/1.1\r\n")
	if l := r2.expect("* BYE"); len(l) == 0 {
		t.Error("no BYE")
	}
	stillServing(t, e)
}

// TestRawEdgeCases: deep section paths, huge sets and pathological
// patterns answer within a second (RELIABILITY #26).
func TestRawEdgeCases(t *testing.T) {
	e := newEnv(t)
	fillInbox(e, 3)
	r := e.raw()
	r.login()
	r.send("s SELECT INBOX\r\n")
	r.expect("s OK")
	deep := strings.TrimSuffix(strings.Repeat("1.", 1000), ".")
	var set strings.Builder
	for i := 1; i < 8000; i++ {
		fmt.Fprintf(&set, "%d,", i)
	}
	set.WriteString("1")
	for _, tc := range []struct{ cmd, want string }{
		{"a FETCH 1 BODY.PEEK[" + deep + "]\r\n", "a "},
		{"b FETCH " + set.String() + " (UID)\r\n", "b OK"},
		{"c LIST \"\" \"*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%*%\"\r\n", "c OK"},
		{"d UID FETCH 10:* (UID)\r\n", "d OK"},
		{"e FETCH 1:4294967295 (UID)\r\n", "e OK"},
		{"f FETCH 1 BODY.PEEK[HEADER.FIELDS (" + strings.TrimSpace(strings.Repeat("X-A ", 2000)) + ")]\r\n", "f OK"},
	} {
		start := time.Now()
		r.send(tc.cmd)
		lines := r.expect(tc.cmd[:2])
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, tc.want) {
			t.Errorf("%.30s: %.200s", tc.cmd, last)
		}
		if tc.cmd[0] == 'd' && (len(lines) != 2 || !strings.Contains(lines[0], "UID 3")) {
			t.Errorf("UID FETCH 10:* must return the last message (RFC 9051 §6.4.8): %v", lines)
		}
		if d := time.Since(start); d > timeSlack*time.Second {
			t.Errorf("%.30s: %v", tc.cmd, d)
		}
	}
	// A line over go-imap's 50 KiB command limit.
	r.send("z NOOP " + strings.Repeat("x", 60<<10) + "\r\n")
	time.Sleep(100 * time.Millisecond)
	stillServing(t, e)
}
