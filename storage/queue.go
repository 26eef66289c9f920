package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The outbound queue is replicated state like everything else (SPEC M4):
// an entry is committed through Raft, with its blob on a quorum, before
// the submitting client hears "250". Each recipient has its own status, so
// one failing recipient never causes a re-send to the others.

// Recipient states in a queue entry.
const (
	RcptPending   = "pending"   // not tried yet or deferred: will be tried at NextAttempt
	RcptDelivered = "delivered" // accepted by the remote (or local) server
	RcptFailed    = "failed"    // permanent failure or expired: reported in a DSN
)

// QueueRcpt is one recipient of a queued message.
type QueueRcpt struct {
	Addr        string    `json:"addr"`
	Status      string    `json:"status"`
	Attempts    int       `json:"attempts"`
	LastCode    int       `json:"last_code,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	LastAttempt time.Time `json:"last_attempt,omitempty"`
	DoneAt      time.Time `json:"done_at,omitempty"`
	// Relay, when set, routes this recipient to these backend hosts
	// ("host:port", tried in order) instead of its domain's MX: the mail
	// gateway mode (SPEC M9). Absent in records written before it existed.
	Relay []string `json:"relay,omitempty"`
}

// QueueEntry is one queued message.
type QueueEntry struct {
	ID          string      `json:"id"` // the message's queue ID, used in every log line about it
	Blob        string      `json:"blob"`
	Size        int64       `json:"size"`
	From        string      `json:"from"` // envelope sender; "" is the null sender (DSNs)
	Rcpts       []QueueRcpt `json:"rcpts"`
	Created     time.Time   `json:"created"`
	NextAttempt time.Time   `json:"next_attempt"`
	Expires     time.Time   `json:"expires"`
	DelayWarned bool        `json:"delay_warned,omitempty"`
	// DSN marks a delivery status notification we generated: it never
	// causes another DSN (no bounce loops, RFC 3464 §2 / RFC 5321 §6.1).
	DSN           bool   `json:"dsn,omitempty"`
	SMTPUTF8      bool   `json:"smtputf8,omitempty"`
	Body8BIT      bool   `json:"body_8bit,omitempty"`
	AuthAccountID uint64 `json:"auth_account_id,omitempty"`
	ClientIP      string `json:"client_ip,omitempty"`
	HELO          string `json:"helo,omitempty"`
}

// Pending lists the recipients still to be delivered.
func (e QueueEntry) Pending() []string {
	var out []string
	for _, r := range e.Rcpts {
		if r.Status == RcptPending {
			out = append(out, r.Addr)
		}
	}
	return out
}

// Done reports whether no recipient is pending.
func (e QueueEntry) Done() bool { return len(e.Pending()) == 0 }

var (
	bktQueue    = []byte("queue")     // id → QueueEntry
	bktQueueDue = []byte("queue_due") // next attempt (unix ns, 8) + id → nil
)

type enqueueCmd struct {
	Entry QueueEntry `json:"entry"`
}

// RcptResult is the outcome of one delivery attempt for one recipient.
type RcptResult struct {
	Addr   string `json:"addr"`
	Status string `json:"status"` // RcptDelivered, RcptFailed, or RcptPending (deferred)
	Code   int    `json:"code,omitempty"`
	Error  string `json:"error,omitempty"`
}

type queueAttemptCmd struct {
	ID          string       `json:"id"`
	Results     []RcptResult `json:"results"`
	Now         int64        `json:"now"`
	NextAttempt int64        `json:"next_attempt"` // when pending recipients are tried again
	DelayWarned bool         `json:"delay_warned,omitempty"`
	// DSN, if set, is queued in the same command, so a crash can never
	// send a bounce twice or lose it (RELIABILITY #6).
	DSN *QueueEntry `json:"dsn,omitempty"`
	// Remove drops the entry (all recipients final and reported).
	Remove bool `json:"remove,omitempty"`
}

type queueDeleteCmd struct {
	ID string `json:"id"`
}

type queueRescheduleCmd struct {
	ID   string `json:"id"`
	Next int64  `json:"next"`
}

func dueKey(next time.Time, id string) []byte {
	k := binary.BigEndian.AppendUint64(nil, uint64(next.UnixNano()))
	return append(k, id...)
}

func (a applier) getQueue(id string) (QueueEntry, bool, error) {
	var e QueueEntry
	ok, err := getJSON(a.b(bktQueue), []byte(id), &e)
	return e, ok, err
}

func (a applier) putQueue(old *QueueEntry, e QueueEntry) error {
	if old != nil {
		if err := a.b(bktQueueDue).Delete(dueKey(old.NextAttempt, old.ID)); err != nil {
			return err
		}
	}
	if !e.Done() {
		if err := a.b(bktQueueDue).Put(dueKey(e.NextAttempt, e.ID), nil); err != nil {
			return err
		}
	}
	return putJSON(a.b(bktQueue), []byte(e.ID), e)
}

func (a applier) enqueue(c enqueueCmd) any {
	e := c.Entry
	if e.ID == "" || !ValidSHA(e.Blob) || len(e.Rcpts) == 0 {
		return fmt.Errorf("enqueue: incomplete entry")
	}
	if a.b(bktQueue).Get([]byte(e.ID)) != nil {
		return fmt.Errorf("queue entry %s: %w", e.ID, ErrExists)
	}
	if err := a.blobRef(e.Blob, 1); err != nil {
		return err
	}
	return a.putQueue(nil, e)
}

func (a applier) queueAttempt(c queueAttemptCmd) any {
	e, ok, err := a.getQueue(c.ID)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("queue entry %s: %w", c.ID, ErrNoMessage)
	}
	if c.DSN != nil && a.b(bktQueue).Get([]byte(c.DSN.ID)) != nil {
		return fmt.Errorf("queue entry %s: %w", c.DSN.ID, ErrExists)
	}
	old := e
	now := time.Unix(0, c.Now)
	e.Rcpts = append([]QueueRcpt(nil), e.Rcpts...)
	for _, res := range c.Results {
		for i := range e.Rcpts {
			r := &e.Rcpts[i]
			if r.Addr != res.Addr || r.Status != RcptPending {
				continue // a final status never changes: no re-send
			}
			r.Attempts++
			r.LastAttempt = now
			r.LastCode, r.LastError = res.Code, res.Error
			if res.Status == RcptDelivered || res.Status == RcptFailed {
				r.Status = res.Status
				r.DoneAt = now
			}
		}
	}
	e.NextAttempt = time.Unix(0, c.NextAttempt)
	if c.DelayWarned {
		e.DelayWarned = true
	}
	if c.DSN != nil {
		if v := a.enqueue(enqueueCmd{Entry: *c.DSN}); v != nil {
			if err, ok := v.(error); ok {
				return err
			}
		}
	}
	if c.Remove && e.Done() {
		if err := a.b(bktQueueDue).Delete(dueKey(old.NextAttempt, old.ID)); err != nil {
			return err
		}
		if err := a.b(bktQueue).Delete([]byte(e.ID)); err != nil {
			return err
		}
		return a.blobUnref(e.Blob)
	}
	return a.putQueue(&old, e)
}

func (a applier) queueDelete(c queueDeleteCmd) any {
	e, ok, err := a.getQueue(c.ID)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("queue entry %s: %w", c.ID, ErrNoMessage)
	}
	if err := a.b(bktQueueDue).Delete(dueKey(e.NextAttempt, e.ID)); err != nil {
		return err
	}
	if err := a.b(bktQueue).Delete([]byte(c.ID)); err != nil {
		return err
	}
	return a.blobUnref(e.Blob)
}

func (a applier) queueReschedule(c queueRescheduleCmd) any {
	e, ok, err := a.getQueue(c.ID)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("queue entry %s: %w", c.ID, ErrNoMessage)
	}
	old := e
	e.NextAttempt = time.Unix(0, c.Next)
	return a.putQueue(&old, e)
}

// Enqueue commits a new queue entry for a stored blob (replicated first).
func (s *Store) Enqueue(ctx context.Context, b *Blob, e QueueEntry) error {
	if err := s.replicate(ctx, b); err != nil {
		return err
	}
	e.Blob, e.Size = b.SHA, b.Size
	if e.Created.IsZero() {
		e.Created = s.now()
	}
	if e.NextAttempt.IsZero() {
		e.NextAttempt = e.Created
	}
	for i := range e.Rcpts {
		if e.Rcpts[i].Status == "" {
			e.Rcpts[i].Status = RcptPending
		}
	}
	_, err := s.apply(ctx, CmdEnqueue, enqueueCmd{Entry: e})
	return err
}

// QueueAttempt records the outcome of a delivery attempt. dsn, if not nil,
// is enqueued in the same command (its blob must be stored and replicated:
// call ReplicateBlob first). remove drops the entry once every recipient is
// final.
func (s *Store) QueueAttempt(ctx context.Context, id string, results []RcptResult, next time.Time, delayWarned bool, dsn *QueueEntry, remove bool) error {
	_, err := s.apply(ctx, CmdQueueAttempt, queueAttemptCmd{ID: id, Results: results, Now: s.nowNanos(),
		NextAttempt: next.UnixNano(), DelayWarned: delayWarned, DSN: dsn, Remove: remove})
	return err
}

// ReplicateBlob makes a stored blob durable on a quorum (for blobs that are
// referenced by a command built by hand, like a DSN in QueueAttempt).
func (s *Store) ReplicateBlob(ctx context.Context, b *Blob) error { return s.replicate(ctx, b) }

// QueueDelete drops an entry without a DSN (admin action).
func (s *Store) QueueDelete(ctx context.Context, id string) error {
	_, err := s.apply(ctx, CmdQueueDelete, queueDeleteCmd{ID: id})
	return err
}

// QueueReschedule sets when an entry is tried next (admin "retry now").
func (s *Store) QueueReschedule(ctx context.Context, id string, next time.Time) error {
	_, err := s.apply(ctx, CmdQueueReschedule, queueRescheduleCmd{ID: id, Next: next.UnixNano()})
	return err
}

// QueueEntry returns one entry.
func (s *Store) QueueEntry(id string) (QueueEntry, error) {
	var e QueueEntry
	err := s.fsm.view(func(tx *bolt.Tx) error {
		var ok bool
		var err error
		e, ok, err = applier{tx: tx}.getQueue(id)
		if err == nil && !ok {
			err = fmt.Errorf("queue entry %s: %w", id, ErrNoMessage)
		}
		return err
	})
	return e, err
}

// QueueDue lists up to limit entries whose next attempt is at or before now,
// earliest first.
func (s *Store) QueueDue(now time.Time, limit int) ([]QueueEntry, error) {
	var out []QueueEntry
	err := s.fsm.view(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bktQueueDue).Cursor()
		end := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
		for k, _ := cur.First(); k != nil && bytes.Compare(k[:8], end) <= 0 && len(out) < limit; k, _ = cur.Next() {
			e, ok, err := applier{tx: tx}.getQueue(string(k[8:]))
			if err != nil {
				return err
			}
			if ok {
				out = append(out, e)
			}
		}
		return nil
	})
	return out, err
}

// QueueNextDue is the earliest next attempt in the queue (zero if empty).
func (s *Store) QueueNextDue() time.Time {
	var t time.Time
	s.fsm.view(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bktQueueDue).Cursor().First()
		if len(k) >= 8 {
			t = time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))
		}
		return nil
	})
	return t
}

// Queue lists every entry, oldest first.
func (s *Store) Queue() ([]QueueEntry, error) {
	var out []QueueEntry
	err := s.fsm.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bktQueue).ForEach(func(k, v []byte) error {
			var e QueueEntry
			if _, err := getJSON(tx.Bucket(bktQueue), k, &e); err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, err
}
