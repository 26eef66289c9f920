package storage_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

// A settings export carries bcrypt hashes; an import restores them so the
// old passwords keep working (webui/settings.go).
func TestPasswordHashExportImport(t *testing.T) {
	src := storetest.New(t)
	storetest.AddAccount(t, src, "tech@abc.example", "pw-abc")
	h, err := src.PasswordHash("Tech@ABC.example")
	if err != nil || h == "" {
		t.Fatalf("hash %q %v", h, err)
	}
	if _, err := src.PasswordHash("nobody@abc.example"); !errors.Is(err, storage.ErrNoAccount) {
		t.Fatalf("unknown account: %v", err)
	}

	dst := storetest.New(t)
	if err := dst.AddDomain(ctx, "abc.example"); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.AddAccount(ctx, storage.NewAccount{Address: "tech@abc.example", PasswordHash: "not-bcrypt"}); err == nil {
		t.Fatal("a malformed hash was accepted")
	}
	if _, err := dst.AddAccount(ctx, storage.NewAccount{Address: "tech@abc.example", PasswordHash: h}); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Authenticate(ctx, "tech@abc.example", "pw-abc"); err != nil {
		t.Fatalf("imported hash does not authenticate: %v", err)
	}

	storetest.AddAccount(t, dst, "other@abc.example", "old")
	if err := dst.SetPasswordHash(ctx, "other@abc.example", "$2a$bad"); err == nil {
		t.Fatal("SetPasswordHash took a malformed hash")
	}
	if err := dst.SetPasswordHash(ctx, "nobody@abc.example", h); !errors.Is(err, storage.ErrNoAccount) {
		t.Fatalf("SetPasswordHash of an unknown account: %v", err)
	}
	if err := dst.SetPasswordHash(ctx, "other@abc.example", h); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Authenticate(ctx, "other@abc.example", "pw-abc"); err != nil {
		t.Fatalf("after SetPasswordHash: %v", err)
	}
	if _, err := dst.Authenticate(ctx, "other@abc.example", "old"); !errors.Is(err, storage.ErrAuthFailed) {
		t.Fatalf("old password still works: %v", err)
	}
}

func TestKVNamespaces(t *testing.T) {
	s := storetest.New(t)
	if ns, err := s.KVNamespaces(); err != nil || len(ns) != 0 {
		t.Fatalf("fresh store: %v %v", ns, err)
	}
	if err := s.KVApply(ctx, storage.KVOp{Op: storage.KVPut, NS: "b.two", Key: "k", Value: []byte("1")},
		storage.KVOp{Op: storage.KVPut, NS: "a.one", Key: "k", Value: []byte("2")}); err != nil {
		t.Fatal(err)
	}
	if ns, err := s.KVNamespaces(); err != nil || !slices.Equal(ns, []string{"a.one", "b.two"}) {
		t.Fatalf("namespaces %v %v", ns, err)
	}
}
