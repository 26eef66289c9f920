package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/filter/dkimsign"
	"github.com/tandemmail/tandem/storage"
)

// dkimOutbound sits between the pipeline and the outbound queue (SPEC S1,
// S2): mail leaving for other domains whose RFC 5322 From domain is hosted
// here gets the secure-signature link (when the domain opted in) and then
// DKIM signatures by the domain's active RSA and Ed25519 keys. Copies for
// local recipients never pass here and stay as they were.
type dkimOutbound struct {
	n    *Node
	next filter.Outbound
	keys *dkimsign.Keys
}

// signingOutbound wraps the queue the pipeline hands remote mail to, and
// starts the leader's key maintenance (keys for new domains, timed
// rotation, removal of retired keys, pruning of expired signature records).
func (n *Node) signingOutbound(next filter.Outbound) filter.Outbound {
	o := &dkimOutbound{n: n, next: next, keys: dkimsign.NewKeys(n.store)}
	n.wg.Add(1)
	go o.maintainLoop()
	return o
}

func (n *Node) dkimDelays() (publish, retire time.Duration) {
	publish, retire = n.cfg.DKIMPublishDelay, n.cfg.DKIMRetireDelay
	if publish <= 0 {
		publish = 48 * time.Hour
	}
	if retire <= 0 {
		retire = 48 * time.Hour
	}
	return publish, retire
}

