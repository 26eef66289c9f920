package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/filter/fingerprint"
	"github.com/tandemmail/tandem/filter/spam"
	"github.com/tandemmail/tandem/filter/spamstage"
	"github.com/tandemmail/tandem/storage"
)

// spamState is the node's spam filter, made on first use (the admin API
// starts before the mail services) and run for the node's lifetime.
type spamState struct {
	once sync.Once
	e    *spamstage.Engine
	err  error
	ctx  context.Context // ends when the node closes
}

// spamEngine returns the node's spam engine, starting it on first call:
// its state sync and auto-learn flushing run on every node, the
// quarantine digest only on the leader.
func (n *Node) spamEngine() (*spamstage.Engine, error) {
	n.spam.once.Do(func() {
		e, err := spamstage.New(n.store, spamstage.Config{Logger: n.log.With("service", "spam")})
		if err != nil {
			n.spam.err = fmt.Errorf("spam filter: %w", err)
			return
		}
		n.spam.e = e
		ctx, cancel := context.WithCancel(context.Background())
		n.spam.ctx = ctx
		n.wg.Add(2)
		go func() { defer n.wg.Done(); e.Run(ctx) }()
		go func() { defer n.wg.Done(); n.quarantineDigests(ctx, e) }()
		n.addCloser(func() error { cancel(); return nil })
	})
	return n.spam.e, n.spam.err
}

// spamChecks adds the spam stage, which reads every earlier verdict, and
// the per-recipient spam actions.
func (n *Node) spamChecks(c *filter.Checks) error {
	e, err := n.spamEngine()
	if err != nil {
		return err
	}
	st := e.Stage()
	c.Message = append(c.Message, st)
	c.Dispose = st
	return nil
}

// spamTransferred learns from IMAP COPY and MOVE: into the Junk mailbox
// trains spam; out of Junk into anything but Trash trains ham. It runs in
// the background so the client's command is not held up by training.
func (n *Node) spamTransferred(_ context.Context, _ uint64, from, to storage.Mailbox, msgs []storage.Message) {
	isJunk := func(mb storage.Mailbox) bool {
		return mb.SpecialUse == `\Junk` || strings.EqualFold(mb.Name, "Junk")
	}
	var class spam.Class
	switch {
	case isJunk(to) && !isJunk(from):
		class = spam.Spam
	case isJunk(from) && !isJunk(to) && to.SpecialUse != `\Trash`:
		class = spam.Ham
	default:
		return
	}
	e, err := n.spamEngine()
	if err != nil {
		return
	}
	blobs := make([]string, len(msgs))
	for i, m := range msgs {
		blobs[i] = m.Blob
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		// Bounded, and cut short when the node closes.
		ctx, cancel := context.WithTimeout(n.spam.ctx, time.Minute)
		defer cancel()
		if err := e.TrainStored(ctx, blobs, class, "user"); err != nil {
			n.log.Warn("learning from a move failed", "class", class.String(), "err", err)
		} else {
			n.log.Info("learned from a move", "class", class.String(), "messages", len(blobs), "from", from.Name, "to", to.Name)
		}
		if class == spam.Spam {
			n.learnFingerprints(ctx, blobs)
		}
	}()
}

// quarantineDigests sends the held-mail digests on the leader every
// QuarantineDigest (default daily). The time of the last round is
// replicated, so a failover neither skips nor repeats one.
func (n *Node) quarantineDigests(ctx context.Context, e *spamstage.Engine) {
	interval := n.cfg.QuarantineDigest
	if interval == 0 {
		interval = 24 * time.Hour
	}
	if interval < 0 {
		return // turned off
	}
	tick := time.NewTicker(min(interval, time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !n.raft.IsLeader() || !e.DigestDue(interval) {
			continue
		}
		sent, err := e.SendDigests(ctx, n.publicURL(), n.cfg.Hostname)
		if err != nil {
			n.log.Warn("quarantine digests", "sent", sent, "err", err)
		} else if sent > 0 {
			n.log.Info("quarantine digests sent", "count", sent)
		}
	}
}

// quarantineHandlers serves the release links of the digests.
func (n *Node) quarantineHandlers(mux *http.ServeMux) {
	mux.HandleFunc("/quarantine/release", func(w http.ResponseWriter, r *http.Request) {
		e, err := n.spamEngine()
		if err != nil {
			http.Error(w, "spam filter unavailable", http.StatusServiceUnavailable)
			return
		}
		e.ReleaseHandler().ServeHTTP(w, r)
	})
}

// learnFingerprints remembers the fuzzy fingerprint of messages a user
// marked as spam, so near-copies sent to anyone else score as known spam
// (filter/fingerprint). Messages with too little text have none.
func (n *Node) learnFingerprints(ctx context.Context, blobs []string) {
	for _, sha := range blobs {
		f, err := n.store.OpenBlob(sha)
		if err != nil {
			continue
		}
		sig, err := fingerprint.FromMessage(io.LimitReader(f, 4<<20))
		f.Close()
		if err != nil {
			continue // too short or undecodable: nothing to remember
		}
		if err := fingerprint.Add(ctx, n.store, sig, "marked as spam by a user", time.Now()); err != nil {
			n.log.Warn("storing a spam fingerprint failed", "blob", sha[:12], "err", err)
		}
	}
}
