package pop3d

import (
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"
)

// TestNoDeleteWithoutQuit: RELIABILITY #8. DELE 1 and DELE 2, then the
// session dies (client drop, idle timeout, server shutdown): both messages
// remain, the UIDLs stay the same on a new server (failover), and only a
// QUIT removes them.
func TestNoDeleteWithoutQuit(t *testing.T) {
	fake := newFake()
	useFake := func(cfg *Config) { cfg.Backend, cfg.IdleTimeout = fake, 300*time.Millisecond }
	ts := startServer(t, useFake)
	uidls := func(c *client) []string {
		c.cmd("UIDL", "+OK")
		return c.multi()
	}
	dieAfterDele := map[string]func(*client){
		"client drop":  func(c *client) { c.conn.Close() },
		"idle timeout": func(c *client) { c.expect("-ERR autologout"); c.closed() },
		"server close": func(c *client) { ts.srv.Close(); c.closed() },
	}
	var first []string
	for _, how := range []string{"client drop", "idle timeout", "server close"} {
		c := dial(t, ts.plain)
		c.login(testUser, testPassword)
		if first == nil {
			first = uidls(c)
		}
		c.cmd("DELE 1", "+OK")
		c.cmd("DELE 2", "+OK")
		dieAfterDele[how](c)
		waitUnlocked(t, fake, testUser)
		if n := fake.count(testUser); n != 3 || len(fake.deleteCalls()) != 0 {
			t.Fatalf("%s: %d messages left and Delete calls %v, want 3 and none", how, n, fake.deleteCalls())
		}
	}

	// Failover: a new server over the same store.
	ts = startServer(t, useFake)
	c := dial(t, ts.plain)
	c.login(testUser, testPassword)
	if got := uidls(c); !reflect.DeepEqual(got, first) {
		t.Fatalf("UIDL after failover %q, before %q", got, first)
	}
	c.cmd("DELE 1", "+OK")
	c.cmd("DELE 2", "+OK")
	c.cmd("QUIT", "+OK")
	c.closed()
	if n := fake.count(testUser); n != 1 {
		t.Fatalf("after QUIT %d messages left, want 1", n)
	}
	c = dial(t, ts.plain)
	c.login(testUser, testPassword)
	if got := uidls(c); !reflect.DeepEqual(got, []string{"1 " + first[2][2:]}) {
		t.Fatalf("UIDL of the survivor %q, want it unchanged from %q", got, first[2])
	}
}

func waitUnlocked(t *testing.T, f *fakeBackend, user string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); f.isLocked(user); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("maildrop of %s still locked", user)
		}
	}
}

// TestIdleTimeout: RFC 1939 §3 autologout, before and after login.
func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, func(cfg *Config) { cfg.IdleTimeout = 200 * time.Millisecond })
	c := dial(t, ts.plain)
	start := time.Now()
	c.expect("-ERR autologout")
	c.closed()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("idle session closed after %v", d)
	}
	// Activity keeps a session alive.
	c = dial(t, ts.plain)
	c.login(testUser, testPassword)
	for range 4 {
		time.Sleep(100 * time.Millisecond)
		c.cmd("NOOP", "+OK")
	}
}

// TestPanicRecovered: a panic ends one session, is counted, releases the
// maildrop and leaves the server serving (RELIABILITY #41).
func TestPanicRecovered(t *testing.T) {
	ts := startServer(t, nil)
	ts.panicsOK = true
	ts.fake.add(testUser, bodyPanic)
	c := dial(t, ts.plain)
	c.login(testUser, testPassword)
	c.cmd("DELE 1", "+OK")
	c.write("RETR 4\r\n")
	c.closed()
	if n := ts.srv.Panics(); n != 1 {
		t.Fatalf("Panics() = %d, want 1", n)
	}
	waitUnlocked(t, ts.fake, testUser)
	if ts.fake.count(testUser) != 4 {
		t.Fatal("a panicking session deleted mail")
	}
	c = dial(t, ts.plain)
	c.login(testUser, testPassword)
	c.cmd("STAT", "+OK 4 ")
}

