package storage_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

func TestKV(t *testing.T) {
	dir := t.TempDir()
	env := storetest.Open(t, dir)
	s := env.Store

	if err := s.KVPutValue(ctx, "dns.zones", "example.com", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	v, ver, ok, err := s.KVGet("dns.zones", "example.com")
	if err != nil || !ok || string(v) != `{"a":1}` || ver == 0 {
		t.Fatalf("get = %q %d %v %v", v, ver, ok, err)
	}
	rev := s.KVRevision("dns.zones")
	if rev != ver {
		t.Fatalf("revision %d, version %d", rev, ver)
	}

	// A stale conditional write conflicts and changes nothing, including the
	// other operations of its batch.
	err = s.KVApply(ctx,
		storage.KVOp{Op: storage.KVPut, NS: "dns.zones", Key: "other.com", Value: []byte("x")},
		storage.KVOp{Op: storage.KVPut, NS: "dns.zones", Key: "example.com", Value: []byte("y"), IfVersion: storage.Version(ver - 1)})
	if !errors.Is(err, storage.ErrKVConflict) {
		t.Fatalf("stale write: %v", err)
	}
	if _, _, ok, _ := s.KVGet("dns.zones", "other.com"); ok {
		t.Fatal("conflicting batch applied in part")
	}
	if err := s.KVApply(ctx, storage.KVOp{Op: storage.KVPut, NS: "dns.zones", Key: "example.com", Value: []byte("y"), IfVersion: storage.Version(ver)}); err != nil {
		t.Fatal(err)
	}
	if err := s.KVApply(ctx, storage.KVOp{Op: storage.KVPut, NS: "dns.zones", Key: "new.com", Value: []byte("n"), IfVersion: storage.Version(0)}); err != nil {
		t.Fatal(err)
	}
	if err := s.KVApply(ctx, storage.KVOp{Op: storage.KVPut, NS: "dns.zones", Key: "new.com", Value: []byte("n"), IfVersion: storage.Version(0)}); !errors.Is(err, storage.ErrKVConflict) {
		t.Fatalf("create of an existing key: %v", err)
	}

	// Counters.
	for i := 0; i < 3; i++ {
		if err := s.KVApply(ctx, storage.KVOp{Op: storage.KVAdd, NS: "spam.tokens", Key: "s:viagra", Delta: 2}); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.KVCounter("spam.tokens", "s:viagra"); n != 6 {
		t.Fatalf("counter = %d", n)
	}
	s.KVApply(ctx, storage.KVOp{Op: storage.KVAdd, NS: "spam.tokens", Key: "s:viagra", Delta: -10})
	if _, _, ok, _ := s.KVGet("spam.tokens", "s:viagra"); ok {
		t.Fatal("counter below zero kept")
	}

	// List and prefix delete.
	var ops []storage.KVOp
	for i := 0; i < 5; i++ {
		ops = append(ops, storage.KVOp{Op: storage.KVPut, NS: "fw.blocks", Key: fmt.Sprintf("ip:10.0.0.%d", i), Value: []byte("b")})
	}
	ops = append(ops, storage.KVOp{Op: storage.KVPut, NS: "fw.blocks", Key: "acct:a@b", Value: []byte("b")})
	if err := s.KVApply(ctx, ops...); err != nil {
		t.Fatal(err)
	}
	var keys []string
	s.KVList("fw.blocks", "ip:", func(k string, v []byte, _ uint64) error { keys = append(keys, k); return nil })
	if len(keys) != 5 || keys[0] != "ip:10.0.0.0" {
		t.Fatalf("list = %v", keys)
	}
	s.KVApply(ctx, storage.KVOp{Op: storage.KVDeletePrefix, NS: "fw.blocks", Key: "ip:"})
	keys = nil
	s.KVList("fw.blocks", "", func(k string, v []byte, _ uint64) error { keys = append(keys, k); return nil })
	if strings.Join(keys, ",") != "acct:a@b" {
		t.Fatalf("after prefix delete: %v", keys)
	}

	// Bad input is refused before it reaches the log.
	for _, op := range []storage.KVOp{
		{Op: "frobnicate", NS: "a", Key: "k"},
		{Op: storage.KVPut, NS: "Bad NS", Key: "k"},
		{Op: storage.KVPut, NS: "a", Key: ""},
		{Op: storage.KVPut, NS: "a", Key: strings.Repeat("k", storage.MaxKVKey+1)},
		{Op: storage.KVPut, NS: "a", Key: "k", Value: make([]byte, storage.MaxKVValue+1)},
	} {
		if err := s.KVApply(ctx, op); err == nil {
			t.Errorf("%+v accepted", op.Op)
		}
	}

	// State survives a restart.
	env.Close()
	env = storetest.Open(t, dir)
	if v, _, ok, _ := env.Store.KVGet("dns.zones", "example.com"); !ok || string(v) != "y" {
		t.Fatalf("after restart: %q %v", v, ok)
	}
}
