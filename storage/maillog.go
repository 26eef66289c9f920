package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The mail log (SPEC L1) and SMTP transcripts (L2) are replicated like all
// state, so a failover keeps them: an admin proving where a message went
// must not find the record on a dead box.

// LogVerdict is what one filter stage decided about a message.
type LogVerdict struct {
	Stage    string  `json:"stage"`
	Action   string  `json:"action"`
	Score    float64 `json:"score,omitempty"`
	Reason   string  `json:"reason,omitempty"`
	Duration string  `json:"duration,omitempty"`
}

// LogRecord is one event in a message's life: received (one record per
// message, with its recipients), then per recipient delivered, deferred,
// bounced, expired, rejected ...
type LogRecord struct {
	Time      time.Time    `json:"time"`
	QueueID   string       `json:"queue_id"`
	Event     string       `json:"event"`
	Direction string       `json:"direction,omitempty"` // in, out, local
	ClientIP  string       `json:"client_ip,omitempty"`
	HELO      string       `json:"helo,omitempty"`
	Auth      string       `json:"auth,omitempty"` // authenticated account
	From      string       `json:"from"`
	Rcpts     []string     `json:"rcpts,omitempty"`
	Size      int64        `json:"size,omitempty"`
	MessageID string       `json:"message_id,omitempty"`
	Subject   string       `json:"subject,omitempty"`
	Verdicts  []LogVerdict `json:"verdicts,omitempty"`
	Action    string       `json:"action,omitempty"`
	Code      int          `json:"code,omitempty"`
	Detail    string       `json:"detail,omitempty"`
	Remote    string       `json:"remote,omitempty"` // remote MTA
	Attempt   int          `json:"attempt,omitempty"`
}

var (
	bktLog         = []byte("maillog")     // time(8) + seq(8) → LogRecord
	bktTranscripts = []byte("transcripts") // queue id + 0 + attempt(4) → text
)

type logAppendCmd struct {
	Records []LogRecord `json:"records"`
}

type logPruneCmd struct {
	Before int64 `json:"before"`
}

type transcriptCmd struct {
	QueueID string `json:"queue_id"`
	Attempt uint32 `json:"attempt"`
	Time    int64  `json:"time"`
	Text    string `json:"text"`
}

func (a applier) logAppend(c logAppendCmd) any {
	b := a.b(bktLog)
	for _, r := range c.Records {
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		k := binary.BigEndian.AppendUint64(nil, uint64(r.Time.UnixNano()))
		k = binary.BigEndian.AppendUint64(k, seq)
		if err := putJSON(b, k, r); err != nil {
			return err
		}
	}
	return nil
}

