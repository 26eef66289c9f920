package filter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tandemmail/tandem/storage"
)

// Store is the part of *storage.Store the pipeline uses.
type Store interface {
	ResolveRecipient(addr string) ([]uint64, error)
	SenderAllowed(accountID uint64, addr string) bool
	QuotaExceeded(accountID uint64, size int64) bool
	SpaceLow(need int64) bool
	PutBlob(r io.Reader) (*storage.Blob, error)
	Deliver(ctx context.Context, b *storage.Blob, accountIDs []uint64, internalDate time.Time) error
	OpenBlob(sha string) (*os.File, error)
}

// Outbound queues mail for recipients in domains not hosted here. Enqueue
// returns nil only once the message is durably queued; the blob is stored
// and protected until Enqueue returns.
type Outbound interface {
	Enqueue(ctx context.Context, env *Envelope, rcpts []string, blob *storage.Blob) error
}

// Config configures a Pipeline.
type Config struct {
	Store    Store    // required
	Outbound Outbound // nil: no outbound queue yet; remote recipients get 451 4.3.2
	Logger   *slog.Logger
	Checks   Checks
	MailLog  MailLog // nil: no mail log records
	Gateway  Gateway // nil: no gateway domains (SPEC M9)
	// RcptRejectObserver, if set, hears of every refused recipient (the
	// mail firewall counts unknown ones, 550 5.1.1, to spot dictionary
	// attacks). It must not block.
	RcptRejectObserver func(ctx context.Context, env *Envelope, rcpt string, r *Reject)

	MaxRecipients  int              // per transaction; default 1000 (RFC 5321 §4.5.3.1.8 asks for at least 100)
	MaxHeaderBytes int64            // header section limit; default 1 MiB
	MaxHops        int              // Received fields allowed in an incoming message; default 50
	Now            func() time.Time // default time.Now
}

// Pipeline is the Deliverer every protocol uses.
type Pipeline struct {
	cfg Config
	log *slog.Logger
}

