package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/bcrypt"
)

// Applier commits a command through Raft and returns the FSM's response.
// It is implemented by cluster.Node; storage does not know about Raft
// beyond this door.
type Applier interface {
	Apply(ctx context.Context, cmd []byte) (any, error)
}

// Store is the mail model: typed reads from the local state and writes as
// Raft commands.
type Store struct {
	fsm   *FSM
	blobs *BlobStore
	raft  Applier
	log   *slog.Logger
	now   func() time.Time

	hashSem chan struct{} // caps concurrent bcrypt work (RELIABILITY #22)
	dummy   []byte        // hash compared for unknown users: equal timing (RELIABILITY #23)

	unref chan string
	done  chan struct{}

	bcryptCost int
	repl       *BlobReplicator
	minFree    int64
	fwd        Forwarder
}

// StoreConfig configures a Store.
type StoreConfig struct {
	FSM    *FSM
	Blobs  *BlobStore
	Raft   Applier
	Logger *slog.Logger
	// BcryptCost defaults to bcrypt.DefaultCost; tests use bcrypt.MinCost.
	BcryptCost int
	Now        func() time.Time
	// Replicator copies blobs to peers; nil on a single node.
	Replicator *BlobReplicator
	// Forwarder commits writes made on a follower on the leader (nil:
	// followers refuse writes with ErrNotLeader).
	Forwarder Forwarder
	// MinFree is the disk reserve below which mail is refused (default
	// MinFreeBytes).
	MinFree int64
}

// NewStore wires the FSM, the blob files and the Raft applier.
func NewStore(cfg StoreConfig) *Store {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.DefaultCost
	}
	dummy, _ := bcrypt.GenerateFromPassword([]byte("tandem-dummy-password"), cfg.BcryptCost)
	s := &Store{
		fsm: cfg.FSM, blobs: cfg.Blobs, raft: cfg.Raft, log: cfg.Logger, now: cfg.Now,
		hashSem: make(chan struct{}, max(1, runtime.NumCPU())),
		dummy:   dummy,
		unref:   make(chan string, 4096),
		done:    make(chan struct{}),
	}
	s.bcryptCost = cfg.BcryptCost
	s.fwd = cfg.Forwarder
	s.minFree = cfg.MinFree
	if s.minFree == 0 {
		s.minFree = MinFreeBytes
	}
	s.repl = cfg.Replicator
	if s.repl != nil {
		blobs := cfg.Blobs
		cfg.FSM.OnBlobReferenced(func(sha string) {
			if !blobs.Has(sha) {
				s.repl.Want(sha)
			}
		})
		// Blobs referenced while this node was away or restored from a
		// snapshot are fetched in the background.
		go cfg.FSM.ReferencedBlobs(func(sha string) {
			if !blobs.Has(sha) {
				s.repl.Want(sha)
			}
		})
	}
	cfg.FSM.OnBlobUnreferenced(func(sha string) {
		select {
		case s.unref <- sha:
		default:
			// The deleter is behind; the periodic sweep will find it.
		}
	})
	go s.deleteUnreferenced()
	return s
}

// Close stops the blob deleter.
func (s *Store) Close() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
}

func (s *Store) deleteUnreferenced() {
	for {
		select {
		case <-s.done:
			return
		case sha := <-s.unref:
			s.blobs.removeIfIdle(sha, s.fsm.blobReferenced)
		}
	}
}

// SweepBlobs removes blob files that no message references and that are
// older than minAge (leftovers of interrupted deliveries).
func (s *Store) SweepBlobs(minAge time.Duration) int {
	return s.blobs.Sweep(minAge, s.fsm.blobReferenced)
}

// FSM returns the state machine (for status reporting).
func (s *Store) FSM() *FSM { return s.fsm }

// apply commits one command and turns application errors back into errors.
func (s *Store) apply(ctx context.Context, t CommandType, payload any) (any, error) {
	cmd, err := EncodeCommand(t, payload)
	if err != nil {
		return nil, err
	}
	resp, err := s.raft.Apply(ctx, cmd)
	if errors.Is(err, ErrNotLeader) && s.fwd != nil && forwardable[t] {
		raw, ferr := s.fwd.Forward(ctx, cmd)
		if ferr != nil {
			return nil, ferr
		}
		resp, err = decodeResponse(t, raw)
	}
	if err != nil {
		return nil, err
	}
	if e, ok := resp.(error); ok {
		return nil, e
	}
	return resp, nil
}

