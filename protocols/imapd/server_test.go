package imapd

import (
	"crypto/tls"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/tandemmail/tandem/storage/storetest"
)

// serverGoroutines counts goroutines running server code.
func serverGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, fn := range []string{"imapserver.(*Conn).serve", "imapserver.(*Server).Serve", "imapd.(*registry).watchLoop",
			"imapd.(*mailboxView).idle", "imapserver.(*Conn).handleIdle"} {
			if strings.Contains(g, fn) {
				n++
				found = append(found, g)
				break
			}
		}
	}
	return n, strings.Join(found, "\n\n")
}

// TestCloseNoLeaks: Close ends every connection, whatever it is doing
// (idling, mid-literal, not logged in, TLS handshake done), Serve
// returns, and no server goroutine is left (STYLE habit 6).
func TestCloseNoLeaks(t *testing.T) {
	st := storetest.New(t)
	storetest.AddAccount(t, st, testUser, testPass)
	srv := New(Config{Store: st, TLSConfig: selfSigned(t), AllowInsecureAuth: true})
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	lt, _ := net.Listen("tcp", "127.0.0.1:0")
	served := make(chan error, 2)
	go func() { served <- srv.Serve(l) }()
	go func() { served <- srv.ServeTLS(lt) }()

	dial := func() *imapclient.Client {
		c, err := imapclient.DialInsecure(l.Addr().String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	idler := dial()
	if err := idler.Login(testUser, testPass).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := idler.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := idler.Idle(); err != nil {
		t.Fatal(err)
	}
	selected := dial()
	selected.Login(testUser, testPass).Wait()
	selected.Select("Sent", nil).Wait()
	dial() // greeted, never logs in
	tc, err := imapclient.DialTLS(lt.Addr().String(), &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.Login(testUser, testPass).Wait()
	// Mid-APPEND: the literal was announced and accepted, data never comes.
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write([]byte("a LOGIN " + testUser + " " + testPass + "\r\nb APPEND INBOX {1000}\r\nSubject: partial"))
	time.Sleep(200 * time.Millisecond)
	if n, _ := serverGoroutines(); n < 5 {
		t.Fatalf("only %d server goroutines before Close", n)
	}

	done := make(chan error, 1)
	go func() { done <- srv.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		_, stacks := serverGoroutines()
		t.Fatalf("Close hangs:\n%s", stacks)
	}
	for i := 0; i < 2; i++ {
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, stacks := serverGoroutines()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d server goroutines after Close:\n%s", n, stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if srv.Panics() != 0 {
		t.Errorf("%d panics", srv.Panics())
	}
	// Serving after Close is refused quietly.
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l2.Close()
	if err := srv.Serve(l2); err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	select {
	case <-idler.Closed():
	case <-time.After(5 * time.Second):
		t.Error("client connection still open after Close")
	}
}
