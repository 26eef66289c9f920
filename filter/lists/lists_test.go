package lists

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

func TestParseEntry(t *testing.T) {
	for _, c := range []struct{ in, kind, value, err string }{
		{"Bob@Example.COM", KindAddress, "bob@example.com", ""},
		{"example.com", KindDomain, "example.com", ""},
		{"@example.com", KindDomain, "example.com", ""},
		{".Example.com", KindSuffix, ".example.com", ""},
		{"192.0.2.1", KindIP, "192.0.2.1", ""},
		{"192.0.2.77/24", KindIP, "192.0.2.0/24", ""},
		{"2001:db8::/32", KindIP, "2001:db8::/32", ""},
		{"[2001:db8::1]", KindIP, "2001:db8::1", ""},
		{"", "", "", "empty"},
		{"a b@c.d", "", "", "not an email address"},
		{"exa mple.com", "", "", "not allowed"},
		{"..com", "", "", "empty"},
		{strings.Repeat("a", 400), "", "", "longer than"},
	} {
		e, err := ParseEntry(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseEntry(%q) = %+v, %v; want error %q", c.in, e, err, c.err)
			}
			continue
		}
		if err != nil || e.Kind != c.kind || e.Value != c.value {
			t.Errorf("ParseEntry(%q) = %+v, %v; want %s %s", c.in, e, err, c.kind, c.value)
		}
	}
}

func putJSON(t *testing.T, st *storage.Store, ns, key string, v any) {
	t.Helper()
	raw, _ := json.Marshal(v)
	if err := st.KVPutValue(context.Background(), ns, key, raw); err != nil {
		t.Fatal(err)
	}
}

func TestListsStage(t *testing.T) {
	st := storetest.New(t)
	alice := storetest.AddAccount(t, st, "alice@example.test", "pw")
	storetest.AddAccount(t, st, "bob@example.test", "pw")
	storetest.AddAccount(t, st, "carol@other.test", "pw")
	putJSON(t, st, Namespace, GlobalScope, Lists{
		Block: []string{"198.51.100.0/24", "spam.test", ".bulk.test", "evil@friendly.test"},
		Allow: []string{"203.0.113.5", "good@spam.test"},
	})
	putJSON(t, st, Namespace, DomainScope("example.test"), Lists{Block: []string{"partner.test"}})
	putJSON(t, st, Namespace, UserScope(alice.Address), Lists{Allow: []string{"partner.test", "evil@friendly.test"}, Block: []string{"192.0.2.66"}})
	ctx := context.Background()
	if err := st.AddAlias(ctx, "sales@example.test", "alice@example.test"); err != nil {
		t.Fatal(err)
	}
	s := NewStage(st, quiet)

	for _, c := range []struct {
		ip   string
		want filter.Action
		why  string
	}{
		{"198.51.100.9", filter.ActionReject, "blocked"},
		{"203.0.113.5", filter.ActionAccept, "global allow list"},
		{"192.0.2.1", filter.ActionAccept, ""},
	} {
		v := s.CheckConn(ctx, &filter.Envelope{ClientIP: net.ParseIP(c.ip)})
		if v.Action != c.want || !strings.Contains(v.Reason, c.why) {
			t.Errorf("CheckConn(%s) = %+v", c.ip, v)
		}
	}
	if v := s.CheckConn(ctx, &filter.Envelope{ClientIP: net.ParseIP("198.51.100.9"), AuthAccountID: 1}); v.Action != filter.ActionAccept {
		t.Errorf("authenticated client judged: %+v", v)
	}

	for _, c := range []struct {
		ip, from, rcpt string
		want           filter.Action
		score          float64
		why            string
	}{
		{"192.0.2.1", "x@spam.test", "bob@example.test", filter.ActionReject, 0, "global list"},
		{"192.0.2.1", "good@spam.test", "bob@example.test", filter.ActionAccept, AllowScore, "allowed by the global list"},
		{"192.0.2.1", "x@a.bulk.test", "bob@example.test", filter.ActionReject, 0, "blocked"},
		{"192.0.2.1", "x@bulk.test", "bob@example.test", filter.ActionReject, 0, "blocked"},
		{"192.0.2.1", "x@notbulk.test", "bob@example.test", filter.ActionAccept, 0, ""},
		{"192.0.2.1", "x@partner.test", "bob@example.test", filter.ActionReject, 0, "domain list"},
		{"192.0.2.1", "x@partner.test", "Alice@example.test", filter.ActionAccept, AllowScore, "personal list"},
		{"192.0.2.1", "evil@friendly.test", "alice@example.test", filter.ActionAccept, AllowScore, ""},
		{"192.0.2.1", "evil@friendly.test", "carol@other.test", filter.ActionReject, 0, ""},
		{"192.0.2.66", "x@y.test", "alice@example.test", filter.ActionReject, 0, "client 192.0.2.66"},
		{"192.0.2.66", "x@y.test", "bob@example.test", filter.ActionAccept, 0, ""},
		{"192.0.2.1", "", "bob@example.test", filter.ActionAccept, 0, ""},
		// Through an alias, alice's personal lists apply.
		{"192.0.2.66", "x@y.test", "sales@example.test", filter.ActionReject, 0, "personal list"},
		{"192.0.2.1", "x@partner.test", "sales@example.test", filter.ActionAccept, AllowScore, "personal list"},
	} {
		env := &filter.Envelope{ClientIP: net.ParseIP(c.ip), From: c.from}
		v := s.CheckEnvelope(ctx, env, c.rcpt)
		if v.Action != c.want || v.Score != c.score || !strings.Contains(v.Reason, c.why) {
			t.Errorf("CheckEnvelope(%s, %s → %s) = %+v", c.ip, c.from, c.rcpt, v)
		}
		if allowed := s.Allowed(env, c.rcpt); allowed != (c.score == AllowScore) {
			t.Errorf("Allowed(%s → %s) = %v", c.from, c.rcpt, allowed)
		}
	}
	// Changes apply without a restart (KVRevision reload).
	putJSON(t, st, Namespace, GlobalScope, Lists{})
	if v := s.CheckEnvelope(ctx, &filter.Envelope{ClientIP: net.ParseIP("192.0.2.1"), From: "x@spam.test"}, "bob@example.test"); v.Action != filter.ActionAccept {
		t.Errorf("after the list was emptied: %+v", v)
	}
}