// replicate makes a new blob durable on a quorum before the command that
// references it is committed (DESIGN §2 step 2).
func (s *Store) replicate(ctx context.Context, b *Blob) error {
	if s.repl == nil {
		return nil
	}
	if err := s.repl.Replicate(ctx, b.SHA, b.Size); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

func (s *Store) nowNanos() int64 { return s.now().UnixNano() }

// ---- password hashing ----

func (s *Store) hash(password string) (string, error) {
	if password == "" {
		return "", errors.New("empty password")
	}
	if len(password) > 72 {
		return "", errors.New("password longer than 72 bytes")
	}
	s.hashSem <- struct{}{}
	defer func() { <-s.hashSem }()
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.bcryptCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// Authenticate checks a password. Unknown users and wrong passwords take the
// same time and give the same error (RELIABILITY #23).
func (s *Store) Authenticate(ctx context.Context, address, password string) (Account, error) {
	addr, aerr := NormalizeAddress(address)
	var rec accountRec
	found := false
	if aerr == nil {
		_ = s.fsm.view(func(tx *bolt.Tx) error {
			found, _ = getJSON(tx.Bucket(bktAccounts), []byte(addr), &rec)
			return nil
		})
	}
	hash := s.dummy
	if found {
		hash = []byte(rec.Hash)
	}
	select {
	case s.hashSem <- struct{}{}:
	case <-ctx.Done():
		return Account{}, ctx.Err()
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	<-s.hashSem
	if !found || err != nil {
		return Account{}, ErrAuthFailed
	}
	return accountFromRec(rec), nil
}

// ---- domains ----

// AddDomain hosts a new domain.
func (s *Store) AddDomain(ctx context.Context, name string) error {
	name = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	if err := CheckDomain(name); err != nil {
		return err
	}
	_, err := s.apply(ctx, CmdAddDomain, addDomainCmd{Name: name, Now: s.nowNanos()})
	return err
}

// DeleteDomain removes a domain that has no accounts left.
func (s *Store) DeleteDomain(ctx context.Context, name string) error {
	_, err := s.apply(ctx, CmdDelDomain, delDomainCmd{Name: strings.ToLower(strings.TrimSpace(name))})
	return err
}

// SetCatchAll routes mail for unknown addresses of a domain to target ("" clears).
func (s *Store) SetCatchAll(ctx context.Context, domain, target string) error {
	if target != "" {
		t, err := NormalizeAddress(target)
		if err != nil {
			return err
		}
		target = t
	}
	_, err := s.apply(ctx, CmdSetCatchAll, setCatchAllCmd{Domain: strings.ToLower(domain), Target: target})
	return err
}

// Domains lists hosted domains by name.
func (s *Store) Domains() ([]Domain, error) {
	var out []Domain
	err := s.fsm.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bktDomains).ForEach(func(k, v []byte) error {
			var r domainRec
			if ok, err := getJSON(tx.Bucket(bktDomains), k, &r); err != nil || !ok {
				return err
			}
			out = append(out, Domain{Name: r.Name, CatchAll: r.CatchAll, Created: time.Unix(0, r.Created)})
			return nil
		})
	})
	return out, err
}

// HasDomain reports whether the domain is hosted.
func (s *Store) HasDomain(name string) bool {
	var ok bool
	_ = s.fsm.view(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bktDomains).Get([]byte(strings.ToLower(name))) != nil
		return nil
	})
	return ok
}

// ---- accounts ----

// NewAccount describes an account to create.
type NewAccount struct {
	Address     string
	Password    string
	DisplayName string
	QuotaBytes  int64
	Admin       bool
	// PasswordHash, when set, is a bcrypt hash used instead of Password
	// (a settings import restores accounts without knowing passwords).
	PasswordHash string
}

