package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// The KV store is the replicated home of every feature's own state that is
// not mail: DNS zones, DKIM keys, filter settings and lists, firewall
// blocks, learned spam tokens, quarantine records, web settings. Each
// feature owns a namespace (a dotted name such as "dns.zones") and keeps
// JSON documents or counters under its keys. Writes are batches of KVOps
// applied atomically through the Raft log like every other command, so a
// failover keeps them and a follower forwards them to the leader.
//
// Every stored value carries its version: the Raft index of the entry that
// last wrote it. A put or delete with IfVersion set applies only when the
// key's version matches (0: the key must not exist), which makes
// read-modify-write safe between nodes and goroutines (ErrKVConflict).

// KV operation kinds.
const (
	KVPut          = "put"           // Value replaces the key's value
	KVDelete       = "delete"        // removes the key (no error when absent)
	KVAdd          = "add"           // adds Delta to the key's int64 counter (created at 0); a counter reaching 0 or less is removed
	KVDeletePrefix = "delete_prefix" // removes every key of NS starting with Key
)

// KV limits: a batch is one Raft entry, so it must stay small enough to
// replicate quickly (raft's own advice: entries well under a few MiB).
const (
	MaxKVKey       = 512
	MaxKVValue     = 1 << 20
	MaxKVBatchOps  = 20000
	MaxKVBatchSize = 8 << 20
)

// ErrKVConflict: an IfVersion condition did not hold; nothing in the batch
// was applied.
var ErrKVConflict = errors.New("kv: version conflict")

// KVOp is one operation of an atomic batch.
type KVOp struct {
	Op        string  `json:"op"`
	NS        string  `json:"ns"`
	Key       string  `json:"key"`
	Value     []byte  `json:"value,omitempty"`
	Delta     int64   `json:"delta,omitempty"`
	IfVersion *uint64 `json:"if_version,omitempty"`
}

// Version returns a pointer for KVOp.IfVersion.
func Version(v uint64) *uint64 { return &v }

type kvBatchCmd struct {
	Ops []KVOp `json:"ops"`
}

var (
	bktKV    = []byte("kv")     // ns → nested bucket: key → version(8) + value
	bktKVRev = []byte("kv_rev") // ns → index of the last change
)

func checkKVNamespace(ns string) error {
	if ns == "" || len(ns) > 64 {
		return fmt.Errorf("kv namespace %q: must be 1-64 characters", ns)
	}
	for _, r := range ns {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("kv namespace %q: only a-z, 0-9, '.', '_' and '-'", ns)
		}
	}
	return nil
}

func (op *KVOp) check() error {
	if err := checkKVNamespace(op.NS); err != nil {
		return err
	}
	if len(op.Key) > MaxKVKey || (op.Key == "" && op.Op != KVDeletePrefix) {
		return fmt.Errorf("kv key in %s: must be 1-%d bytes", op.NS, MaxKVKey)
	}
	switch op.Op {
	case KVPut:
		if len(op.Value) > MaxKVValue {
			return fmt.Errorf("kv value %s/%s: %d bytes, at most %d", op.NS, op.Key, len(op.Value), MaxKVValue)
		}
	case KVDelete:
	case KVAdd, KVDeletePrefix:
		if op.IfVersion != nil {
			return fmt.Errorf("kv %s on %s/%s: IfVersion not allowed", op.Op, op.NS, op.Key)
		}
	default:
		return fmt.Errorf("kv: unknown operation %q", op.Op)
	}
	return nil
}

// KVApply commits ops atomically: all of them or, on an error or a version
// conflict, none.
func (s *Store) KVApply(ctx context.Context, ops ...KVOp) error {
	if len(ops) == 0 {
		return nil
	}
	if len(ops) > MaxKVBatchOps {
		return fmt.Errorf("kv batch of %d operations: at most %d", len(ops), MaxKVBatchOps)
	}
	size := 0
	for i := range ops {
		if err := ops[i].check(); err != nil {
			return err
		}
		size += len(ops[i].Key) + len(ops[i].Value) + 64
	}
	if size > MaxKVBatchSize {
		return fmt.Errorf("kv batch of %d bytes: at most %d", size, MaxKVBatchSize)
	}
	_, err := s.apply(ctx, CmdKVBatch, kvBatchCmd{Ops: ops})
	return err
}

// KVPutValue is KVApply of one put.
func (s *Store) KVPutValue(ctx context.Context, ns, key string, value []byte) error {
	return s.KVApply(ctx, KVOp{Op: KVPut, NS: ns, Key: key, Value: value})
}

// KVDeleteKey is KVApply of one delete.
func (s *Store) KVDeleteKey(ctx context.Context, ns, key string) error {
	return s.KVApply(ctx, KVOp{Op: KVDelete, NS: ns, Key: key})
}

