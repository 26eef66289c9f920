// Package storetest starts a real single-node Raft store for tests of the
// packages built on storage.
package storetest

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandemmail/tandem/cluster"
	"github.com/tandemmail/tandem/storage"
	"golang.org/x/crypto/bcrypt"
)

// Env is a running store with its parts, for tests that restart or snapshot.
type Env struct {
	Dir   string
	FSM   *storage.FSM
	Blobs *storage.BlobStore
	Raft  *cluster.Node
	Store *storage.Store
	Repl  *storage.BlobReplicator
}

// Open starts (or restarts) a single-node store in dir.
func Open(tb testing.TB, dir string) *Env {
	tb.Helper()
	return OpenNode(tb, NodeOptions{Dir: dir, ID: "test"})
}

// NodeOptions describe one member of a test cluster.
type NodeOptions struct {
	Dir      string
	ID       string
	Bind     string // cluster address; "" = in-process single node
	Join     string
	Secret   []byte
	NoLeader bool // do not wait for this node to lead
}

// Secret is a cluster secret for tests.
var Secret = []byte("storetest-cluster-secret-0123456")

// OpenNode starts a store that may be part of a cluster.
func OpenNode(tb testing.TB, o NodeOptions) *Env {
	tb.Helper()
	dir := o.Dir
	if o.Secret == nil {
		o.Secret = Secret
	}
	log := slog.New(slog.DiscardHandler)
	fsm, err := storage.OpenFSM(filepath.Join(dir, "state.db"), log)
	if err != nil {
		tb.Fatal(err)
	}
	blobs, err := storage.OpenBlobStore(filepath.Join(dir, "blobs"), log)
	if err != nil {
		tb.Fatal(err)
	}
	node, err := cluster.Open(cluster.Config{NodeID: o.ID, Dir: filepath.Join(dir, "raft"), Logger: log,
		BindAddr: o.Bind, Secret: o.Secret, Join: o.Join}, fsm)
	if err != nil {
		tb.Fatal(err)
	}
	var repl *storage.BlobReplicator
	if o.Bind != "" {
		repl = storage.NewBlobReplicator(node, blobs, log)
	}
	if o.Join != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := node.Join(ctx, o.Join); err != nil {
			tb.Fatal(err)
		}
	}
	if !o.NoLeader && o.Join == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := node.WaitLeader(ctx); err != nil {
			tb.Fatal(err)
		}
		for !node.IsLeader() {
			time.Sleep(10 * time.Millisecond)
		}
	}
	scfg := storage.StoreConfig{FSM: fsm, Blobs: blobs, Raft: node, Logger: log,
		BcryptCost: bcrypt.MinCost, Replicator: repl}
	if o.Bind != "" {
		node.SetResponseCodec(storage.EncodeResponse)
		scfg.Forwarder = node
	}
	st := storage.NewStore(scfg)
	return &Env{Dir: dir, FSM: fsm, Blobs: blobs, Raft: node, Store: st, Repl: repl}
}

// Close stops the store (as a clean shutdown).
func (e *Env) Close() {
	if e.Repl != nil {
		e.Repl.Close()
	}
	e.Store.Close()
	e.Raft.Close()
	e.FSM.Close()
}

// New starts a store in a temporary folder, closed when the test ends.
func New(tb testing.TB) *storage.Store {
	tb.Helper()
	e := Open(tb, tb.TempDir())
	tb.Cleanup(e.Close)
	return e.Store
}

// AddAccount creates the address's domain if needed and the account.
func AddAccount(tb testing.TB, s *storage.Store, addr, password string) storage.Account {
	tb.Helper()
	ctx := context.Background()
	_, dom, ok := cut(addr)
	if !ok {
		tb.Fatalf("bad address %q", addr)
	}
	if !s.HasDomain(dom) {
		if err := s.AddDomain(ctx, dom); err != nil {
			tb.Fatal(err)
		}
	}
	a, err := s.AddAccount(ctx, storage.NewAccount{Address: addr, Password: password})
	if err != nil {
		tb.Fatal(fmt.Errorf("add account %s: %w", addr, err))
	}
	return a
}

func cut(addr string) (string, string, bool) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == '@' {
			return addr[:i], addr[i+1:], true
		}
	}
	return "", "", false
}
