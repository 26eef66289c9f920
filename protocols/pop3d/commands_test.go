package pop3d

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		line string
		want command
		err  error
	}{
		{"STAT", command{name: "STAT"}, nil},
		{"stat", command{name: "STAT"}, nil},
		{"Retr 1", command{name: "RETR", rest: "1", args: []string{"1"}}, nil},
		{"TOP 1 10", command{name: "TOP", rest: "1 10", args: []string{"1", "10"}}, nil},
		{"PASS  two  spaces ", command{name: "PASS", rest: " two  spaces ", args: []string{"two", "spaces"}}, nil},
		{"USER jörg@example.test", command{name: "USER", rest: "jörg@example.test", args: []string{"jörg@example.test"}}, nil},
		{"LIST ", command{name: "LIST", rest: ""}, nil},
		{"", command{}, errEmptyCommand},
		{" STAT", command{}, errBadKeyword},
		{"ST4T", command{}, errBadKeyword},
		{"STAT\x00", command{}, errControlChar},
		{"RETR\t1", command{}, errControlChar},
		{"PASS a\rb", command{}, errControlChar},
		{"NOOP\x7f", command{}, errControlChar},
		{strings.Repeat("A", 17), command{}, errBadKeyword},
	} {
		got, err := parseCommand(tc.line)
		if err != tc.err {
			t.Errorf("parseCommand(%q) error %v, want %v", tc.line, err, tc.err)
			continue
		}
		if err == nil && (got.name != tc.want.name || got.rest != tc.want.rest || !reflect.DeepEqual(got.args, tc.want.args) && len(got.args)+len(tc.want.args) > 0) {
			t.Errorf("parseCommand(%q) = %+v, want %+v", tc.line, got, tc.want)
		}
	}
}

func TestParseDecimal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    uint64
		isOK bool
	}{
		{"1", 1, true}, {"007", 7, true}, {"0", 0, true},
		{"18446744073709551615", 1<<64 - 1, true},
		{"99999999999999999999999", 1<<64 - 1, true}, // saturates
		{"", 0, false}, {"-1", 0, false}, {"+1", 0, false}, {"1.0", 0, false},
		{"0x1", 0, false}, {" 1", 0, false}, {"1e3", 0, false}, {strings.Repeat("9", 65), 0, false},
	} {
		n, ok := parseDecimal(tc.in)
		if ok != tc.isOK || ok && n != tc.n {
			t.Errorf("parseDecimal(%q) = %d, %v; want %d, %v", tc.in, n, ok, tc.n, tc.isOK)
		}
	}
}

// TestStates: every command answers -ERR outside its state (RFC 1939 §3).
func TestStates(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.plain)
	for _, cmd := range []string{"STAT", "LIST", "LIST 1", "UIDL", "RETR 1", "TOP 1 1", "DELE 1", "RSET", "NOOP"} {
		c.cmd(cmd, "-ERR "+strings.Fields(cmd)[0]+" is only valid after login")
	}
	c.cmd("PASS "+testPassword, "-ERR send USER first")
	c.cmd("APOP alice 0123456789abcdef", "-ERR APOP is not supported")
	c.login(testUser, testPassword)
	for _, cmd := range []string{"USER bob", "PASS x", "AUTH PLAIN", "STLS"} {
		c.cmd(cmd, "-ERR "+strings.Fields(cmd)[0]+" is not valid after login")
	}
	c.cmd("CAPA", "+OK")
	if caps := strings.Join(c.multi(), "|"); strings.Contains(caps, "USER") || strings.Contains(caps, "STLS") || !strings.Contains(caps, "UIDL") {
		t.Errorf("CAPA in TRANSACTION state: %s", caps)
	}
	c.cmd("NOOP", "+OK")
	c.cmd("QUIT", "+OK")
	c.closed()
}