// AddAccount creates an account with its default mailboxes.
func (s *Store) AddAccount(ctx context.Context, na NewAccount) (Account, error) {
	addr, err := NormalizeAddress(na.Address)
	if err != nil {
		return Account{}, err
	}
	if na.QuotaBytes < 0 {
		return Account{}, fmt.Errorf("account %s: negative quota", addr)
	}
	if !s.HasDomain(domainOf(addr)) {
		return Account{}, fmt.Errorf("account %s: domain %s: %w", addr, domainOf(addr), ErrNoDomain)
	}
	if _, err := s.AccountByAddress(addr); err == nil {
		return Account{}, fmt.Errorf("account %s: %w", addr, ErrExists)
	}
	h, err := na.PasswordHash, checkBcrypt(na.PasswordHash)
	if na.PasswordHash == "" {
		h, err = s.hash(na.Password)
	}
	if err != nil {
		return Account{}, fmt.Errorf("account %s: %w", addr, err)
	}
	resp, err := s.apply(ctx, CmdAddAccount, addAccountCmd{Address: addr, Hash: h,
		DisplayName: na.DisplayName, Quota: na.QuotaBytes, Admin: na.Admin, Now: s.nowNanos()})
	if err != nil {
		return Account{}, err
	}
	return resp.(Account), nil
}

// DeleteAccount removes an account and all its mail.
func (s *Store) DeleteAccount(ctx context.Context, address string) error {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return err
	}
	_, err = s.apply(ctx, CmdDelAccount, delAccountCmd{Address: addr})
	return err
}

// SetPassword replaces an account's password.
func (s *Store) SetPassword(ctx context.Context, address, password string) error {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return err
	}
	if _, err := s.AccountByAddress(addr); err != nil {
		return err
	}
	h, err := s.hash(password)
	if err != nil {
		return err
	}
	_, err = s.apply(ctx, CmdSetPassword, setPasswordCmd{Address: addr, Hash: h})
	return err
}

// AccountUpdate changes the fields that are not nil.
type AccountUpdate struct {
	DisplayName *string
	QuotaBytes  *int64
	Admin       *bool
}

// UpdateAccount changes display name, quota or admin flag.
func (s *Store) UpdateAccount(ctx context.Context, address string, u AccountUpdate) (Account, error) {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return Account{}, err
	}
	resp, err := s.apply(ctx, CmdUpdateAccount, updateAccountCmd{Address: addr,
		DisplayName: u.DisplayName, Quota: u.QuotaBytes, Admin: u.Admin})
	if err != nil {
		return Account{}, err
	}
	return resp.(Account), nil
}

// AccountByAddress looks an account up.
func (s *Store) AccountByAddress(address string) (Account, error) {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return Account{}, err
	}
	var out Account
	err = s.fsm.view(func(tx *bolt.Tx) error {
		rec, err := applier{tx: tx}.account(addr)
		out = accountFromRec(rec)
		return err
	})
	return out, err
}

// AccountByID looks an account up by ID.
func (s *Store) AccountByID(id uint64) (Account, error) {
	var out Account
	err := s.fsm.view(func(tx *bolt.Tx) error {
		rec, err := applier{tx: tx}.accountByID(id)
		out = accountFromRec(rec)
		return err
	})
	return out, err
}

// AccountQuery selects accounts for listing.
type AccountQuery struct {
	Domain string // "" = all
	Search string // substring of address or display name
	Offset int
	Limit  int // 0 = all
}

// Accounts lists accounts in address order, and the total that matched.
func (s *Store) Accounts(q AccountQuery) ([]Account, int, error) {
	var out []Account
	total := 0
	search := strings.ToLower(q.Search)
	err := s.fsm.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktAccounts)
		return b.ForEach(func(k, v []byte) error {
			if q.Domain != "" && domainOf(string(k)) != strings.ToLower(q.Domain) {
				return nil
			}
			var r accountRec
			if _, err := getJSON(b, k, &r); err != nil {
				return err
			}
			if search != "" && !strings.Contains(r.Address, search) && !strings.Contains(strings.ToLower(r.DisplayName), search) {
				return nil
			}
			total++
			if total <= q.Offset || (q.Limit > 0 && len(out) >= q.Limit) {
				return nil
			}
			out = append(out, accountFromRec(r))
			return nil
		})
	})
	return out, total, err
}

