package dkimsign

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

func byState(recs []KeyRecord) map[string][]KeyRecord {
	m := map[string][]KeyRecord{}
	for _, r := range recs {
		m[r.State] = append(m[r.State], r)
	}
	return m
}

func TestKeysLifecycle(t *testing.T) {
	st := storetest.New(t)
	ctx := context.Background()
	if err := st.AddDomain(ctx, "sign.test"); err != nil {
		t.Fatal(err)
	}
	k := NewKeys(st)
	now := time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)
	if err := k.Maintain(ctx, now, 48*time.Hour, 48*time.Hour); err != nil {
		t.Fatal(err)
	}
	recs, err := k.List("sign.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("want 2 keys, got %+v", recs)
	}
	algs := map[string]string{}
	for _, r := range recs {
		algs[r.Algorithm] = r.Selector
		if r.State != StateActive || r.Domain != "sign.test" || r.Created != now.Unix() || r.Activated != now.Unix() {
			t.Errorf("record %+v", r)
		}
	}
	if algs[AlgRSA] != "t202611r" || algs[AlgEd25519] != "t202611e" {
		t.Errorf("selectors %v", algs)
	}
	for _, r := range recs {
		want := map[string]string{AlgRSA: "v=DKIM1; k=rsa; p=", AlgEd25519: "v=DKIM1; k=ed25519; p="}[r.Algorithm]
		if !strings.HasPrefix(r.PublicTXT, want) || !strings.Contains(r.PrivatePEM, "PRIVATE KEY") {
			t.Errorf("%s: public %q", r.Selector, r.PublicTXT)
		}
	}
	// A second pass changes nothing.
	if created, err := k.Ensure(ctx, "sign.test", now); err != nil || created {
		t.Fatalf("ensure again: %v %v", created, err)
	}

	// Rotation: new keys are published, not signing.
	pair, err := k.Rotate(ctx, "sign.test", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(pair) != 2 || pair[0].Selector != "t202611br" || pair[1].Selector != "t202611be" || pair[0].State != StatePublished {
		t.Fatalf("rotate: %+v", pair)
	}
	if _, err := k.Rotate(ctx, "sign.test", now.Add(time.Hour)); !errors.Is(err, ErrPending) {
		t.Errorf("second rotate: %v", err)
	}
	if _, err := k.Rotate(ctx, "nope.test", now); !errors.Is(err, ErrNoDomain) {
		t.Errorf("rotate unknown domain: %v", err)
	}
	signers, err := k.Signers("sign.test")
	if err != nil || len(signers) != 2 || signers[0].Selector[:7] != "t202611" || len(signers[0].Selector) != 8 {
		t.Fatalf("signers while published: %+v %v", signers, err)
	}
	// Before the delay nothing moves; after it the new keys sign.
	if err := k.Maintain(ctx, now.Add(47*time.Hour), 48*time.Hour, 48*time.Hour); err != nil {
		t.Fatal(err)
	}
	recs, _ = k.List("sign.test")
	if s := byState(recs); len(s[StatePublished]) != 2 || len(s[StateActive]) != 2 {
		t.Fatalf("before delay: %+v", s)
	}
	later := now.Add(50 * time.Hour)
	if err := k.Maintain(ctx, later, 48*time.Hour, 48*time.Hour); err != nil {
		t.Fatal(err)
	}
	recs, _ = k.List("sign.test")
	s := byState(recs)
	if len(s[StateActive]) != 2 || len(s[StateRetired]) != 2 || len(s[StatePublished]) != 0 {
		t.Fatalf("after delay: %+v", s)
	}
	for _, r := range s[StateActive] {
		if !strings.HasPrefix(r.Selector, "t202611b") || r.Activated != later.Unix() {
			t.Errorf("active %+v", r)
		}
	}
	signers, _ = k.Signers("sign.test")
	if len(signers) != 2 || !strings.HasPrefix(signers[0].Selector, "t202611b") {
		t.Errorf("signers after rotation: %+v", signers)
	}
	// Retired keys stay in DNS for the retire delay, then go.
	if err := k.Maintain(ctx, later.Add(49*time.Hour), 48*time.Hour, 48*time.Hour); err != nil {
		t.Fatal(err)
	}
	recs, _ = k.List("sign.test")
	if s := byState(recs); len(recs) != 2 || len(s[StateActive]) != 2 {
		t.Fatalf("after retire delay: %+v", s)
	}

	// Manual activation of a pending rotation.
	pair, err = k.Rotate(ctx, "sign.test", later)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Activate(ctx, "sign.test", "nosuch", later); !errors.Is(err, ErrNoKey) {
		t.Errorf("activate unknown: %v", err)
	}
	changed, err := k.Activate(ctx, "sign.test", pair[1].Selector, later)
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 4 {
		t.Errorf("activate changed %d keys: %+v", len(changed), changed)
	}
	if _, err := k.Activate(ctx, "sign.test", pair[1].Selector, later); !errors.Is(err, ErrNotPublishable) {
		t.Errorf("activate twice: %v", err)
	}

	// Keys of a deleted domain are removed.
	if err := st.DeleteDomain(ctx, "sign.test"); err != nil {
		t.Fatal(err)
	}
	if err := k.Maintain(ctx, later, 48*time.Hour, 48*time.Hour); err != nil {
		t.Fatal(err)
	}
	if recs, _ := k.List(""); len(recs) != 0 {
		t.Errorf("keys of a deleted domain: %+v", recs)
	}
}