// New makes a Pipeline; zero limits get their defaults.
func New(cfg Config) *Pipeline {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxRecipients <= 0 {
		cfg.MaxRecipients = 1000
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = 1 << 20
	}
	if cfg.MaxHops <= 0 {
		cfg.MaxHops = 50
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Pipeline{cfg: cfg, log: cfg.Logger}
}

var _ Deliverer = (*Pipeline)(nil)

// Begin checks the client and the reverse-path and starts a transaction.
func (p *Pipeline) Begin(ctx context.Context, env *Envelope) (Transaction, error) {
	if env == nil {
		return nil, errors.New("begin delivery: nil envelope")
	}
	d := &Delivery{p: p, env: env}
	for _, c := range p.cfg.Checks.Conn {
		v := timed(func() Verdict { return c.CheckConn(ctx, env) })
		d.verdicts = append(d.verdicts, v)
		if r := verdictReject(v); r != nil {
			return nil, r
		}
	}
	if env.From != "" {
		if _, err := ParseAddress(env.From, env.SMTPUTF8); err != nil {
			if errors.Is(err, ErrNonASCII) {
				return nil, reject(553, [3]int{5, 6, 7}, "Non-ASCII sender address requires SMTPUTF8", err)
			}
			return nil, reject(553, [3]int{5, 1, 7}, "Bad sender address syntax", err)
		}
	}
	// RELIABILITY #21: an authenticated user sends only as one of its own
	// addresses (its account or an alias delivering to it). The null
	// reverse-path (RFC 5321 §4.5.5, e.g. a MUA-generated receipt) names
	// no one and is allowed.
	if env.AuthAccountID != 0 && env.From != "" && !p.cfg.Store.SenderAllowed(env.AuthAccountID, env.From) {
		return nil, reject(553, [3]int{5, 7, 1}, "Sender address not owned by the authenticated user", nil)
	}
	return d, nil
}

// Delivery is a Pipeline transaction.
type Delivery struct {
	p        *Pipeline
	env      *Envelope
	rcpts    []string // accepted recipients, as given
	accounts []uint64 // local targets
	remote   []string // for the outbound queue
	relay    []string // gateway-domain recipients, for their backends
	verdicts []Verdict
	done     atomic.Bool // Abort may come from another goroutine while Body runs
}

// Verdicts lists the checks' verdicts so far.
func (d *Delivery) Verdicts() []Verdict { return append([]Verdict(nil), d.verdicts...) }

// Recipients lists the accepted recipients.
func (d *Delivery) Recipients() []string { return append([]string(nil), d.rcpts...) }

// AddRcpt applies the relay rules to one recipient and resolves it;
// refusals go to the mail log.
func (d *Delivery) AddRcpt(ctx context.Context, addr string) error {
	err := d.addRcpt(ctx, addr)
	if rej, ok := AsReject(err); ok {
		d.logReject(addr, rej)
		if o := d.p.cfg.RcptRejectObserver; o != nil {
			o(ctx, d.env, addr, rej)
		}
	}
	return err
}

func (d *Delivery) addRcpt(ctx context.Context, addr string) error {
	if d.done.Load() {
		return errors.New("add recipient: transaction finished")
	}
	if len(d.rcpts) >= d.p.cfg.MaxRecipients {
		return reject(452, [3]int{4, 5, 3}, "Too many recipients", nil)
	}
	a, err := ParseAddress(addr, d.env.SMTPUTF8)
	switch {
	case errors.Is(err, ErrNonASCII):
		return reject(553, [3]int{5, 6, 7}, "Non-ASCII recipient address requires SMTPUTF8", err)
	case err != nil:
		return reject(501, [3]int{5, 1, 3}, "Bad recipient address syntax", err)
	case a.RelayForm():
		// Never an open relay: %-hack, bang paths, quoted "@" and address
		// literals are refused even for authenticated users.
		return reject(554, [3]int{5, 7, 1}, "Relay access denied", nil)
	}
	if handled, err := d.gatewayRecipient(ctx, addr, a.String()); handled {
		return err // filter/gateway.go: relayed to the domain's backends
	}
	ids, err := d.p.cfg.Store.ResolveRecipient(a.String())
	remote := false
	switch {
	case errors.Is(err, storage.ErrNotLocal):
		if d.env.AuthAccountID == 0 {
			return reject(554, [3]int{5, 7, 1}, "Relay access denied", nil)
		}
		if d.p.cfg.Outbound == nil {
			return reject(451, [3]int{4, 3, 2}, "Outbound delivery not available yet", nil)
		}
		remote = true
	case errors.Is(err, storage.ErrUnknownRecipient):
		return reject(550, [3]int{5, 1, 1}, "No such user here", nil)
	case errors.Is(err, storage.ErrBadAddress):
		return reject(501, [3]int{5, 1, 3}, "Bad recipient address syntax", err)
	case err != nil:
		return storageReject(fmt.Errorf("resolve %s: %w", a, err))
	}
	if d.p.cfg.Store.SpaceLow(d.env.Size) {
		return reject(452, [3]int{4, 3, 1}, "Insufficient system storage", nil) // RELIABILITY #5
	}
	for _, id := range ids {
		if d.p.cfg.Store.QuotaExceeded(id, d.env.Size) {
			// Temporary: the owner may make room (storage-api: 452 4.2.2).
			return reject(452, [3]int{4, 2, 2}, "Mailbox full", nil)
		}
	}
	for _, c := range d.p.cfg.Checks.Envelope {
		v := timed(func() Verdict { return c.CheckEnvelope(ctx, d.env, a.String()) })
		d.verdicts = append(d.verdicts, v)
		if r := verdictReject(v); r != nil {
			return r
		}
	}
	if remote {
		d.remote = append(d.remote, a.String())
	}
	d.accounts = append(d.accounts, ids...)
	d.rcpts = append(d.rcpts, addr)
	return nil
}

// Body stores the message (trace header first), runs the message checks and
// commits it. nil means durable: the blob is fsynced and the delivery
// applied through Raft. The outcome goes to the mail log.
func (d *Delivery) Body(ctx context.Context, r io.Reader) error {
	hs, size, err := d.body(ctx, r)
	if rej, ok := AsReject(err); ok {
		d.logReject("", rej)
	} else if err == nil {
		d.logAccepted(hs, size)
	}
	return err
}

func (d *Delivery) body(ctx context.Context, r io.Reader) (*headerScan, int64, error) {
	if d.done.Swap(true) {
		return nil, 0, errors.New("body: transaction finished")
	}
	if len(d.rcpts) == 0 {
		return nil, 0, reject(554, [3]int{5, 5, 1}, "No valid recipients", nil)
	}
	src := &errReader{r: r}
	hs := newHeaderScan(src, d.p.cfg.MaxHeaderBytes, d.p.cfg.MaxHops, d.checkHeaderFrom)
	in := io.MultiReader(strings.NewReader(d.env.Trace), hs)
	readErr := func(what string, err error) error {
		if hs.err != nil {
			return hs.err
		}
		if src.err != nil {
			// The caller's reader failed: client gone, size limit. The
			// caller knows its own error; nothing was stored.
			return fmt.Errorf("read message %s: %w", d.env.ID, src.err)
		}
		return storageReject(fmt.Errorf("%s %s: %w", what, d.env.ID, err))
	}
	var blob *storage.Blob
	if len(d.p.cfg.Checks.Message) > 0 {
		// The checks read a spooled copy, and only the message as it is
		// delivered (with the checks' header fields) becomes a blob: one
		// durable write per message instead of two. Nothing needs to be
		// durable before the commit, since nothing was acknowledged.
		sp, err := newSpool(in, spoolInMemory)
		if err != nil {
			return nil, 0, readErr("spool message", err)
		}
		defer sp.Close()
		if rej := d.runMessageChecks(ctx, sp, sp.size); rej != nil {
			return nil, 0, rej
		}
		var msg io.Reader = io.NewSectionReader(sp, 0, sp.size)
		if rn := d.renamer(); rn != nil {
			if msg, err = renameFields(msg, d.p.cfg.MaxHeaderBytes+int64(len(d.env.Trace)), rn); err != nil {
				return nil, 0, storageReject(fmt.Errorf("rename header fields of %s: %w", d.env.ID, err))
			}
		}
		blob, err = d.p.cfg.Store.PutBlob(io.MultiReader(strings.NewReader(d.addedHeaders()), msg))
		if err != nil {
			return nil, 0, storageReject(fmt.Errorf("store message %s: %w", d.env.ID, err))
		}
		defer blob.Release()
	} else {
		b, err := d.p.cfg.Store.PutBlob(in)
		if err != nil {
			return nil, 0, readErr("store message", err)
		}
		defer b.Release()
		blob = b
		if added := d.addedHeaders(); added != "" {
			nb, err := d.prependHeaders(blob, added)
			if err != nil {
				return nil, 0, storageReject(fmt.Errorf("add headers to %s: %w", d.env.ID, err))
			}
			defer nb.Release()
			blob = nb
		}
	}
	if len(d.accounts) > 0 {
		if err := d.deliverLocal(ctx, blob); err != nil {
			return nil, 0, err
		}
	}
	if len(d.relay) > 0 {
		if err := d.relayGateway(ctx, blob); err != nil {
			return nil, 0, err
		}
	}
	if len(d.remote) > 0 {
		if err := d.p.cfg.Outbound.Enqueue(ctx, d.env, d.remote, blob); err != nil {
			if _, ok := AsReject(err); ok {
				return nil, 0, err
			}
			return nil, 0, storageReject(fmt.Errorf("queue %s: %w", d.env.ID, err))
		}
	}
	d.p.log.Info("message delivered", "msg_id", d.env.ID, "blob", blob.SHA[:12], "size", blob.Size,
		"rcpts", len(d.rcpts), "local_accounts", len(dedup(d.accounts)), "remote", len(d.remote))
	return hs, blob.Size, nil
}

// Abort abandons the transaction. Nothing was committed unless Body
// returned nil.
func (d *Delivery) Abort() { d.done.Store(true) }

// checkHeaderFrom extends the sender check to the From header field for
// authenticated users (RELIABILITY #21), before anything is stored.
func (d *Delivery) checkHeaderFrom(from []string) *Reject {
	if d.env.AuthAccountID == 0 {
		return nil
	}
	for _, f := range from {
		addrs, err := parseHeaderAddresses(f)
		if err != nil {
			return reject(550, [3]int{5, 7, 1}, "Unparseable From header field", err)
		}
		for _, a := range addrs {
			if !d.p.cfg.Store.SenderAllowed(d.env.AuthAccountID, a) {
				return reject(550, [3]int{5, 7, 1}, "From header address not owned by the authenticated user", nil)
			}
		}
	}
	return nil
}

func (d *Delivery) runMessageChecks(ctx context.Context, body io.ReaderAt, size int64) *Reject {
	for _, c := range d.p.cfg.Checks.Message {
		// Later stages (spam scoring) add up what earlier ones found.
		cctx := WithPriorVerdicts(ctx, d.verdicts)
		v := timed(func() Verdict { return c.CheckMessage(cctx, d.env, d.rcpts, body, size) })
		d.verdicts = append(d.verdicts, v)
		if r := verdictReject(v); r != nil {
			return r
		}
	}
	return nil
}

// addedHeaders joins the header fields the message checks asked for.
func (d *Delivery) addedHeaders() string {
	var b strings.Builder
	for _, v := range d.verdicts {
		for _, h := range v.Headers {
			if h == "" {
				continue
			}
			b.WriteString(h)
			if !strings.HasSuffix(h, "\r\n") {
				b.WriteString("\r\n")
			}
		}
	}
	return b.String()
}

// prependHeaders stores a copy of blob with the header fields in front. The
// checks ran on the message as received; what is delivered is that message
// plus their findings.
func (d *Delivery) prependHeaders(blob *storage.Blob, headers string) (*storage.Blob, error) {
	f, err := d.p.cfg.Store.OpenBlob(blob.SHA)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return d.p.cfg.Store.PutBlob(io.MultiReader(strings.NewReader(headers), f))
}

// storageReject maps a storage failure to a temporary reply: mail that was
// not committed must be retried by the client, never lost.
func storageReject(err error) *Reject {
	switch {
	case errors.Is(err, storage.ErrOverQuota):
		return reject(452, [3]int{4, 2, 2}, "Mailbox full", err)
	case isNoSpace(err):
		return reject(452, [3]int{4, 3, 1}, "Insufficient system storage", err) // RELIABILITY #5
	case errors.Is(err, storage.ErrNotLeader), errors.Is(err, storage.ErrUnavailable):
		return reject(451, [3]int{4, 3, 0}, "Mail system temporarily unavailable, try again later", err)
	}
	return reject(451, [3]int{4, 3, 0}, "Local error in processing, try again later", err)
}

// errReader remembers the error of the reader it wraps.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

func dedup(ids []uint64) []uint64 {
	seen := make(map[uint64]bool, len(ids))
	out := make([]uint64, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