func TestListsAddRemove(t *testing.T) {
	var l Lists
	if ch, err := l.Add("block", "Spam.Test"); !ch || err != nil {
		t.Fatal(ch, err)
	}
	if ch, _ := l.Add("block", "spam.test"); ch {
		t.Error("duplicate added")
	}
	if _, err := l.Add("maybe", "x.test"); err == nil {
		t.Error("bad list name accepted")
	}
	if ch, _ := l.Remove("block", "SPAM.test"); !ch || len(l.Block) != 0 {
		t.Errorf("remove: %v %+v", ch, l)
	}
}

const ruleMsg = "From: =?UTF-8?B?5by15LiJ?= <zhang@shop.test>\r\nTo: alice@example.test\r\nSubject: =?UTF-8?B?5YSq5oOg5Yi4?= weekly deals\r\nList-Id: <deals.shop.test>\r\n\r\nbody\r\n"

func TestRules(t *testing.T) {
	st := storetest.New(t)
	alice := storetest.AddAccount(t, st, "alice@example.test", "pw")
	bob := storetest.AddAccount(t, st, "bob@example.test", "pw")
	putJSON(t, st, RulesNamespace, UserScope(alice.Address), []Rule{
		{Field: "subject", Op: "contains", Value: "優惠券", Action: "score", Score: 4},
		{Field: "header", Header: "list-id", Op: "equals", Value: "<deals.shop.test>", Action: "score", Score: 2},
		{Field: "from", Op: "regex", Value: `(?i)@shop\.test>$`, Action: "block"},
	})
	putJSON(t, st, RulesNamespace, UserScope(bob.Address), []Rule{
		{Field: "from", Op: "contains", Value: "張三", Action: "allow"},
	})
	r := NewRules(st, quiet)
	ctx := context.Background()
	body := strings.NewReader(ruleMsg)
	env := &filter.Envelope{ClientIP: net.ParseIP("192.0.2.1"), From: "zhang@shop.test"}
	if v := r.CheckMessage(ctx, env, []string{"alice@example.test"}, body, int64(len(ruleMsg))); v.Action != filter.ActionReject {
		t.Errorf("alice's block rule: %+v", v)
	}
	if v := r.CheckMessage(ctx, env, []string{"bob@example.test"}, body, int64(len(ruleMsg))); v.Action != filter.ActionAccept || v.Score != AllowScore {
		t.Errorf("bob's allow rule (decoded From): %+v", v)
	}
	// Two recipients who disagree: the lenient one wins, nobody is refused.
	if v := r.CheckMessage(ctx, env, []string{"alice@example.test", "bob@example.test"}, body, int64(len(ruleMsg))); v.Action != filter.ActionAccept || v.Score != AllowScore {
		t.Errorf("mixed recipients: %+v", v)
	}
	h := ReadHeader(strings.NewReader(ruleMsg))
	rules, _ := ParseRules(mustJSON([]Rule{
		{ID: "a", Field: "subject", Op: "contains", Value: "優惠券", Action: "score", Score: 4},
		{ID: "b", Field: "to", Op: "contains", Value: "ALICE@", Action: "score", Score: -1.5},
		{ID: "c", Field: "subject", Op: "equals", Value: "weekly", Action: "block"},
	}))
	if action, score, matched := Evaluate(rules, h); action != "" || score != 2.5 || strings.Join(matched, ",") != "a,b" {
		t.Errorf("Evaluate = %q %g %v", action, score, matched)
	}
}