// ---- aliases ----

// AddAlias makes alias deliver to targets (added to any existing targets).
func (s *Store) AddAlias(ctx context.Context, alias string, targets ...string) error {
	a, err := NormalizeAddress(alias)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		return fmt.Errorf("alias %s: no target", a)
	}
	norm := make([]string, 0, len(targets))
	for _, t := range targets {
		nt, err := NormalizeAddress(t)
		if err != nil {
			return fmt.Errorf("alias %s: target: %w", a, err)
		}
		norm = append(norm, nt)
	}
	_, err = s.apply(ctx, CmdAddAlias, addAliasCmd{Address: a, Targets: norm})
	return err
}

// DeleteAlias removes an alias.
func (s *Store) DeleteAlias(ctx context.Context, alias string) error {
	a, err := NormalizeAddress(alias)
	if err != nil {
		return err
	}
	_, err = s.apply(ctx, CmdDelAlias, delAliasCmd{Address: a})
	return err
}

// Aliases lists aliases, optionally of one domain.
func (s *Store) Aliases(domain string) ([]Alias, error) {
	var out []Alias
	err := s.fsm.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bktAliases)
		return b.ForEach(func(k, v []byte) error {
			if domain != "" && domainOf(string(k)) != strings.ToLower(domain) {
				return nil
			}
			var r aliasRec
			if _, err := getJSON(b, k, &r); err != nil {
				return err
			}
			out = append(out, Alias{Address: r.Address, Targets: r.Targets})
			return nil
		})
	})
	return out, err
}

// maxAliasDepth bounds alias chains (an alias may point at another alias).
const maxAliasDepth = 8

// ResolveRecipient maps an envelope recipient to local account IDs:
// an account, an alias (expanded, possibly through other aliases), a
// sub-address user+tag, or the domain's catch-all.
func (s *Store) ResolveRecipient(address string) ([]uint64, error) {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return nil, err
	}
	var ids []uint64
	err = s.fsm.view(func(tx *bolt.Tx) error {
		dom := domainOf(addr)
		var d domainRec
		ok, err := getJSON(tx.Bucket(bktDomains), []byte(dom), &d)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotLocal
		}
		seen := map[string]bool{}
		var walk func(a string, depth int) bool
		walk = func(a string, depth int) bool {
			if depth > maxAliasDepth || seen[a] {
				return false
			}
			seen[a] = true
			var acc accountRec
			if ok, _ := getJSON(tx.Bucket(bktAccounts), []byte(a), &acc); ok {
				ids = append(ids, acc.ID)
				return true
			}
			var al aliasRec
			if ok, _ := getJSON(tx.Bucket(bktAliases), []byte(a), &al); ok {
				found := false
				for _, t := range al.Targets {
					if walk(t, depth+1) {
						found = true
					}
				}
				return found
			}
			return false
		}
		if walk(addr, 0) {
			return nil
		}
		// RFC 5233 sub-addressing: user+tag@domain.
		if local, _, _ := strings.Cut(addr, "@"); strings.Contains(local, "+") {
			base, _, _ := strings.Cut(local, "+")
			if base != "" && walk(base+"@"+dom, 0) {
				return nil
			}
		}
		if d.CatchAll != "" && walk(d.CatchAll, 0) {
			return nil
		}
		return ErrUnknownRecipient
	})
	if err != nil {
		return nil, fmt.Errorf("recipient %s: %w", addr, err)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	out := ids[:0]
	for i, id := range ids {
		if i == 0 || id != ids[i-1] {
			out = append(out, id)
		}
	}
	return out, nil
}

