package outbound

import (
	"context"
	"errors"
	"fmt"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/storage"
)

var _ filter.Outbound = (*Engine)(nil)

// Enqueue queues a stored message for remote recipients (filter.Outbound).
// It returns nil only when the entry is committed through Raft with its
// blob on a quorum; then the scheduler is woken.
func (e *Engine) Enqueue(ctx context.Context, env *filter.Envelope, rcpts []string, blob *storage.Blob) error {
	return e.enqueue(ctx, env, rcpts, nil, blob)
}

// EnqueueRelay queues a message for recipients of gateway domains (SPEC
// M9): relay maps each recipient to its backend hosts ("host:port", tried
// in order), which are used instead of an MX lookup. Recipients missing
// from relay are routed like any remote recipient.
func (e *Engine) EnqueueRelay(ctx context.Context, env *filter.Envelope, rcpts []string, relay map[string][]string, blob *storage.Blob) error {
	for r, hosts := range relay {
		if err := ValidBackends(hosts); err != nil {
			return fmt.Errorf("enqueue %s: relay for %s: %w", env.ID, r, err)
		}
	}
	return e.enqueue(ctx, env, rcpts, relay, blob)
}

func (e *Engine) enqueue(ctx context.Context, env *filter.Envelope, rcpts []string, relay map[string][]string, blob *storage.Blob) error {
	if env == nil || blob == nil || len(rcpts) == 0 {
		return errors.New("enqueue: envelope, blob and recipients are required")
	}
	now := e.cfg.Now()
	qe := storage.QueueEntry{
		ID: env.ID, From: env.From, Created: now, NextAttempt: now, Expires: now.Add(e.cfg.Expiry),
		SMTPUTF8: env.SMTPUTF8, Body8BIT: env.Body8BIT, AuthAccountID: env.AuthAccountID, HELO: env.HELO,
	}
	if env.ClientIP != nil {
		qe.ClientIP = env.ClientIP.String()
	}
	seen := map[string]bool{}
	for _, r := range rcpts {
		if !seen[r] {
			seen[r] = true
			qe.Rcpts = append(qe.Rcpts, storage.QueueRcpt{Addr: r, Status: storage.RcptPending, Relay: relay[r]})
		}
	}
	if err := e.cfg.Store.Enqueue(ctx, blob, qe); err != nil {
		return fmt.Errorf("enqueue %s: %w", env.ID, err)
	}
	e.log.Info("outbound: queued", "queue_id", env.ID, "from", env.From, "rcpts", len(qe.Rcpts), "size", blob.Size)
	e.Wake()
	return nil
}
