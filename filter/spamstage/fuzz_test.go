package spamstage

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzPolicyKey: scopes come from the CLI and the API.
func FuzzPolicyKey(f *testing.F) {
	for _, s := range []string{"global", "d:example.com", "u:a@b.c", "a@b", "example.com", "u:", "d:a@b", " G "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := PolicyKey(s)
		if err != nil {
			return
		}
		if k != "global" && !strings.HasPrefix(k, "d:") && !strings.HasPrefix(k, "u:") {
			t.Fatalf("%q → %q", s, k)
		}
		if k2, err := PolicyKey(k); err != nil || k2 != k {
			t.Fatalf("%q → %q → %q, %v: not stable", s, k, k2, err)
		}
	})
}

// FuzzPolicy: policy documents come from the API as JSON.
func FuzzPolicy(f *testing.F) {
	f.Add(`{"threshold":5,"action":"junk","tag":"[SPAM]"}`)
	f.Add(`{"action":"quarantine"}`)
	f.Add(`{"threshold":1e400}`)
	f.Fuzz(func(t *testing.T, doc string) {
		var p Policy
		if json.Unmarshal([]byte(doc), &p) != nil || p.Check() != nil {
			return
		}
		eff := DefaultPolicy()
		eff.apply(p, "x")
		switch eff.Action {
		case ActionJunk, ActionInbox, ActionDelete, ActionQuarantine:
		default:
			t.Fatalf("checked policy %q gives action %q", doc, eff.Action)
		}
		if strings.ContainsAny(eff.Tag, "\r\n") {
			t.Fatalf("tag with a line break: %q", eff.Tag)
		}
		_ = Decide(1, 10, eff)
	})
}
