package outbound

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/tandemmail/tandem/storage"
)

// attempt makes one delivery attempt for every pending recipient of an
// entry — local ones through Store.Deliver, remote ones one connection per
// destination — and records the outcome with QueueAttempt. connDone is
// called once no more connections are needed. If ctx ends first nothing is
// recorded: the entry is tried again (at-least-once).
func (e *Engine) attempt(ctx context.Context, qe storage.QueueEntry, connDone func()) {
	pending := qe.Pending()
	if len(pending) == 0 {
		return
	}
	n := 0
	for _, r := range qe.Rcpts {
		if r.Status == storage.RcptPending {
			n = max(n, r.Attempts)
		}
	}
	attemptNo := n + 1
	log := e.log.With("queue_id", qe.ID, "attempt", attemptNo)
	outcomes := map[string]rcptOutcome{}
	var localIDs []uint64
	var local []string
	dests := map[string]*destination{}
	var order []string
	relays := relayRoutes(qe)
	for _, addr := range pending {
		_, dom, ok := splitAddr(addr)
		if !ok || strings.ContainsAny(addr, "\r\n\x00<>") {
			outcomes[addr] = fromFailure(addr, permFailure(553, [3]int{5, 1, 3}, "bad recipient address"), "")
			continue
		}
		if relay := relays[addr]; len(relay) > 0 {
			// A gateway domain (SPEC M9): hosted here for MX purposes,
			// but its mailboxes live on the backends.
			d := relayDestination(strings.ToLower(dom), relay)
			if dests[d.Name] == nil {
				dests[d.Name] = &d
				order = append(order, d.Name)
			}
			dests[d.Name].Rcpts = append(dests[d.Name].Rcpts, addr)
			continue
		}
		ids, err := e.cfg.Store.ResolveRecipient(addr)
		switch {
		case err == nil:
			localIDs = append(localIDs, ids...)
			local = append(local, addr)
			continue
		case errors.Is(err, storage.ErrUnknownRecipient):
			outcomes[addr] = fromFailure(addr, permFailure(550, [3]int{5, 1, 1}, "no such user here"), e.cfg.Hostname)
			continue
		case !errors.Is(err, storage.ErrNotLocal):
			outcomes[addr] = fromFailure(addr, tempFailure([3]int{4, 3, 0}, "resolve recipient: %v", err), "")
			continue
		}
		d := e.route(strings.ToLower(dom))
		if dests[d.Name] == nil {
			dests[d.Name] = &d
			order = append(order, d.Name)
		}
		dests[d.Name].Rcpts = append(dests[d.Name].Rcpts, addr)
	}
	if len(local) > 0 {
		// The queue's reference keeps the blob; Deliver only needs its name.
		err := e.cfg.Store.Deliver(ctx, &storage.Blob{SHA: qe.Blob, Size: qe.Size}, dedup(localIDs), e.cfg.Now())
		for _, a := range local {
			if err != nil {
				outcomes[a] = fromFailure(a, tempFailure([3]int{4, 3, 0}, "local delivery: %v", err), e.cfg.Hostname)
			} else {
				outcomes[a] = rcptOutcome{Addr: a, Status: storage.RcptDelivered, Code: 250, Enh: [3]int{2, 0, 0}, Text: "delivered locally", RemoteMTA: e.cfg.Hostname}
			}
		}
	}
	var transcripts []*Transcript
	var recs []*recorder
	for _, name := range order {
		d := dests[name]
		t := &Transcript{QueueID: qe.ID, Attempt: attemptNo, Destination: d.Name, Start: e.cfg.Now(), TLS: "none"}
		rec := &recorder{t: t, now: e.cfg.Now}
		recs = append(recs, rec)
		res := e.deliverRemote(ctx, qe, *d, rec)
		t.End = e.cfg.Now()
		t.Outcome = summarize(res)
		transcripts = append(transcripts, t)
		for k, v := range res {
			outcomes[k] = v
		}
	}
	connDone()
	abandoned := ctx.Err() != nil
	// Transcripts are saved before the outcome is recorded: evidence of
	// what was said on the wire, even for an attempt a crash cut short.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	for _, t := range transcripts {
		if abandoned {
			t.Outcome = "abandoned (shutting down), not recorded: " + t.Outcome
		}
		if err := e.cfg.Transcripts.SaveTranscript(sctx, *t); err != nil {
			log.Warn("outbound: save transcript", "err", err)
		}
	}
	cancel()
	if abandoned {
		for _, r := range recs {
			r.release(e, false)
		}
		log.Info("outbound: attempt abandoned, will be retried")
		return
	}
	err := e.record(ctx, qe, outcomes, attemptNo)
	for _, r := range recs {
		r.release(e, err == nil)
	}
	if err != nil {
		// The entry stays due; hold it here for a while so a lasting
		// error cannot turn into a loop of re-sends.
		log.Error("outbound: record attempt", "err", err)
		e.mu.Lock()
		e.hold[qe.ID] = e.cfg.Now().Add(e.backoff(attemptNo))
		e.mu.Unlock()
	}
}

// relayRoutes maps the gateway recipients of an entry to their backends;
// the others (nil) are routed by MX, smarthost or local delivery.
func relayRoutes(qe storage.QueueEntry) map[string][]string {
	m := map[string][]string{}
	for _, r := range qe.Rcpts {
		if len(r.Relay) > 0 {
			m[r.Addr] = r.Relay
		}
	}
	return m
}

