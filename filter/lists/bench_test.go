package lists

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/storage/storetest"
)

// BenchmarkEnvelope: the per-recipient cost of the list stage (1,000
// global entries, a personal list) plus the automatic whitelist, for a
// sender on no list — the common case.
func BenchmarkEnvelope(b *testing.B) {
	st := storetest.New(b)
	alice := storetest.AddAccount(b, st, "alice@example.test", "pw")
	var l Lists
	for i := range 1000 {
		l.Add("block", fmt.Sprintf("spammer%d.test", i))
	}
	l.Add("block", "198.51.100.0/24")
	ctx := context.Background()
	raw := mustJSON(l)
	st.KVPutValue(ctx, Namespace, GlobalScope, raw)
	st.KVPutValue(ctx, Namespace, UserScope(alice.Address), mustJSON(Lists{Allow: []string{"friend@x.test"}}))
	s := NewStage(st, quiet)
	a := NewAWL(st, quiet, time.Hour, nil)
	defer a.Close()
	env := &filter.Envelope{ClientIP: net.ParseIP("192.0.2.1"), From: "someone@else.test"}
	for b.Loop() {
		s.CheckConn(ctx, env)
		if v := s.CheckEnvelope(ctx, env, "alice@example.test"); v.Action != filter.ActionAccept {
			b.Fatal(v)
		}
		a.CheckEnvelope(ctx, env, "alice@example.test")
	}
}
