package imapd

import (
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func TestLoginAndSelect(t *testing.T) {
	e := newEnv(t)
	e.deliver("From: x@example.org\r\nSubject: hello\r\n\r\nbody\r\n")
	c := e.client()
	data, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if data.NumMessages != 1 || data.UIDNext != 2 || data.UIDValidity == 0 {
		t.Fatalf("select: %+v", data)
	}
	start := time.Now()
	if _, err := c.Select("inbox", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("reselect %v", time.Since(start))
}
