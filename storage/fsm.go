package storage

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// FSM is the replicated state machine: every durable change of mail state is
// a command in the Raft log, applied here into bbolt (DESIGN §1).
//
// Apply is deterministic: it reads only the command and the current state.
// The state file is persistent and records the last applied log index in the
// same transaction as the changes, so entries that Raft replays after a
// restart are skipped instead of applied twice.
type FSM struct {
	path string
	log  *slog.Logger

	mu sync.RWMutex // write-locked only while Restore swaps the file
	db *bolt.DB

	hub     *watchHub
	unrefMu sync.Mutex
	unref   func(sha string) // called after commit for blobs whose last reference went
	ref     func(sha string) // called after commit for blobs that gained their first reference
}

// OpenFSM opens (or creates) the state file.
func OpenFSM(path string, log *slog.Logger) (*FSM, error) {
	if log == nil {
		log = slog.Default()
	}
	f := &FSM{path: path, log: log, hub: newWatchHub()}
	db, err := openStateDB(path)
	if err != nil {
		return nil, err
	}
	f.db = db
	return f, nil
}

func openStateDB(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bktMeta)
		if v := getU64(meta, keySchema); v == 0 {
			return putU64(meta, keySchema, schemaVersion)
		} else if v > schemaVersion {
			return fmt.Errorf("state schema %d is newer than this binary (%d)", v, schemaVersion)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init state %s: %w", path, err)
	}
	return db, nil
}

// Close closes the state file.
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hub.closeAll()
	return f.db.Close()
}

// OnBlobUnreferenced registers the function told about blobs whose last
// reference was dropped (after the commit that dropped it).
func (f *FSM) OnBlobUnreferenced(fn func(sha string)) {
	f.unrefMu.Lock()
	f.unref = fn
	f.unrefMu.Unlock()
}

// OnBlobReferenced registers the function told about blobs that gained
// their first reference (a follower fetches those it lacks).
func (f *FSM) OnBlobReferenced(fn func(sha string)) {
	f.unrefMu.Lock()
	f.ref = fn
	f.unrefMu.Unlock()
}

// AppliedIndex is the last Raft index reflected in the state.
func (f *FSM) AppliedIndex() uint64 {
	var idx uint64
	_ = f.view(func(tx *bolt.Tx) error {
		idx = getU64(tx.Bucket(bktMeta), keyApplied)
		return nil
	})
	return idx
}

func (f *FSM) view(fn func(tx *bolt.Tx) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.db.View(fn)
}

// changeSet collects what a batch touched, for notifications after commit.
type changeSet struct {
	mailboxes map[uint64]map[uint64]struct{} // account → mailbox IDs
	unref     []string
	ref       []string // blobs whose first reference was added
}

func (c *changeSet) touch(accountID, mailboxID uint64) {
	if c.mailboxes == nil {
		c.mailboxes = map[uint64]map[uint64]struct{}{}
	}
	m := c.mailboxes[accountID]
	if m == nil {
		m = map[uint64]struct{}{}
		c.mailboxes[accountID] = m
	}
	m[mailboxID] = struct{}{}
}

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM: a whole batch of committed entries
// is applied in one bbolt transaction (one fsync), which is what turns many
// concurrent deliveries into few disk flushes (DESIGN §1, group commit).
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	results := make([]any, len(logs))
	var changes changeSet
	f.mu.RLock()
	err := f.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bktMeta)
		applied := getU64(meta, keyApplied)
		last := applied
		for i, l := range logs {
			if l.Index <= applied {
				continue // replayed after restart: already in the state
			}
			last = l.Index
			if l.Type != raft.LogCommand {
				continue
			}
			results[i] = f.applyCommand(tx, l.Index, l.Data, &changes)
		}
		if last != applied {
			return putU64(meta, keyApplied, last)
		}
		return nil
	})
	f.mu.RUnlock()
	if err != nil {
		// The state file cannot be written: continuing would let this node
		// diverge from the log. Stop the process; Raft replays on restart.
		panic(fmt.Sprintf("storage: commit FSM batch: %v", err))
	}
	for acct, mbs := range changes.mailboxes {
		for mb := range mbs {
			f.hub.notify(acct, mb)
		}
	}
	if len(changes.unref) > 0 || len(changes.ref) > 0 {
		f.unrefMu.Lock()
		unref, ref := f.unref, f.ref
		f.unrefMu.Unlock()
		if unref != nil {
			for _, sha := range changes.unref {
				unref(sha)
			}
		}
		if ref != nil {
			for _, sha := range changes.ref {
				ref(sha)
			}
		}
	}
	return results
}