// relayDestination groups the recipients that go to the same backends,
// so one connection carries them all.
func relayDestination(domain string, backends []string) destination {
	return destination{Name: "gateway " + strings.Join(backends, ","), Domain: domain, Relay: backends}
}

// route picks the destination of a recipient domain.
func (e *Engine) route(domain string) destination {
	sh, ok := e.cfg.Smarthosts[domain]
	if !ok {
		sh, ok = e.cfg.Smarthosts[""]
	}
	if !ok {
		return destination{Name: domain, Domain: domain}
	}
	if sh.TLS == "" {
		sh.TLS = TLSStartTLS
	}
	if sh.Port == 0 {
		switch sh.TLS {
		case TLSImplicit:
			sh.Port = 465
		case TLSNone:
			sh.Port = 25
		default:
			sh.Port = 587
		}
	}
	return destination{Name: "smarthost " + net.JoinHostPort(sh.Host, strconv.Itoa(sh.Port)), Domain: domain, Smart: &sh}
}

// record stores the outcome of an attempt: results per recipient, the
// next attempt (back-off), the expiry, and a DSN in the same command.
func (e *Engine) record(ctx context.Context, qe storage.QueueEntry, outcomes map[string]rcptOutcome, attemptNo int) error {
	now := e.cfg.Now()
	expires := qe.Expires
	if expires.IsZero() {
		expires = qe.Created.Add(e.cfg.Expiry)
	}
	var failed, delayed []rcptOutcome
	for _, r := range qe.Rcpts {
		o, ok := outcomes[r.Addr]
		if !ok || r.Status != storage.RcptPending {
			continue
		}
		if o.Status == storage.RcptPending && !now.Before(expires) {
			// Give up (RFC 5321 §4.5.4.1). The DSN carries the last
			// temporary status, or 4.4.7 "delivery time expired".
			o.Status = storage.RcptFailed
			if o.Enh[0] != 4 {
				o.Enh = [3]int{4, 4, 7}
			}
			o.Text = "delivery time expired; last error: " + o.Text
		}
		outcomes[r.Addr] = o
		switch o.Status {
		case storage.RcptFailed:
			failed = append(failed, o)
		case storage.RcptPending:
			delayed = append(delayed, o)
		}
	}
	warn := len(delayed) > 0 && !qe.DelayWarned && e.cfg.DelayWarning > 0 && now.Sub(qe.Created) >= e.cfg.DelayWarning
	if !warn {
		delayed = nil
	}
	var dsn *storage.QueueEntry
	if len(failed) > 0 || warn {
		if qe.From == "" || qe.DSN {
			// No bounce for the null sender, nor for a bounce (RFC 5321
			// §4.5.5, RFC 3464 §2): that is how bounce loops start.
			e.log.Info("outbound: no DSN for a null sender", "queue_id", qe.ID, "failed", len(failed))
		} else {
			d, blob, err := e.makeDSN(ctx, qe, failed, delayed, attemptNo, now, expires)
			if err != nil {
				// Without its DSN a failure is not recorded: the
				// recipients stay pending and are reported next time.
				e.log.Error("outbound: make DSN", "queue_id", qe.ID, "err", err)
				for _, o := range failed {
					o.Status = storage.RcptPending
					outcomes[o.Addr] = o
				}
				warn = false
			} else {
				defer blob.Release()
				dsn = d
			}
		}
	}
	var results []storage.RcptResult
	remove := true
	for _, r := range qe.Rcpts {
		o, ok := outcomes[r.Addr]
		if r.Status != storage.RcptPending {
			continue
		}
		if !ok {
			remove = false
			continue
		}
		if o.Status == storage.RcptPending {
			remove = false
		}
		results = append(results, storage.RcptResult{Addr: o.Addr, Status: o.Status, Code: o.Code, Error: o.String()})
	}
	next := now.Add(e.backoff(attemptNo))
	if next.After(expires) && expires.After(now) {
		next = expires
	}
	if err := e.cfg.Store.QueueAttempt(ctx, qe.ID, results, next, warn, dsn, remove); err != nil {
		return err
	}
	e.log.Info("outbound: attempt recorded", "queue_id", qe.ID, "attempt", attemptNo,
		"failed", len(failed), "pending", countStatus(outcomes, storage.RcptPending),
		"delivered", countStatus(outcomes, storage.RcptDelivered), "dsn", dsn != nil, "next", next)
	if dsn != nil {
		e.Wake()
	}
	return nil
}

// backoff is the wait after the given attempt.
func (e *Engine) backoff(attempt int) time.Duration {
	b := e.cfg.Backoff
	return b[min(max(attempt, 1), len(b))-1]
}

func countStatus(m map[string]rcptOutcome, st string) int {
	n := 0
	for _, o := range m {
		if o.Status == st {
			n++
		}
	}
	return n
}

func summarize(res map[string]rcptOutcome) string {
	var b strings.Builder
	for _, st := range []string{storage.RcptDelivered, storage.RcptPending, storage.RcptFailed} {
		for _, o := range res {
			if o.Status != st {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			word := st
			if st == storage.RcptPending {
				word = "deferred"
			}
			b.WriteString(o.Addr + " " + word + ": " + o.String())
		}
	}
	return b.String()
}

// splitAddr splits at the last "@".
func splitAddr(a string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(a, '@')
	if i <= 0 || i == len(a)-1 {
		return "", "", false
	}
	return a[:i], a[i+1:], true
}

func dedup(ids []uint64) []uint64 {
	seen := map[uint64]bool{}
	var out []uint64
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