// TestTransaction walks every TRANSACTION command through a real socket.
func TestTransaction(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.plain)
	c.login(testUser, testPassword)
	sizes := make([]int, len(testMessages))
	total := 0
	for i, m := range testMessages {
		sizes[i] = len(m)
		total += len(m)
	}
	c.cmd("STAT", fmt.Sprintf("+OK 3 %d", total))
	c.cmd("LIST", "+OK 3 messages")
	if got, want := c.multi(), []string{fmt.Sprintf("1 %d", sizes[0]), fmt.Sprintf("2 %d", sizes[1]), fmt.Sprintf("3 %d", sizes[2])}; !reflect.DeepEqual(got, want) {
		t.Errorf("LIST = %q, want %q", got, want)
	}
	c.cmd("LIST 2", fmt.Sprintf("+OK 2 %d", sizes[1]))
	c.cmd("UIDL", "+OK")
	if got, want := c.multi(), []string{"1 1700000000.1", "2 1700000000.2", "3 1700000000.3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("UIDL = %q, want %q", got, want)
	}
	c.cmd("uidl 3", "+OK 3 1700000000.3")

	// RETR: dot-stuffed, CRLF everywhere, ".\r\n" at the end (RELIABILITY #28).
	c.cmd("RETR 1", fmt.Sprintf("+OK %d octets", sizes[0]))
	if got, want := c.multiRaw(), "Subject: one\r\n\r\nfirst body\r\n..leading dot\r\n..\r\n...two\r\n.\r\n"; got != want {
		t.Errorf("RETR 1 = %q, want %q", got, want)
	}
	c.cmd("RETR 3", "+OK")
	if got, want := c.multiRaw(), "Subject: bare\r\n\r\nlf only\r\n..dot\r\nno final newline\r\n.\r\n"; got != want {
		t.Errorf("RETR 3 (bare LF) = %q, want %q", got, want)
	}
	for _, tc := range []struct {
		cmd  string
		want []string
	}{
		{"TOP 2 0", []string{"Subject: two", "X-A: b", ""}},
		{"TOP 2 2", []string{"Subject: two", "X-A: b", "", "l1", "l2"}},
		{"TOP 2 99999999999999999999", []string{"Subject: two", "X-A: b", "", "l1", "l2", "l3"}},
		{"TOP 3 1", []string{"Subject: bare", "", "lf only"}},
	} {
		c.cmd(tc.cmd, "+OK")
		if got := c.multi(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s = %q, want %q", tc.cmd, got, tc.want)
		}
	}

	c.cmd("DELE 1", "+OK message 1 deleted")
	c.cmd("DELE 1", "-ERR message 1 already deleted")
	c.cmd("RETR 1", "-ERR message 1 already deleted")
	c.cmd("LIST 1", "-ERR message 1 already deleted")
	c.cmd("TOP 1 0", "-ERR message 1 already deleted")
	c.cmd("STAT", fmt.Sprintf("+OK 2 %d", sizes[1]+sizes[2]))
	c.cmd("LIST", "+OK 2 messages")
	if got := c.multi(); len(got) != 2 || !strings.HasPrefix(got[0], "2 ") {
		t.Errorf("LIST after DELE 1 = %q", got)
	}
	c.cmd("RSET", "+OK maildrop has 3 messages")
	c.cmd("RETR 1", "+OK")
	c.multi()
	c.cmd("DELE 2", "+OK")
	c.cmd("NOOP", "+OK")
	if ts.fake.count(testUser) != 3 {
		t.Fatal("DELE removed a message before QUIT")
	}
	c.cmd("QUIT", "+OK pop.test POP3 server signing off (2 messages left)")
	c.closed()
	if got := ts.fake.deleteCalls(); !reflect.DeepEqual(got, [][]uint32{{2}}) {
		t.Errorf("Delete calls = %v, want [[2]]", got)
	}
	if ts.fake.isLocked(testUser) {
		t.Error("maildrop still locked after QUIT")
	}
}