func (a applier) logPrune(c logPruneCmd) any {
	b := a.b(bktLog)
	end := binary.BigEndian.AppendUint64(nil, uint64(c.Before))
	var drop [][]byte
	cur := b.Cursor()
	for k, _ := cur.First(); k != nil && bytes.Compare(k[:8], end) < 0; k, _ = cur.Next() {
		drop = append(drop, append([]byte(nil), k...))
	}
	for _, k := range drop {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	// Transcripts older than the cut go too.
	t := a.b(bktTranscripts)
	drop = drop[:0]
	cur = t.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		if len(v) >= 8 && int64(binary.BigEndian.Uint64(v[:8])) < c.Before {
			drop = append(drop, append([]byte(nil), k...))
		}
	}
	for _, k := range drop {
		if err := t.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func transcriptKey(id string, attempt uint32) []byte {
	k := append([]byte(id), 0)
	return binary.BigEndian.AppendUint32(k, attempt)
}

func (a applier) saveTranscript(c transcriptCmd) any {
	v := binary.BigEndian.AppendUint64(nil, uint64(c.Time))
	return a.b(bktTranscripts).Put(transcriptKey(c.QueueID, c.Attempt), append(v, c.Text...))
}

// LogAppend commits mail log records.
func (s *Store) LogAppend(ctx context.Context, recs ...LogRecord) error {
	if len(recs) == 0 {
		return nil
	}
	_, err := s.apply(ctx, CmdLogAppend, logAppendCmd{Records: recs})
	return err
}

// LogPrune drops records (and transcripts) older than before (retention).
func (s *Store) LogPrune(ctx context.Context, before time.Time) error {
	_, err := s.apply(ctx, CmdLogPrune, logPruneCmd{Before: before.UnixNano()})
	return err
}

// SaveTranscript stores the transcript of one delivery attempt.
func (s *Store) SaveTranscript(ctx context.Context, queueID string, attempt int, when time.Time, text string) error {
	_, err := s.apply(ctx, CmdTranscript, transcriptCmd{QueueID: queueID, Attempt: uint32(attempt), Time: when.UnixNano(), Text: text})
	return err
}

// Transcripts returns every stored attempt transcript of a message, in
// attempt order.
func (s *Store) Transcripts(queueID string) ([]string, error) {
	var out []string
	err := s.fsm.view(func(tx *bolt.Tx) error {
		prefix := append([]byte(queueID), 0)
		cur := tx.Bucket(bktTranscripts).Cursor()
		for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
			if len(v) >= 8 {
				out = append(out, string(v[8:]))
			}
		}
		return nil
	})
	return out, err
}

// LogQuery selects mail log records; empty fields match everything.
type LogQuery struct {
	Since, Until time.Time
	QueueID      string
	From, To     string // substring of the envelope sender / of any recipient
	ClientIP     string // exact or prefix
	Subject      string // substring, case-insensitive
	Event        string // received, delivered, deferred, bounced, rejected, ...
	Limit        int    // default 1000
}

func (q LogQuery) match(r LogRecord) bool {
	has := func(s, sub string) bool { return strings.Contains(strings.ToLower(s), strings.ToLower(sub)) }
	if q.QueueID != "" && r.QueueID != q.QueueID {
		return false
	}
	if q.From != "" && !has(r.From, q.From) {
		return false
	}
	if q.To != "" {
		ok := false
		for _, t := range r.Rcpts {
			if has(t, q.To) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	if q.ClientIP != "" && !strings.HasPrefix(r.ClientIP, q.ClientIP) {
		return false
	}
	if q.Subject != "" && !has(r.Subject, q.Subject) {
		return false
	}
	if q.Event != "" && r.Event != q.Event {
		return false
	}
	return true
}

// LogSearch returns matching records, newest first.
func (s *Store) LogSearch(q LogQuery) ([]LogRecord, error) {
	if q.Limit <= 0 {
		q.Limit = 1000
	}
	var out []LogRecord
	err := s.fsm.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktLog)
		cur := b.Cursor()
		var k, v []byte
		if q.Until.IsZero() {
			k, v = cur.Last()
		} else {
			k, v = cur.Seek(binary.BigEndian.AppendUint64(nil, uint64(q.Until.UnixNano()+1)))
			if k == nil {
				k, v = cur.Last()
			} else {
				k, v = cur.Prev()
			}
		}
		for ; k != nil && len(out) < q.Limit; k, v = cur.Prev() {
			t := time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))
			if !q.Since.IsZero() && t.Before(q.Since) {
				break
			}
			var r LogRecord
			if err := jsonUnmarshal(v, &r); err != nil {
				continue
			}
			if q.match(r) {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

// LogWriter batches mail log records into few Raft commands, off the
// path that answers clients.
type LogWriter struct {
	store *Store
	log   *slog.Logger
	ch    chan LogRecord
	done  chan struct{}
	wg    sync.WaitGroup
}

// NewLogWriter starts a batching writer.
func NewLogWriter(s *Store, log *slog.Logger) *LogWriter {
	w := &LogWriter{store: s, log: log, ch: make(chan LogRecord, 8192), done: make(chan struct{})}
	w.wg.Add(1)
	go w.run()
	return w
}

// Log queues a record; it never blocks the caller for long.
func (w *LogWriter) Log(r LogRecord) {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	select {
	case w.ch <- r:
	case <-time.After(time.Second):
		w.log.Warn("mail log backlog full; record dropped", "queue_id", r.QueueID, "event", r.Event)
	}
}

func (w *LogWriter) run() {
	defer w.wg.Done()
	var batch []LogRecord
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := w.store.LogAppend(ctx, batch...); err != nil {
			w.log.Warn("write mail log", "records", len(batch), "err", err)
		}
		cancel()
		batch = batch[:0]
	}
	for {
		select {
		case r := <-w.ch:
			batch = append(batch, r)
			if len(batch) >= 500 {
				flush()
			}
		case <-tick.C:
			flush()
		case <-w.done:
			for {
				select {
				case r := <-w.ch:
					batch = append(batch, r)
				default:
					flush()
					return
				}
			}
		}
	}
}

// Close flushes what is queued.
func (w *LogWriter) Close() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	w.wg.Wait()
}