// maintainLoop runs key maintenance on the leader whenever the domain list
// or the keys change, and at least every minute (more often with short
// delays) for the timed steps.
// Key generation happens here, outside the FSM; Keys writes the result
// with IfVersion(0), so a new leader racing an old one never makes two
// key sets.
func (o *dkimOutbound) maintainLoop() {
	defer o.n.wg.Done()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	var lastDomains, lastKeys uint64
	var lastFull, lastPrune time.Time
	log := o.n.log.With("service", "dkim")
	for {
		select {
		case <-o.n.stopSweep:
			return
		case <-t.C:
		}
		if !o.n.raft.IsLeader() {
			lastFull = time.Time{}
			continue
		}
		// storage has no revision for the domain list: its count and the
		// Raft index catch additions and deletions cheaply.
		ds, err := o.n.store.Domains()
		if err != nil {
			continue
		}
		dom := uint64(len(ds))
		for _, d := range ds {
			dom = dom*31 + uint64(len(d.Name)) + uint64(d.Created.UnixNano())
		}
		keysRev := o.n.store.KVRevision(dkimsign.NSKeys)
		now := time.Now()
		publish, retire := o.n.dkimDelays()
		every := min(time.Minute, publish/4, retire/4) // timed steps happen within a quarter of their delay
		if dom == lastDomains && keysRev == lastKeys && now.Sub(lastFull) < every {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := o.keys.Maintain(ctx, now, publish, retire); err != nil {
			// Retried at the next change or after a minute, not every tick.
			log.Warn("dkim key maintenance", "err", err)
		}
		lastDomains, lastKeys, lastFull = dom, o.n.store.KVRevision(dkimsign.NSKeys), now
		if now.Sub(lastPrune) > time.Hour {
			if k, err := dkimsign.PruneRecords(ctx, o.n.store, now); err != nil {
				log.Warn("prune signature records", "err", err)
			} else {
				lastPrune = now
				if k > 0 {
					log.Info("expired signature records removed", "count", k)
				}
			}
		}
		cancel()
	}
}

// publicURL is the base of verification links: --public-url, else built
// from the host name and the HTTP listener's port.
func (n *Node) publicURL() string {
	if n.cfg.PublicURL != "" {
		return strings.TrimSuffix(n.cfg.PublicURL, "/")
	}
	host := n.cfg.Hostname
	if a, ok := n.Listeners()["http"]; ok {
		if _, port, err := net.SplitHostPort(a); err == nil && port != "80" {
			host = net.JoinHostPort(host, port)
		}
	}
	return "http://" + host
}

// Enqueue implements filter.Outbound.
func (o *dkimOutbound) Enqueue(ctx context.Context, env *filter.Envelope, rcpts []string, blob *storage.Blob) error {
	f, err := o.n.store.OpenBlob(blob.SHA)
	if err != nil {
		return fmt.Errorf("dkim: open message: %w", err)
	}
	domain := headerFromDomain(f)
	f.Close()
	if domain == "" || !o.n.store.HasDomain(domain) {
		// Relayed mail of a domain not hosted here: not ours to sign.
		return o.next.Enqueue(ctx, env, rcpts, blob)
	}
	cur := blob
	if dkimsign.SignatureEnabled(o.n.store, domain) {
		nb, err := o.stamp(ctx, env, rcpts, cur)
		if err != nil {
			return err
		}
		defer nb.Release()
		cur = nb
	}
	signers, err := o.keys.Signers(domain)
	if err == nil && len(signers) == 0 {
		// A domain added a moment ago: make its keys now rather than send
		// unsigned mail.
		_, err = o.keys.Ensure(ctx, domain, time.Now())
		if err == nil || errors.Is(err, storage.ErrKVConflict) { // conflict: the maintenance loop won
			signers, err = o.keys.Signers(domain)
		}
	}
	if err != nil || len(signers) == 0 {
		o.n.log.Warn("sending unsigned: no usable DKIM key", "domain", domain, "msg_id", env.ID, "err", err)
		return o.next.Enqueue(ctx, env, rcpts, cur)
	}
	f, err = o.n.store.OpenBlob(cur.SHA)
	if err != nil {
		return fmt.Errorf("dkim: open message: %w", err)
	}
	sigs, err := dkimsign.Signatures(f, signers)
	f.Close()
	if err != nil {
		return fmt.Errorf("dkim: sign %s: %w", env.ID, err)
	}
	f, err = o.n.store.OpenBlob(cur.SHA)
	if err != nil {
		return fmt.Errorf("dkim: open message: %w", err)
	}
	signed, err := o.n.store.PutBlob(io.MultiReader(strings.NewReader(sigs), f))
	f.Close()
	if err != nil {
		return fmt.Errorf("dkim: store signed message %s: %w", env.ID, err)
	}
	defer signed.Release()
	return o.next.Enqueue(ctx, env, rcpts, signed)
}

// stamp stores a copy of the message with its verification link and the
// record the link points to.
func (o *dkimOutbound) stamp(ctx context.Context, env *filter.Envelope, rcpts []string, blob *storage.Blob) (*storage.Blob, error) {
	f, err := o.n.store.OpenBlob(blob.SHA)
	if err != nil {
		return nil, fmt.Errorf("signature: open message: %w", err)
	}
	defer f.Close()
	token := dkimsign.NewToken()
	link := o.n.publicURL() + "/v/" + token
	pr, pw := io.Pipe()
	var res dkimsign.StampResult
	done := make(chan error, 1)
	go func() {
		var err error
		res, err = dkimsign.Stamp(pw, f, link)
		pw.CloseWithError(err)
		done <- err
	}()
	nb, err := o.n.store.PutBlob(pr)
	pr.CloseWithError(io.ErrClosedPipe) // unblock the writer if PutBlob stopped early
	if serr := <-done; serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		if nb != nil {
			nb.Release()
		}
		return nil, fmt.Errorf("signature: add link to %s: %w", env.ID, err)
	}
	now := time.Now()
	ttl := o.n.cfg.SignatureTTL
	if ttl <= 0 {
		ttl = dkimsign.DefaultSignatureTTL
	}
	rec := dkimsign.SignatureRecord{Sender: res.From, EnvelopeFrom: env.From, Recipients: rcpts, Time: now.Unix(),
		Subject: res.Subject, BodySHA256: res.BodySHA256, Expires: now.Add(ttl).Unix()}
	if err := dkimsign.PutRecord(ctx, o.n.store, token, rec); err != nil {
		nb.Release()
		return nil, err
	}
	return nb, nil
}

// headerFromDomain returns the domain of the first address of the From
// header field, lower-cased ("" when there is none).
func headerFromDomain(r io.Reader) string {
	h, _ := textproto.NewReader(bufio.NewReader(io.LimitReader(r, 1<<20))).ReadMIMEHeader()
	from := h.Get("From")
	if from == "" {
		return ""
	}
	addrs, err := mail.ParseAddressList(from)
	if err != nil || len(addrs) == 0 {
		return ""
	}
	a := addrs[0].Address
	i := strings.LastIndexByte(a, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(a[i+1:], "."))
}
