package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tandemmail/tandem/protocols/outbound"
	"github.com/tandemmail/tandem/storage"
)

// transcriptStore keeps delivery transcripts in the replicated mail log
// (SPEC L2), so `tandem log transcript` works on any node after a failover.
type transcriptStore struct{ s *storage.Store }

func (t transcriptStore) SaveTranscript(ctx context.Context, tr outbound.Transcript) error {
	return t.s.SaveTranscript(ctx, tr.QueueID, tr.Attempt, tr.Start, tr.Render())
}

// loggedQueue writes a mail log record for every recipient result the
// engine commits (SPEC L1: each delivery attempt and the final outcome).
type loggedQueue struct {
	*storage.Store
	log *storage.LogWriter
}

func (q loggedQueue) QueueAttempt(ctx context.Context, id string, results []storage.RcptResult, next time.Time, delayWarned bool, dsn *storage.QueueEntry, remove bool) error {
	e, _ := q.Store.QueueEntry(id)
	if err := q.Store.QueueAttempt(ctx, id, results, next, delayWarned, dsn, remove); err != nil {
		return err
	}
	for _, r := range results {
		ev := map[string]string{storage.RcptDelivered: "delivered", storage.RcptFailed: "bounced", storage.RcptPending: "deferred"}[r.Status]
		attempt := 0
		action := "outbound delivery"
		for _, er := range e.Rcpts {
			if er.Addr == r.Addr {
				attempt = er.Attempts + 1
				if len(er.Relay) > 0 {
					// SPEC M9: the log says where gateway mail went.
					action = "gateway relay to " + strings.Join(er.Relay, ", ")
				}
			}
		}
		q.log.Log(storage.LogRecord{QueueID: id, Event: ev, Direction: "out", From: e.From, Rcpts: []string{r.Addr},
			Size: e.Size, Code: r.Code, Detail: r.Error, Attempt: attempt, Action: action})
	}
	if dsn != nil {
		q.log.Log(storage.LogRecord{QueueID: dsn.ID, Event: "queued", Direction: "out", From: "", Rcpts: []string{e.From},
			Size: dsn.Size, Action: "delivery status notification for " + id})
	}
	return nil
}

// startOutbound runs the delivery engine: it works only while this node
// leads, and the SMTP pipeline hands it mail for other domains.
func (n *Node) startOutbound() (*outbound.Engine, error) {
	var smarthosts map[string]outbound.Smarthost
	if n.cfg.Smarthost != "" {
		host, port, err := net.SplitHostPort(n.cfg.Smarthost)
		p, perr := strconv.Atoi(port)
		if err != nil || perr != nil || p <= 0 || p > 65535 {
			return nil, fmt.Errorf("--smarthost %q: want HOST:PORT", n.cfg.Smarthost)
		}
		sh := outbound.Smarthost{Host: host, Port: p, Username: n.cfg.SmarthostUser, TLS: outbound.TLSStartTLS}
		if p == 465 {
			sh.TLS = outbound.TLSImplicit
		}
		if n.cfg.SmarthostPasswordFile != "" {
			b, err := os.ReadFile(n.cfg.SmarthostPasswordFile)
			if err != nil {
				return nil, fmt.Errorf("--smarthost-password-file: %w", err)
			}
			sh.Password = strings.TrimSpace(string(b))
		}
		smarthosts = map[string]outbound.Smarthost{"": sh}
	}
	e := outbound.New(outbound.Config{Smarthosts: smarthosts, Store: loggedQueue{n.store, n.maillog}, Hostname: n.cfg.Hostname, Resolver: n.cfg.DNSResolver,
		Port: n.cfg.OutboundPort, IsLeader: n.raft.IsLeader, Transcripts: transcriptStore{n.store},
		Logger: n.log.With("service", "outbound")})
	ctx, cancel := context.WithCancel(context.Background())
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := e.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			n.log.Error("outbound engine stopped", "err", err)
		}
	}()
	n.addCloser(func() error {
		cancel()
		return e.Close()
	})
	return e, nil
}
