package imapd

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

func clientTLS() *imapclient.Options {
	return &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}} // self-signed test cert
}

// TestTLS: no password before TLS on 143; STARTTLS and implicit TLS
// (993) both allow LOGIN and AUTHENTICATE PLAIN.
func TestTLS(t *testing.T) {
	e := newEnv(t, envOptions{secure: true})

	plain, err := imapclient.DialInsecure(e.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	caps, err := plain.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !caps.Has(imap.CapStartTLS) || !caps.Has(imap.CapLoginDisabled) || caps.Has("AUTH=PLAIN") {
		t.Errorf("plaintext capabilities: %v", caps)
	}
	if err := plain.Login(testUser, testPass).Wait(); codeOf(err) != imap.ResponseCodePrivacyRequired {
		t.Errorf("plaintext LOGIN: %v", err)
	}
	if err := plain.Authenticate(sasl.NewPlainClient("", testUser, testPass)); err == nil {
		t.Error("plaintext AUTHENTICATE succeeded")
	}

	st, err := imapclient.DialStartTLS(e.addr, clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Login(testUser, testPass).Wait(); err != nil {
		t.Fatalf("LOGIN after STARTTLS: %v", err)
	}
	if _, err := st.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	it, err := imapclient.DialTLS(e.tlsAddr, clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	caps, err = it.Capability().Wait()
	if err != nil || caps.Has(imap.CapStartTLS) || !caps.Has("AUTH=PLAIN") {
		t.Errorf("implicit TLS capabilities: %v %v", caps, err)
	}
	if err := it.Authenticate(sasl.NewPlainClient("", testUser, "wrong")); codeOf(err) != imap.ResponseCodeAuthenticationFailed {
		t.Errorf("AUTHENTICATE PLAIN wrong password: %v", err)
	}
	if err := it.Authenticate(sasl.NewPlainClient("", testUser, testPass)); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN: %v", err)
	}
	if _, err := it.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestStartTLSInjection: commands pipelined after STARTTLS in the same
// packet are never executed in plaintext (CVE-2021-33515 class,
// RELIABILITY #16): the buffered bytes break the handshake.
func TestStartTLSInjection(t *testing.T) {
	e := newEnv(t, envOptions{secure: true})
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4096)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("a STARTTLS\r\nb LOGIN " + testUser + " " + testPass + "\r\n")); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "a OK") {
		t.Fatalf("STARTTLS: %q %v", buf[:n], err)
	}
	if strings.Contains(string(buf[:n]), "b ") {
		t.Fatalf("injected command answered: %q", buf[:n])
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err == nil {
		// If the handshake survived, the injected LOGIN must not have run.
		tc.Write([]byte("x CAPABILITY\r\n"))
		n, _ := tc.Read(buf)
		if strings.Contains(string(buf[:n]), "b OK") {
			t.Fatalf("injected LOGIN executed: %q", buf[:n])
		}
	}
	// The server keeps serving.
	ok, err := imapclient.DialStartTLS(e.addr, clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()
	if err := ok.Login(testUser, testPass).Wait(); err != nil {
		t.Fatal(err)
	}
}