// SenderAllowed reports whether the account may send as addr: its own
// address or an alias that delivers to it (RELIABILITY #21).
func (s *Store) SenderAllowed(accountID uint64, address string) bool {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return false
	}
	acct, err := s.AccountByID(accountID)
	if err != nil {
		return false
	}
	if acct.Address == addr {
		return true
	}
	var allowed bool
	_ = s.fsm.view(func(tx *bolt.Tx) error {
		var al aliasRec
		if ok, _ := getJSON(tx.Bucket(bktAliases), []byte(addr), &al); ok {
			for _, t := range al.Targets {
				if t == acct.Address {
					allowed = true
				}
			}
		}
		return nil
	})
	return allowed
}

// ---- mailboxes ----

// Mailboxes lists an account's mailboxes by name.
func (s *Store) Mailboxes(accountID uint64) ([]Mailbox, error) {
	var out []Mailbox
	err := s.fsm.view(func(tx *bolt.Tx) error {
		for _, r := range (applier{tx: tx}).mailboxesOf(accountID) {
			out = append(out, mailboxFromRec(r))
		}
		return nil
	})
	return out, err
}

// Mailbox finds a mailbox by name.
func (s *Store) Mailbox(accountID uint64, name string) (Mailbox, error) {
	name = CanonicalMailboxName(name)
	var out Mailbox
	err := s.fsm.view(func(tx *bolt.Tx) error {
		r, err := applier{tx: tx}.mailboxByName(accountID, name)
		out = mailboxFromRec(r)
		return err
	})
	return out, err
}

// MailboxByID finds a mailbox by ID.
func (s *Store) MailboxByID(id uint64) (Mailbox, error) {
	var out Mailbox
	err := s.fsm.view(func(tx *bolt.Tx) error {
		r, err := applier{tx: tx}.mailboxByID(id)
		out = mailboxFromRec(r)
		return err
	})
	return out, err
}

// CreateMailbox creates a mailbox and any missing parents.
func (s *Store) CreateMailbox(ctx context.Context, accountID uint64, name, specialUse string) (Mailbox, error) {
	name = CanonicalMailboxName(name)
	if err := CheckMailboxName(name); err != nil {
		return Mailbox{}, err
	}
	switch specialUse {
	case "", `\Archive`, `\Drafts`, `\Junk`, `\Sent`, `\Trash`, `\All`, `\Flagged`:
	default:
		return Mailbox{}, fmt.Errorf("special use %q: %w", specialUse, ErrBadMailboxName)
	}
	resp, err := s.apply(ctx, CmdCreateMailbox, createMailboxCmd{AccountID: accountID, Name: name,
		SpecialUse: specialUse, Now: s.nowNanos()})
	if err != nil {
		return Mailbox{}, err
	}
	return resp.(Mailbox), nil
}

// DeleteMailbox deletes a mailbox and its messages; its children stay.
func (s *Store) DeleteMailbox(ctx context.Context, accountID uint64, name string) error {
	_, err := s.apply(ctx, CmdDeleteMailbox, deleteMailboxCmd{AccountID: accountID, Name: CanonicalMailboxName(name)})
	return err
}

// RenameMailbox renames a mailbox with its children.
func (s *Store) RenameMailbox(ctx context.Context, accountID uint64, oldName, newName string) error {
	newName = CanonicalMailboxName(newName)
	if err := CheckMailboxName(newName); err != nil {
		return err
	}
	_, err := s.apply(ctx, CmdRenameMailbox, renameMailboxCmd{AccountID: accountID,
		Old: CanonicalMailboxName(oldName), New: newName, Now: s.nowNanos()})
	return err
}

// SetSubscribed changes a mailbox's subscription.
func (s *Store) SetSubscribed(ctx context.Context, accountID uint64, name string, subscribed bool) error {
	_, err := s.apply(ctx, CmdSubscribe, subscribeCmd{AccountID: accountID, Name: CanonicalMailboxName(name), On: subscribed})
	return err
}

// ---- messages ----

// Messages lists a mailbox's messages in UID order.
func (s *Store) Messages(mailboxID uint64) ([]Message, error) {
	var out []Message
	err := s.fsm.view(func(tx *bolt.Tx) error {
		a := applier{tx: tx}
		if _, err := a.mailboxByID(mailboxID); err != nil {
			return err
		}
		_, recs := a.messagesOf(mailboxID)
		out = make([]Message, len(recs))
		for i, r := range recs {
			out[i] = messageFromRec(mailboxID, r)
		}
		return nil
	})
	return out, err
}

