package filter

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

type logSlice struct {
	mu   sync.Mutex
	recs []storage.LogRecord
}

func (l *logSlice) Log(r storage.LogRecord) {
	l.mu.Lock()
	l.recs = append(l.recs, r)
	l.mu.Unlock()
}

func TestMailLogRecords(t *testing.T) {
	s := storetest.New(t)
	storetest.AddAccount(t, s, "u@example.test", "pw")
	ml := &logSlice{}
	p := New(Config{Store: s, MailLog: ml})
	ctx := context.Background()
	tx, err := p.Begin(ctx, &Envelope{ID: "Q1", ClientIP: net.ParseIP("192.0.2.9"), HELO: "client.example", From: "x@far.example"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.AddRcpt(ctx, "nobody@example.test"); err == nil {
		t.Fatal("unknown recipient accepted")
	}
	if err := tx.AddRcpt(ctx, "u@example.test"); err != nil {
		t.Fatal(err)
	}
	msg := "Subject: =?UTF-8?B?5pyI5aCx?= report\r\nMessage-ID: <m1@far.example>\r\n\r\nbody\r\n"
	if err := tx.Body(ctx, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	var events []string
	for _, r := range ml.recs {
		events = append(events, r.Event)
	}
	if strings.Join(events, ",") != "rejected,received,delivered" {
		t.Fatalf("events %v", events)
	}
	rej, rec := ml.recs[0], ml.recs[1]
	if rej.Code != 550 || rej.Rcpts[0] != "nobody@example.test" || rej.ClientIP != "192.0.2.9" {
		t.Errorf("reject record %+v", rej)
	}
	if rec.Subject != "月報 report" || rec.MessageID != "m1@far.example" || rec.HELO != "client.example" || rec.Size == 0 {
		t.Errorf("received record %+v", rec)
	}
}