// KVGet reads one key from this node's state (which may lag the leader by
// the replication delay).
func (s *Store) KVGet(ns, key string) (value []byte, version uint64, ok bool, err error) {
	err = s.fsm.db.View(func(tx *bolt.Tx) error {
		b := kvBucket(tx, ns)
		if b == nil {
			return nil
		}
		raw := b.Get([]byte(key))
		if raw == nil {
			return nil
		}
		version, value, ok = binary.BigEndian.Uint64(raw[:8]), append([]byte(nil), raw[8:]...), true
		return nil
	})
	if err != nil {
		return nil, 0, false, fmt.Errorf("kv get %s/%s: %w", ns, key, err)
	}
	return value, version, ok, nil
}

// KVCounter reads a counter written by KVAdd (0 when absent).
func (s *Store) KVCounter(ns, key string) int64 {
	v, _, ok, err := s.KVGet(ns, key)
	if err != nil || !ok || len(v) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v))
}

// KVList calls fn for every key of ns starting with prefix, in key order,
// inside one read transaction (fn must not write to the store; the value is
// only valid during the call). fn returning an error stops the walk.
func (s *Store) KVList(ns, prefix string, fn func(key string, value []byte, version uint64) error) error {
	err := s.fsm.db.View(func(tx *bolt.Tx) error {
		b := kvBucket(tx, ns)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && strings.HasPrefix(string(k), prefix); k, v = c.Next() {
			if err := fn(string(k), v[8:], binary.BigEndian.Uint64(v[:8])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("kv list %s/%s: %w", ns, prefix, err)
	}
	return nil
}

// KVRevision is the Raft index of the last change to ns (0: never written).
// Readers that cache a namespace poll it to know when to reload.
func (s *Store) KVRevision(ns string) uint64 {
	var rev uint64
	s.fsm.db.View(func(tx *bolt.Tx) error {
		rev = getU64(tx.Bucket(bktKVRev), []byte(ns))
		return nil
	})
	return rev
}

func kvBucket(tx *bolt.Tx, ns string) *bolt.Bucket {
	root := tx.Bucket(bktKV)
	if root == nil {
		return nil
	}
	return root.Bucket([]byte(ns))
}

// kvBatch applies a batch at Raft index idx. It checks every condition
// before it writes, so a conflict leaves the shared transaction untouched.
func (a applier) kvBatch(c kvBatchCmd, idx uint64) any {
	root := a.b(bktKV)
	for i := range c.Ops {
		op := &c.Ops[i]
		if err := op.check(); err != nil {
			return err // a leader of another version wrote what this one refuses: refuse on every node alike
		}
		if op.IfVersion == nil {
			continue
		}
		var cur uint64
		if b := root.Bucket([]byte(op.NS)); b != nil {
			if raw := b.Get([]byte(op.Key)); raw != nil {
				cur = binary.BigEndian.Uint64(raw[:8])
			}
		}
		if cur != *op.IfVersion {
			return fmt.Errorf("%s/%s is at version %d, not %d: %w", op.NS, op.Key, cur, *op.IfVersion, ErrKVConflict)
		}
	}
	rev := a.b(bktKVRev)
	for i := range c.Ops {
		op := &c.Ops[i]
		b, err := root.CreateBucketIfNotExists([]byte(op.NS))
		if err != nil {
			panic(fmt.Sprintf("storage: kv bucket %s: %v", op.NS, err))
		}
		key := []byte(op.Key)
		switch op.Op {
		case KVPut:
			err = b.Put(key, kvRecord(idx, op.Value))
		case KVDelete:
			err = b.Delete(key)
		case KVAdd:
			var n int64
			if raw := b.Get(key); len(raw) == 16 {
				n = int64(binary.BigEndian.Uint64(raw[8:]))
			}
			n += op.Delta
			if n <= 0 {
				err = b.Delete(key)
			} else {
				var v [8]byte
				binary.BigEndian.PutUint64(v[:], uint64(n))
				err = b.Put(key, kvRecord(idx, v[:]))
			}
		case KVDeletePrefix:
			var keys [][]byte
			c := b.Cursor()
			for k, _ := c.Seek(key); k != nil && strings.HasPrefix(string(k), op.Key); k, _ = c.Next() {
				keys = append(keys, append([]byte(nil), k...))
			}
			for _, k := range keys {
				if err = b.Delete(k); err != nil {
					break
				}
			}
		}
		if err == nil {
			err = putU64(rev, []byte(op.NS), idx)
		}
		if err != nil {
			panic(fmt.Sprintf("storage: kv %s %s/%s: %v", op.Op, op.NS, op.Key, err))
		}
	}
	return nil
}

func kvRecord(idx uint64, v []byte) []byte {
	rec := make([]byte, 8+len(v))
	binary.BigEndian.PutUint64(rec, idx)
	copy(rec[8:], v)
	return rec
}