// Message returns one message.
func (s *Store) Message(mailboxID uint64, uid uint32) (Message, error) {
	var out Message
	err := s.fsm.view(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bktMessages).Get(messageKey(mailboxID, uid))
		if raw == nil {
			return fmt.Errorf("message %d/%d: %w", mailboxID, uid, ErrNoMessage)
		}
		var r messageRec
		if err := decodeMessage(raw, &r); err != nil {
			return err
		}
		out = messageFromRec(mailboxID, r)
		return nil
	})
	return out, err
}

// OpenBlob opens a message's bytes.
func (s *Store) OpenBlob(sha string) (*os.File, error) { return s.blobs.Open(sha) }

// Blobs is the blob file store.
func (s *Store) Blobs() *BlobStore { return s.blobs }

// PutBlob stores a message body durably. Release the blob after Deliver.
func (s *Store) PutBlob(r io.Reader) (*Blob, error) { return s.blobs.Put(r) }

// canonicalFlags normalises system flags' case (RFC 9051 §2.3.2) and drops
// \Recent, which clients cannot set.
func canonicalFlags(flags []string) []string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if strings.HasPrefix(f, `\`) {
			switch strings.ToLower(f) {
			case `\seen`:
				f = `\Seen`
			case `\answered`:
				f = `\Answered`
			case `\flagged`:
				f = `\Flagged`
			case `\deleted`:
				f = `\Deleted`
			case `\draft`:
				f = `\Draft`
			case `\recent`:
				continue
			}
		}
		if f == "" || len(f) > 128 {
			continue
		}
		out = append(out, f)
	}
	sort.Strings(out)
	n := 0
	for i, f := range out {
		if i == 0 || f != out[n-1] {
			out[n] = f
			n++
		}
	}
	return out[:n]
}

// Deliver commits a stored blob into the INBOX of each account. The blob is
// durable before this is called; when it returns nil the delivery is
// committed (DESIGN §2 steps 3-4). Quota was checked by the caller at RCPT
// time: mail once accepted is never dropped for quota.
func (s *Store) Deliver(ctx context.Context, b *Blob, accountIDs []uint64, internalDate time.Time) error {
	if len(accountIDs) == 0 {
		return errors.New("deliver: no recipients")
	}
	if err := s.replicate(ctx, b); err != nil {
		return err
	}
	targets := make([]deliverTarget, len(accountIDs))
	for i, id := range accountIDs {
		targets[i] = deliverTarget{AccountID: id}
	}
	_, err := s.apply(ctx, CmdDeliver, deliverCmd{Blob: b.SHA, Size: b.Size,
		Date: internalDate.UnixNano(), Targets: targets})
	if err != nil {
		return fmt.Errorf("deliver %s: %w", b.SHA[:12], err)
	}
	return nil
}

// QuotaExceeded reports whether one more message of size bytes would put
// the account over its quota.
func (s *Store) QuotaExceeded(accountID uint64, size int64) bool {
	acct, err := s.AccountByID(accountID)
	if err != nil {
		return false
	}
	return acct.QuotaBytes > 0 && acct.UsedBytes+size > acct.QuotaBytes
}

// Append stores a message into a mailbox (IMAP APPEND).
func (s *Store) Append(ctx context.Context, accountID uint64, mailbox string, body io.Reader, flags []string, date time.Time) (Message, uint32, error) {
	mb, err := s.Mailbox(accountID, mailbox)
	if err != nil {
		return Message{}, 0, err
	}
	if s.SpaceLow(0) {
		return Message{}, 0, ErrNoSpace
	}
	b, err := s.PutBlob(body)
	if err != nil {
		return Message{}, 0, err
	}
	defer b.Release()
	if err := s.replicate(ctx, b); err != nil {
		return Message{}, 0, err
	}
	if date.IsZero() {
		date = s.now()
	}
	resp, err := s.apply(ctx, CmdDeliver, deliverCmd{Blob: b.SHA, Size: b.Size, Date: date.UnixNano(),
		Flags: canonicalFlags(flags), Targets: []deliverTarget{{MailboxID: mb.ID}}, EnforceQuota: true})
	if err != nil {
		return Message{}, 0, fmt.Errorf("append to %s: %w", mailbox, err)
	}
	r := resp.(deliverResult)
	return r.Messages[0], r.UIDValidity[0], nil
}

// StoreFlags changes flags; see the storage contract.
func (s *Store) StoreFlags(ctx context.Context, mailboxID uint64, uids []uint32, op FlagOp, flags []string, unchangedSince uint64) ([]Message, []uint32, error) {
	if len(uids) == 0 {
		return nil, nil, nil
	}
	resp, err := s.apply(ctx, CmdStoreFlags, storeFlagsCmd{MailboxID: mailboxID, UIDs: uids, Op: op,
		Flags: canonicalFlags(flags), UnchangedSince: unchangedSince})
	if err != nil {
		return nil, nil, err
	}
	r := resp.(storeResult)
	return r.Changed, r.Failed, nil
}

// Copy copies messages to another mailbox of the same account.
func (s *Store) Copy(ctx context.Context, src uint64, uids []uint32, dst uint64) ([]uint32, []uint32, uint32, error) {
	return s.copyOrMove(ctx, src, uids, dst, false)
}

// Move moves messages atomically (RFC 6851).
func (s *Store) Move(ctx context.Context, src uint64, uids []uint32, dst uint64) ([]uint32, []uint32, uint32, error) {
	return s.copyOrMove(ctx, src, uids, dst, true)
}

func (s *Store) copyOrMove(ctx context.Context, src uint64, uids []uint32, dst uint64, move bool) ([]uint32, []uint32, uint32, error) {
	resp, err := s.apply(ctx, CmdCopy, copyCmd{Src: src, UIDs: uids, Dst: dst, Move: move})
	if err != nil {
		return nil, nil, 0, err
	}
	r := resp.(copyResult)
	return r.Src, r.Dst, r.UIDValidity, nil
}

// Expunge removes messages; see the storage contract.
func (s *Store) Expunge(ctx context.Context, mailboxID uint64, uids []uint32, onlyDeleted bool) ([]uint32, error) {
	if uids != nil && len(uids) == 0 {
		return nil, nil
	}
	resp, err := s.apply(ctx, CmdExpunge, expungeCmd{MailboxID: mailboxID, UIDs: uids, OnlyDeleted: onlyDeleted})
	if err != nil {
		return nil, err
	}
	out, _ := resp.([]uint32)
	return out, nil
}

// Watch subscribes to changes of an account's mailboxes; the channel gets
// mailbox IDs (0: anything may have changed, re-read all).
func (s *Store) Watch(accountID uint64) (<-chan uint64, func()) {
	return s.fsm.hub.watch(accountID)
}

// Target names where DeliverTo puts one account's copy of a message.
type Target struct {
	AccountID uint64
	// Mailbox is the mailbox name; "" means INBOX. A missing mailbox is
	// created first, with SpecialUse (RFC 6154, e.g. `\Junk`) if set.
	Mailbox    string
	SpecialUse string
}

// DeliverTo is Deliver into named mailboxes (spam to Junk, held mail to a
// quarantine mailbox). It resolves the names to mailbox IDs, creating
// missing ones, and commits one deliver command for all targets, so the
// delivery stays atomic. Like Deliver, it never rejects for quota.
func (s *Store) DeliverTo(ctx context.Context, b *Blob, targets []Target, internalDate time.Time) error {
	if len(targets) == 0 {
		return errors.New("deliver: no recipients")
	}
	if err := s.replicate(ctx, b); err != nil {
		return err
	}
	var err error
	// A mailbox may vanish between resolving and committing (a user
	// deletes Junk): resolve again once.
	for attempt := 0; attempt < 2; attempt++ {
		var dt []deliverTarget
		dt, err = s.resolveTargets(ctx, targets)
		if err != nil {
			return fmt.Errorf("deliver %s: %w", b.SHA[:12], err)
		}
		_, err = s.apply(ctx, CmdDeliver, deliverCmd{Blob: b.SHA, Size: b.Size,
			Date: internalDate.UnixNano(), Targets: dt})
		if !errors.Is(err, ErrNoMailbox) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("deliver %s: %w", b.SHA[:12], err)
	}
	return nil
}

func (s *Store) resolveTargets(ctx context.Context, targets []Target) ([]deliverTarget, error) {
	out := make([]deliverTarget, len(targets))
	for i, t := range targets {
		if t.Mailbox == "" || CanonicalMailboxName(t.Mailbox) == "INBOX" {
			out[i] = deliverTarget{AccountID: t.AccountID}
			continue
		}
		mb, err := s.ensureMailbox(ctx, t.AccountID, t.Mailbox, t.SpecialUse)
		if err != nil {
			return nil, err
		}
		out[i] = deliverTarget{MailboxID: mb.ID}
	}
	return out, nil
}

// ensureMailbox finds or creates a mailbox. A mailbox created through
// another node may not have reached this node's state yet: wait briefly.
func (s *Store) ensureMailbox(ctx context.Context, accountID uint64, name, specialUse string) (Mailbox, error) {
	mb, err := s.Mailbox(accountID, name)
	if err == nil {
		return mb, nil
	}
	if !errors.Is(err, ErrNoMailbox) {
		return Mailbox{}, err
	}
	mb, err = s.CreateMailbox(ctx, accountID, name, specialUse)
	if err == nil {
		return mb, nil
	}
	if !errors.Is(err, ErrMailboxExists) {
		return Mailbox{}, fmt.Errorf("create mailbox %q: %w", name, err)
	}
	for i := 0; i < 50; i++ {
		if mb, err = s.Mailbox(accountID, name); err == nil {
			return mb, nil
		}
		select {
		case <-ctx.Done():
			return Mailbox{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return Mailbox{}, fmt.Errorf("mailbox %q: %w", name, err)
}

// QuarantineMailbox is the per-account mailbox that holds quarantined mail
// (SPEC F2). Keeping held mail in a mailbox keeps its blob referenced, so
// the blob sweeper never removes it; IMAP neither lists nor opens it
// (ReservedMailbox), and mail leaves it only by release or deletion.
const QuarantineMailbox = "#quarantine"

// ReservedMailbox reports whether a canonical mailbox name belongs to the
// server and is hidden from mail clients.
func ReservedMailbox(name string) bool { return strings.EqualFold(name, QuarantineMailbox) }

// ---- settings export and import (webui/settings.go) ----

// checkBcrypt accepts only a well-formed bcrypt hash ("" too: no hash given).
func checkBcrypt(h string) error {
	if h == "" {
		return nil
	}
	if _, err := bcrypt.Cost([]byte(h)); err != nil {
		return fmt.Errorf("password hash: not a bcrypt hash: %w", err)
	}
	return nil
}

// PasswordHash is an account's bcrypt hash, for a settings export.
func (s *Store) PasswordHash(address string) (string, error) {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return "", err
	}
	var h string
	err = s.fsm.view(func(tx *bolt.Tx) error {
		rec, err := applier{tx: tx}.account(addr)
		h = rec.Hash
		return err
	})
	return h, err
}

// SetPasswordHash replaces an account's password with a bcrypt hash made
// elsewhere (a settings import).
func (s *Store) SetPasswordHash(ctx context.Context, address, hash string) error {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return err
	}
	if hash == "" {
		return fmt.Errorf("account %s: empty password hash", addr)
	}
	if err := checkBcrypt(hash); err != nil {
		return fmt.Errorf("account %s: %w", addr, err)
	}
	if _, err := s.AccountByAddress(addr); err != nil {
		return err
	}
	_, err = s.apply(ctx, CmdSetPassword, setPasswordCmd{Address: addr, Hash: hash})
	return err
}

// KVNamespaces lists the KV namespaces that exist, in name order.
func (s *Store) KVNamespaces() ([]string, error) {
	var out []string
	err := s.fsm.db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(bktKV)
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(k []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("kv namespaces: %w", err)
	}
	return out, nil
}