var quiet = slog.New(slog.DiscardHandler)

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

func TestRuleNormalize(t *testing.T) {
	for _, c := range []struct {
		r   Rule
		err string
	}{
		{Rule{Field: "from", Op: "contains", Value: "x", Action: "allow"}, ""},
		{Rule{Field: "body", Op: "contains", Value: "x", Action: "allow"}, "must be from"},
		{Rule{Field: "header", Op: "contains", Value: "x", Action: "allow"}, "header name"},
		{Rule{Field: "from", Op: "like", Value: "x", Action: "allow"}, "operator"},
		{Rule{Field: "from", Op: "regex", Value: "(", Action: "allow"}, "regex"},
		{Rule{Field: "from", Op: "regex", Value: `(a)\1`, Action: "allow"}, "regex"}, // RE2: no backreferences
		{Rule{Field: "from", Op: "contains", Value: strings.Repeat("x", 600), Action: "allow"}, "1-512"},
		{Rule{Field: "from", Op: "contains", Value: "x", Action: "score"}, "non-zero"},
		{Rule{Field: "from", Op: "contains", Value: "x", Action: "delete"}, "allow, block or score"},
	} {
		err := c.r.Normalize()
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("Normalize(%+v) = %v, want %q", c.r, err, c.err)
		}
	}
}

func TestAWL(t *testing.T) {
	st := storetest.New(t)
	alice := storetest.AddAccount(t, st, "alice@example.test", "pw")
	storetest.AddAccount(t, st, "bob@example.test", "pw")
	a := NewAWL(st, quiet, time.Hour, nil)
	defer a.Close()
	ctx := context.Background()
	// Alice sends to two people (one of them herself).
	sent := &filter.Envelope{ClientIP: net.ParseIP("192.0.2.1"), AuthAccountID: alice.ID, From: "alice@example.test"}
	if v := a.CheckMessage(ctx, sent, []string{"Friend@Far.test", "alice@example.test"}, nil, 0); v.Reason != "1 new correspondents" {
		t.Errorf("record: %+v", v)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := st.KVGet(AWLNamespace, AWLKey(alice.Address, "friend@far.test")); !ok {
		t.Fatal("correspondent not stored")
	}
	rev := st.KVRevision(AWLNamespace)
	a.CheckMessage(ctx, sent, []string{"friend@far.test"}, nil, 0)
	a.Flush(ctx)
	if st.KVRevision(AWLNamespace) != rev {
		t.Error("known correspondent written again")
	}
	in := &filter.Envelope{ClientIP: net.ParseIP("198.51.100.1"), From: "friend@far.test"}
	if v := a.CheckEnvelope(ctx, in, "alice@example.test"); v.Score != AWLScore {
		t.Errorf("mail from the correspondent to alice: %+v", v)
	}
	if v := a.CheckEnvelope(ctx, in, "bob@example.test"); v.Score != 0 {
		t.Errorf("the whitelist is per user, bob got: %+v", v)
	}
	if v := a.CheckEnvelope(ctx, &filter.Envelope{ClientIP: net.ParseIP("198.51.100.1"), From: "other@far.test"}, "alice@example.test"); v.Score != 0 {
		t.Errorf("stranger: %+v", v)
	}
}

func FuzzParseEntry(f *testing.F) {
	for _, s := range []string{"a@b.c", ".x.y", "10.0.0.0/8", "::1", "@d.e", "[::1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEntry(s)
		if err != nil {
			return
		}
		again, err := ParseEntry(e.Value)
		if err != nil || again != e {
			t.Fatalf("normalized %q → %+v does not parse back the same: %+v %v", s, e, again, err)
		}
	})
}

func FuzzRules(f *testing.F) {
	f.Add([]byte(`[{"field":"subject","op":"regex","value":"(?i)win","action":"block"}]`), []byte(ruleMsg))
	f.Fuzz(func(t *testing.T, rules, msg []byte) {
		rs, err := ParseRules(rules)
		if err != nil {
			return
		}
		Evaluate(rs, ReadHeader(strings.NewReader(string(msg))))
	})
}
