package storage_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

func TestMailLogSearchAndRetention(t *testing.T) {
	s := storetest.New(t)
	base := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	recs := []storage.LogRecord{
		{Time: base, QueueID: "A", Event: "received", ClientIP: "192.0.2.7", From: "x@far.test", Rcpts: []string{"u@here.test"}, Subject: "Invoice 42"},
		{Time: base.Add(time.Second), QueueID: "A", Event: "delivered", From: "x@far.test", Rcpts: []string{"u@here.test"}},
		{Time: base.Add(time.Hour), QueueID: "B", Event: "received", ClientIP: "198.51.100.1", From: "y@far.test", Rcpts: []string{"v@here.test"}, Subject: "hello"},
		{Time: base.Add(2 * time.Hour), QueueID: "B", Event: "bounced", From: "y@far.test", Rcpts: []string{"v@here.test"}, Code: 550},
	}
	if err := s.LogAppend(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		q    storage.LogQuery
		want string
	}{
		{storage.LogQuery{}, "B/bounced B/received A/delivered A/received"},
		{storage.LogQuery{QueueID: "A"}, "A/delivered A/received"},
		{storage.LogQuery{Subject: "invoice"}, "A/received"},
		{storage.LogQuery{ClientIP: "198.51."}, "B/received"},
		{storage.LogQuery{To: "v@"}, "B/bounced B/received"},
		{storage.LogQuery{Event: "bounced"}, "B/bounced"},
		{storage.LogQuery{Since: base.Add(30 * time.Minute), Until: base.Add(90 * time.Minute)}, "B/received"},
		{storage.LogQuery{Limit: 1}, "B/bounced"},
	}
	for _, c := range cases {
		got, err := s.LogSearch(c.q)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range got {
			ids = append(ids, r.QueueID+"/"+r.Event)
		}
		if strings.Join(ids, " ") != c.want {
			t.Errorf("search %+v = %v, want %s", c.q, ids, c.want)
		}
	}
	if err := s.SaveTranscript(ctx, "A", 1, base, "S: 220 hi\r\nC: EHLO x\r\n"); err != nil {
		t.Fatal(err)
	}
	if tr, _ := s.Transcripts("A"); len(tr) != 1 || !strings.Contains(tr[0], "EHLO") {
		t.Fatalf("transcripts %q", tr)
	}
	if err := s.LogPrune(ctx, base.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.LogSearch(storage.LogQuery{}); len(got) != 2 {
		t.Fatalf("after prune %d records", len(got))
	}
	if tr, _ := s.Transcripts("A"); len(tr) != 0 {
		t.Fatal("old transcript kept")
	}
	// The batching writer lands records.
	w := storage.NewLogWriter(s, slog.New(slog.DiscardHandler))
	w.Log(storage.LogRecord{QueueID: "C", Event: "received"})
	w.Close()
	if got, _ := s.LogSearch(storage.LogQuery{QueueID: "C"}); len(got) != 1 {
		t.Fatal("writer lost a record")
	}
}