// TestClose: Close ends sessions in every state promptly and leaves no
// goroutine behind (STYLE habit 6).
func TestClose(t *testing.T) {
	waitNoSessions(t) // earlier tests' servers are gone
	fake := newFake()
	srv := New(Config{Hostname: "pop.test", TLSConfig: testTLSConfig(t), AllowInsecureAuth: true, Backend: fake,
		AuthFailureDelay: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	var served sync.WaitGroup
	serve := func(implicitTLS bool) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served.Add(1)
		go func() {
			defer served.Done()
			var err error
			if implicitTLS {
				err = srv.ServeTLS(l)
			} else {
				err = srv.Serve(l)
			}
			if err != nil {
				t.Errorf("Serve after Close: %v", err)
			}
		}()
		return l.Addr().String()
	}
	plainAddr, tlsAddr := serve(false), serve(true)

	var clients []*client
	idle := dial(t, plainAddr)
	loggedIn := dial(t, plainAddr)
	loggedIn.login(testUser, testPassword)
	loggedIn.cmd("DELE 1", "+OK")
	midAuth := dial(t, plainAddr)
	midAuth.cmd("AUTH PLAIN", "+ ")
	midSTLS := dial(t, plainAddr)
	midSTLS.cmd("STLS", "+OK") // and no handshake
	delayed := dial(t, plainAddr)
	delayed.write("AUTH PLAIN " + plain("", testUser, "wrong") + "\r\n") // waits AuthFailureDelay
	overTLS := dialTLS(t, tlsAddr)
	overTLS.login("bob@example.test", "bobpw")
	clients = append(clients, idle, loggedIn, midAuth, midSTLS, delayed, overTLS)
	// A TCP connection that never starts the TLS handshake.
	half, err := net.Dial("tcp", tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	time.Sleep(50 * time.Millisecond) // let the delayed login reach its pause

	start := time.Now()
	srv.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Close took %v", d)
	}
	served.Wait()
	for _, c := range clients {
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, err := c.r.ReadString('\n'); err != nil {
				break // closed by the server (or, for TLS, a read error)
			}
		}
	}
	waitNoSessions(t)
	if fake.count(testUser) != 3 || fake.isLocked(testUser) || fake.isLocked("bob@example.test") {
		t.Error("Close deleted mail or kept a lock")
	}
	if srv.Panics() != 0 {
		t.Errorf("%d panics", srv.Panics())
	}
	// Serving after Close returns at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(l); err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	srv.Close() // twice is fine
}

func TestConfigErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := New(Config{Backend: newFake()}).ServeTLS(l); err == nil {
		t.Error("ServeTLS without a TLS config succeeded")
	}
	l, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := New(Config{}).Serve(l); err == nil {
		t.Error("Serve without a backend succeeded")
	}
}

// TestConcurrentSessions: many users at once, each with their own
// maildrop; run with -race.
func TestConcurrentSessions(t *testing.T) {
	ts := startServer(t, nil)
	const users = 20
	for i := range users {
		user := fmt.Sprintf("u%d@example.test", i)
		ts.fake.mu.Lock()
		ts.fake.users[user] = "pw"
		ts.fake.mu.Unlock()
		for j := range 5 {
			ts.fake.add(user, fmt.Sprintf("Subject: %d\r\n\r\n.body %d\r\n", j, i))
		}
	}
	var wg sync.WaitGroup
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("u%d@example.test", i)
			conn, err := net.Dial("tcp", ts.plain)
			if err != nil {
				t.Error(err)
				return
			}
			c := newClient(t, conn)
			if _, err := c.r.ReadString('\n'); err != nil {
				t.Error(err)
				return
			}
			fmt.Fprintf(c.conn, "USER %s\r\nPASS pw\r\nRETR 1\r\nRETR 5\r\nDELE %d\r\nQUIT\r\n", user, i%5+1)
			want := []string{"+OK send PASS\r\n", "+OK maildrop has 5 messages"}
			for _, w := range want {
				l, err := c.r.ReadString('\n')
				if err != nil || len(l) < len(w) || l[:len(w)] != w {
					t.Errorf("%s: got %q (%v), want %q", user, l, err, w)
					return
				}
			}
			for {
				if _, err := c.r.ReadString('\n'); err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for i := range users {
		if n := ts.fake.count(fmt.Sprintf("u%d@example.test", i)); n != 4 {
			t.Errorf("user %d has %d messages, want 4", i, n)
		}
	}
}