// TestBadArguments: malformed and out-of-range message numbers and
// arguments each get -ERR and the session goes on (RELIABILITY #28).
func TestBadArguments(t *testing.T) {
	ts := startServer(t, func(cfg *Config) { cfg.MaxErrors = 100 })
	c := dial(t, ts.plain)
	c.login(testUser, testPassword)
	for _, tc := range []struct{ cmd, want string }{
		{"RETR 0", "-ERR no such message"},
		{"RETR -1", "-ERR invalid message number"},
		{"RETR 4", "-ERR no such message"},
		{"RETR 99999999999", "-ERR no such message"},
		{"RETR 18446744073709551616", "-ERR no such message"},
		{"RETR x", "-ERR invalid message number"},
		{"RETR +1", "-ERR invalid message number"},
		{"RETR 1.0", "-ERR invalid message number"},
		{"RETR", "-ERR RETR needs an argument"},
		{"RETR 1 2", "-ERR too many arguments"},
		{"TOP 1 -1", "-ERR invalid line count"},
		{"TOP 1 x", "-ERR invalid line count"},
		{"TOP 1", "-ERR TOP needs an argument"},
		{"TOP 0 1", "-ERR no such message"},
		{"TOP 1 1 1", "-ERR too many arguments"},
		{"DELE 0", "-ERR no such message"},
		{"DELE", "-ERR DELE needs an argument"},
		{"LIST 0", "-ERR no such message"},
		{"LIST 1 2", "-ERR too many arguments"},
		{"UIDL 4", "-ERR no such message"},
		{"STAT 1", "-ERR too many arguments"},
		{"NOOP x", "-ERR too many arguments"},
		{"FOO", "-ERR unknown command"},
		{"RETR\t1", "-ERR control character"},
		{"RETR 1\x00", "-ERR control character"},
		{"", "-ERR empty command"},
		{"1 RETR", "-ERR invalid command keyword"},
		{"RETR " + strings.Repeat("1", 300), "-ERR command line too long"},
	} {
		c.cmd(tc.cmd, tc.want)
	}
	c.cmd("STAT", "+OK 3 ")
	c.cmd("QUIT", "+OK")
	if len(ts.fake.deleteCalls()) != 0 {
		t.Error("Delete called without DELE")
	}
}

// TestLineLimits: RFC 2449 §4 allows 255 octets with the CRLF; a 1 KB line
// gets -ERR and the session continues (RELIABILITY #28).
func TestLineLimits(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.plain)
	user := "USER " + strings.Repeat("u", 255-len("USER ")-2)
	c.cmd(user, "+OK") // exactly 255 octets
	c.cmd(user+"u", "-ERR command line too long")
	c.cmd("NOOP "+strings.Repeat("x", 1024), "-ERR command line too long")
	c.cmd(strings.Repeat("y", 100<<10), "-ERR command line too long") // beyond the read buffer
	c.write("USER " + testUser + "\nPASS " + testPassword + "\n")     // bare LF is tolerated
	c.expect("+OK")
	c.expect("+OK maildrop has 3 messages")
	// A line beyond maxDiscard is not POP3: the session ends. The server
	// may close before the client has written everything.
	go io.WriteString(c.conn, strings.Repeat("z", maxDiscard+maxSASLLine+1))
	if l, err := c.r.ReadString('\n'); err == nil && !strings.HasPrefix(l, "-ERR line far too long") {
		t.Fatalf("after a 1 MB line: %q", l)
	}
	c.closed()
}

// TestErrorLimit: after MaxErrors rejected commands the server says so and
// closes the connection (RELIABILITY #45).
func TestErrorLimit(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.plain)
	for range 19 {
		c.cmd("BOGUS", "-ERR unknown command")
	}
	c.cmd("RETR 1", "-ERR")
	c.expect("-ERR too many errors")
	c.closed()

	// A successful login starts the count again.
	c = dial(t, ts.plain)
	for range 10 {
		c.cmd("BOGUS", "-ERR")
	}
	c.login(testUser, testPassword)
	for range 19 {
		c.cmd("RETR 9", "-ERR")
	}
	c.cmd("NOOP", "+OK")
}

// TestPipelining: RFC 2449 PIPELINING; many commands in one write are
// answered in order.
func TestPipelining(t *testing.T) {
	ts := startServer(t, nil)
	c := dial(t, ts.plain)
	c.write("USER " + testUser + "\r\nPASS " + testPassword + "\r\nSTAT\r\nUIDL 1\r\nRETR 2\r\nDELE 3\r\nQUIT\r\n")
	c.expect("+OK send PASS")
	c.expect("+OK maildrop has 3")
	c.expect("+OK 3 ")
	c.expect("+OK 1 1700000000.1")
	c.expect("+OK")
	if got := c.multi(); len(got) != 6 {
		t.Errorf("RETR 2 = %q", got)
	}
	c.expect("+OK message 3 deleted")
	c.expect("+OK")
	c.closed()
	if got := ts.fake.deleteCalls(); !reflect.DeepEqual(got, [][]uint32{{3}}) {
		t.Errorf("Delete calls = %v", got)
	}
}