// applyCommand decodes one entry and runs its apply function. An application
// error (no such mailbox, ...) is returned as the entry's value. Every apply
// function checks everything before it writes, so a failed command leaves no
// partial change in the shared batch transaction. An entry that cannot be
// decoded means this binary cannot follow the log: panic (consul/nomad).
func (f *FSM) applyCommand(tx *bolt.Tx, index uint64, data []byte, ch *changeSet) any {
	if len(data) < 2 {
		panic(fmt.Sprintf("storage: short command (%d bytes)", len(data)))
	}
	t, ver, payload := CommandType(data[0]), data[1], data[2:]
	if ver != commandVersion {
		panic(fmt.Sprintf("storage: %s version %d not supported", t, ver))
	}
	dec := func(v any) {
		if err := json.Unmarshal(payload, v); err != nil {
			panic(fmt.Sprintf("storage: decode %s: %v", t, err))
		}
	}
	a := applier{tx: tx, ch: ch}
	switch t {
	case CmdAddDomain:
		var c addDomainCmd
		dec(&c)
		return a.addDomain(c)
	case CmdDelDomain:
		var c delDomainCmd
		dec(&c)
		return a.delDomain(c)
	case CmdSetCatchAll:
		var c setCatchAllCmd
		dec(&c)
		return a.setCatchAll(c)
	case CmdAddAccount:
		var c addAccountCmd
		dec(&c)
		return a.addAccount(c)
	case CmdDelAccount:
		var c delAccountCmd
		dec(&c)
		return a.delAccount(c)
	case CmdSetPassword:
		var c setPasswordCmd
		dec(&c)
		return a.setPassword(c)
	case CmdUpdateAccount:
		var c updateAccountCmd
		dec(&c)
		return a.updateAccount(c)
	case CmdAddAlias:
		var c addAliasCmd
		dec(&c)
		return a.addAlias(c)
	case CmdDelAlias:
		var c delAliasCmd
		dec(&c)
		return a.delAlias(c)
	case CmdCreateMailbox:
		var c createMailboxCmd
		dec(&c)
		return a.createMailbox(c)
	case CmdDeleteMailbox:
		var c deleteMailboxCmd
		dec(&c)
		return a.deleteMailbox(c)
	case CmdRenameMailbox:
		var c renameMailboxCmd
		dec(&c)
		return a.renameMailbox(c)
	case CmdSubscribe:
		var c subscribeCmd
		dec(&c)
		return a.subscribe(c)
	case CmdDeliver:
		var c deliverCmd
		dec(&c)
		return a.deliver(c)
	case CmdStoreFlags:
		var c storeFlagsCmd
		dec(&c)
		return a.storeFlags(c)
	case CmdCopy:
		var c copyCmd
		dec(&c)
		return a.copy(c)
	case CmdExpunge:
		var c expungeCmd
		dec(&c)
		return a.expunge(c)
	case CmdEnqueue:
		var c enqueueCmd
		dec(&c)
		return a.enqueue(c)
	case CmdQueueAttempt:
		var c queueAttemptCmd
		dec(&c)
		return a.queueAttempt(c)
	case CmdQueueDelete:
		var c queueDeleteCmd
		dec(&c)
		return a.queueDelete(c)
	case CmdQueueReschedule:
		var c queueRescheduleCmd
		dec(&c)
		return a.queueReschedule(c)
	case CmdLogAppend:
		var c logAppendCmd
		dec(&c)
		return a.logAppend(c)
	case CmdLogPrune:
		var c logPruneCmd
		dec(&c)
		return a.logPrune(c)
	case CmdTranscript:
		var c transcriptCmd
		dec(&c)
		return a.saveTranscript(c)
	case CmdKVBatch:
		var c kvBatchCmd
		dec(&c)
		return a.kvBatch(c, index)
	default:
		panic(fmt.Sprintf("storage: unknown command type %d", t))
	}
}

// Snapshot implements raft.FSM: a read transaction pins a consistent view
// that Persist streams out as a bbolt file while applies go on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	tx, err := f.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("begin snapshot: %w", err)
	}
	return &fsmSnapshot{tx: tx}, nil
}

type fsmSnapshot struct {
	tx   *bolt.Tx
	once sync.Once
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	defer s.Release()
	if _, err := s.tx.WriteTo(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {
	s.once.Do(func() { _ = s.tx.Rollback() })
}

// Restore implements raft.FSM: the snapshot is a whole bbolt file; it
// replaces the state file atomically.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp := f.path + ".restore"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("restore: create %s: %w", tmp, err)
	}
	if _, err := io.Copy(out, rc); err != nil {
		out.Close()
		os.Remove(tmp)
		return fmt.Errorf("restore: copy snapshot: %w", err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		os.Remove(tmp)
		return fmt.Errorf("restore: fsync: %w", err)
	}
	out.Close()
	// Check the file opens before swapping it in.
	check, err := openStateDB(tmp)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("restore: snapshot is not a valid state file: %w", err)
	}
	check.Close()

	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.db.Close(); err != nil {
		return fmt.Errorf("restore: close state: %w", err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return fmt.Errorf("restore: rename: %w", err)
	}
	if err := syncDir(dirOf(f.path)); err != nil {
		return err
	}
	db, err := openStateDB(f.path)
	if err != nil {
		return err
	}
	f.db = db
	f.hub.notifyAll()
	return nil
}

func dirOf(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			return path[:i]
		}
	}
	return "."
}

// ReferencedBlobs calls fn for every blob the state references.
func (f *FSM) ReferencedBlobs(fn func(sha string)) error {
	return f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bktBlobs).ForEach(func(k, _ []byte) error {
			fn(string(k))
			return nil
		})
	})
}

// blobReferenced reports whether the FSM holds a reference to sha.
func (f *FSM) blobReferenced(sha string) bool {
	var ok bool
	_ = f.view(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bktBlobs).Get([]byte(sha)) != nil
		return nil
	})
	return ok
}
