package outbound

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tandemmail/tandem/storage"
)

// ErrBusy: the entry is being delivered right now; try again in a moment.
var ErrBusy = errors.New("the message is being delivered right now; try again in a moment")

// Bounce fails every pending recipient of a queued message now (the admin
// "bounce" action): one RFC 3464 DSN to the sender lists them, in the
// same Raft command that records the failure, and none is sent for the
// null sender or for a DSN (no bounce loops, RFC 5321 §4.5.5). The entry
// then leaves the queue.
func (e *Engine) Bounce(ctx context.Context, id, reason string) error {
	e.mu.Lock()
	if e.inflight[id] {
		e.mu.Unlock()
		// A delivery running now may end in "delivered"; failing the
		// recipients under it would report a message that arrived.
		return fmt.Errorf("bounce %s: %w", id, ErrBusy)
	}
	// Keep the scheduler off the entry while the bounce is recorded.
	e.inflight[id] = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.inflight, id)
		e.mu.Unlock()
	}()
	qe, err := e.cfg.Store.QueueEntry(id)
	if err != nil {
		return fmt.Errorf("bounce %s: %w", id, err)
	}
	pending := qe.Pending()
	if len(pending) == 0 {
		return fmt.Errorf("bounce %s: no recipient is pending", id)
	}
	reason = strings.TrimSpace(oneLine(reason))
	if reason == "" {
		reason = "returned by the administrator"
	}
	n := 0
	for _, r := range qe.Rcpts {
		if r.Status == storage.RcptPending {
			n = max(n, r.Attempts)
		}
	}
	outcomes := map[string]rcptOutcome{}
	for _, a := range pending {
		// RFC 3463 §3.2 X.0.0: other undefined status; the reason says why.
		outcomes[a] = rcptOutcome{Addr: a, Status: storage.RcptFailed, Code: 550, Enh: [3]int{5, 0, 0}, Text: reason}
	}
	if err := e.record(ctx, qe, outcomes, n+1); err != nil {
		return fmt.Errorf("bounce %s: %w", id, err)
	}
	e.log.Info("outbound: bounced by the administrator", "queue_id", id, "rcpts", len(pending), "reason", reason)
	return nil
}
