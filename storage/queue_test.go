package storage_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

func TestQueueLifecycle(t *testing.T) {
	s := storetest.New(t)
	b, err := s.PutBlob(strings.NewReader("Subject: out\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	now := time.Now()
	e := storage.QueueEntry{ID: "Q1", From: "a@here.test", Created: now,
		Rcpts: []storage.QueueRcpt{{Addr: "x@far.test"}, {Addr: "y@far.test"}, {Addr: "z@far.test"}}}
	if err := s.Enqueue(ctx, b, e); err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(ctx, b, e); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("duplicate id: %v", err)
	}
	due, _ := s.QueueDue(now.Add(time.Second), 10)
	if len(due) != 1 || due[0].Blob != b.SHA || len(due[0].Pending()) != 3 {
		t.Fatalf("due %+v", due)
	}
	// x delivered, y deferred, z failed: only y stays pending.
	next := now.Add(time.Minute)
	err = s.QueueAttempt(ctx, "Q1", []storage.RcptResult{
		{Addr: "x@far.test", Status: storage.RcptDelivered, Code: 250},
		{Addr: "y@far.test", Status: storage.RcptPending, Code: 451, Error: "try later"},
		{Addr: "z@far.test", Status: storage.RcptFailed, Code: 550, Error: "no such user"},
	}, next, false, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if due, _ := s.QueueDue(now.Add(time.Second), 10); len(due) != 0 {
		t.Fatalf("rescheduled entry still due: %+v", due)
	}
	got, _ := s.QueueEntry("Q1")
	if p := got.Pending(); len(p) != 1 || p[0] != "y@far.test" || got.Rcpts[0].Attempts != 1 || got.Rcpts[2].LastCode != 550 {
		t.Fatalf("entry %+v", got)
	}
	// A delivered recipient is never changed again (no re-send).
	s.QueueAttempt(ctx, "Q1", []storage.RcptResult{{Addr: "x@far.test", Status: storage.RcptFailed}}, next, false, nil, false)
	got, _ = s.QueueEntry("Q1")
	if got.Rcpts[0].Status != storage.RcptDelivered {
		t.Fatal("final status changed")
	}
	// Final attempt with a DSN queued atomically and the entry removed.
	dsnBlob, _ := s.PutBlob(strings.NewReader("Subject: Undelivered Mail\r\n\r\nreport\r\n"))
	defer dsnBlob.Release()
	dsn := &storage.QueueEntry{ID: "Q1-dsn", Blob: dsnBlob.SHA, Size: dsnBlob.Size, DSN: true, Created: now, NextAttempt: now,
		Rcpts: []storage.QueueRcpt{{Addr: "a@here.test", Status: storage.RcptPending}}}
	if err := s.QueueAttempt(ctx, "Q1", []storage.RcptResult{{Addr: "y@far.test", Status: storage.RcptFailed, Code: 550}}, next, false, dsn, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.QueueEntry("Q1"); !errors.Is(err, storage.ErrNoMessage) {
		t.Fatalf("entry not removed: %v", err)
	}
	q, _ := s.Queue()
	if len(q) != 1 || q[0].ID != "Q1-dsn" || !q[0].DSN {
		t.Fatalf("queue %+v", q)
	}
	if err := s.QueueDelete(ctx, "Q1-dsn"); err != nil {
		t.Fatal(err)
	}
	if !s.QueueNextDue().IsZero() {
		t.Fatal("queue not empty")
	}
}

// A recipient's gateway route (SPEC M9) survives the Raft round trip and
// an attempt; a record written before the field existed reads as "no
// route".
func TestQueueRelayRoute(t *testing.T) {
	s := storetest.New(t)
	b, err := s.PutBlob(strings.NewReader("Subject: gw\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	e := storage.QueueEntry{ID: "QR", From: "a@far.test",
		Rcpts: []storage.QueueRcpt{{Addr: "x@gw.test", Relay: []string{"b1:25", "b2:25"}}, {Addr: "y@far.test"}}}
	if err := s.Enqueue(ctx, b, e); err != nil {
		t.Fatal(err)
	}
	if err := s.QueueAttempt(ctx, "QR", []storage.RcptResult{{Addr: "x@gw.test", Status: storage.RcptPending, Code: 451}},
		time.Now().Add(time.Minute), false, nil, false); err != nil {
		t.Fatal(err)
	}
	got, err := s.QueueEntry("QR")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Rcpts[0].Relay, ",") != "b1:25,b2:25" || got.Rcpts[0].Attempts != 1 || got.Rcpts[1].Relay != nil {
		t.Fatalf("rcpts %+v", got.Rcpts)
	}
	var old storage.QueueRcpt
	if err := json.Unmarshal([]byte(`{"addr":"z@far.test","status":"pending","attempts":2}`), &old); err != nil || old.Relay != nil {
		t.Fatalf("old record: %+v %v", old, err)
	}
	if raw, _ := json.Marshal(storage.QueueRcpt{Addr: "z@far.test"}); strings.Contains(string(raw), "relay") {
		t.Fatalf("an unrouted recipient writes a relay field: %s", raw)
	}
}