// Two managers racing to create keys: IfVersion(0) lets exactly one win.
func TestEnsureConflict(t *testing.T) {
	st := storetest.New(t)
	ctx := context.Background()
	st.AddDomain(ctx, "race.test")
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	recs, err := newPair("race.test", StateActive, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	// Another node wrote the same selectors first.
	if err := NewKeys(st).write(ctx, recs, []uint64{0, 0}); err != nil {
		t.Fatal(err)
	}
	other, _ := newPair("race.test", StateActive, nil, now)
	err = NewKeys(st).write(ctx, other, []uint64{0, 0})
	if !errors.Is(err, storage.ErrKVConflict) {
		t.Fatalf("second writer: %v", err)
	}
	got, _ := NewKeys(st).List("race.test")
	if len(got) != 2 || got[0].PrivatePEM != recs[0].PrivatePEM && got[0].PrivatePEM != recs[1].PrivatePEM {
		t.Errorf("stored keys changed: %+v", got)
	}
}

const testMsg = "From: Alice <alice@sign.test>\r\nTo: bob@far.test\r\nSubject: hello\r\n" +
	"Date: Sun, 29 Nov 2026 03:00:00 +0000\r\nMessage-ID: <m1@sign.test>\r\n\r\nHello Bob,\r\nsee you.\r\n"

// A message signed with both keys verifies against the published records
// with go-msgauth's verifier; a tampered copy fails.
func TestSignVerify(t *testing.T) {
	st := storetest.New(t)
	ctx := context.Background()
	st.AddDomain(ctx, "sign.test")
	k := NewKeys(st)
	if _, err := k.Ensure(ctx, "sign.test", time.Now()); err != nil {
		t.Fatal(err)
	}
	recs, _ := k.List("sign.test")
	txt := map[string]string{}
	for _, r := range recs {
		txt[r.Selector+"._domainkey.sign.test"] = r.PublicTXT
	}
	lookup := func(name string) ([]string, error) {
		if v, ok := txt[strings.TrimSuffix(name, ".")]; ok {
			return []string{v}, nil
		}
		return nil, errors.New("no such record")
	}
	signers, err := k.Signers("sign.test")
	if err != nil || len(signers) != 2 {
		t.Fatalf("signers %v %v", signers, err)
	}
	sigs, err := Signatures(strings.NewReader(testMsg), signers)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(sigs, "DKIM-Signature:") != 2 || !strings.Contains(sigs, "a=rsa-sha256") || !strings.Contains(sigs, "a=ed25519-sha256") {
		t.Fatalf("signatures:\n%s", sigs)
	}
	if !strings.Contains(strings.ReplaceAll(sigs, "\r\n ", ""), "h=From:From:To:Cc:Subject") {
		t.Errorf("oversigned header list missing:\n%s", sigs)
	}
	verify := func(msg string) []*dkim.Verification {
		vs, err := dkim.VerifyWithOptions(strings.NewReader(msg), &dkim.VerifyOptions{LookupTXT: lookup})
		if err != nil {
			t.Fatal(err)
		}
		return vs
	}
	signed := sigs + testMsg
	for _, v := range verify(signed) {
		if v.Err != nil || v.Domain != "sign.test" {
			t.Errorf("verification: %+v", v)
		}
	}
	cases := map[string]string{
		"body":       strings.Replace(signed, "see you", "send money", 1),
		"subject":    strings.Replace(signed, "Subject: hello", "Subject: urgent", 1),
		"added from": strings.Replace(signed, "To: bob", "From: mallory@evil.test\r\nTo: bob", 1),
	}
	for name, msg := range cases {
		vs := verify(msg)
		if len(vs) != 2 {
			t.Fatalf("%s: %d verifications", name, len(vs))
		}
		for _, v := range vs {
			if v.Err == nil {
				t.Errorf("%s: tampered message verified", name)
			}
		}
	}
	if _, err := Signatures(strings.NewReader(testMsg), nil); err == nil {
		t.Error("signing without keys succeeded")
	}
}
