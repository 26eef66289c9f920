package filter

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tandemmail/tandem/storage"
)

// fakeGateway treats gw.example as a gateway domain whose only user is
// known@gw.example; "down@" stands for a callout with no backend.
type fakeGateway struct {
	relayed []string
	envID   string
	sha     string
}

func (f *fakeGateway) GatewayRecipient(_ context.Context, _ *Envelope, addr string) (bool, error) {
	addr = strings.ToLower(addr)
	if !strings.HasSuffix(addr, "@gw.example") {
		return false, nil
	}
	switch addr {
	case "known@gw.example":
		return true, nil
	case "down@gw.example":
		return true, errors.New("no backend answered")
	}
	return true, &Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Msg: "No such user here"}
}

func (f *fakeGateway) Relay(_ context.Context, env *Envelope, rcpts []string, b *storage.Blob) error {
	f.relayed, f.envID, f.sha = rcpts, env.ID, b.SHA
	return nil
}

// SPEC M9: gateway recipients need no AUTH, are checked by the gateway,
// and are relayed, not stored; local recipients in the same message are
// stored as before, ordinary remote ones keep the message's queue ID.
func TestPipelineGateway(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	gw := &fakeGateway{}
	ob := &fakeOutbound{}
	p := New(Config{Store: w.st, Gateway: gw, Outbound: ob})

	tx, _ := p.Begin(ctx, &Envelope{ID: "g1", From: "x@remote.example"})
	for rcpt, want := range map[string]string{
		"known@gw.example": "ok", "Known@GW.example": "ok", "ghost@gw.example": "550 5.1.1",
		"down@gw.example": "451 4.4.3", "bob@example.org": "ok", "y@other.example": "554 5.7.1",
	} {
		if got := code(tx.AddRcpt(ctx, rcpt)); got != want {
			t.Errorf("%s: %s, want %s", rcpt, got, want)
		}
	}
	if err := tx.Body(ctx, strings.NewReader("From: x@remote.example\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	if len(gw.relayed) != 2 || gw.envID != "g1" || gw.sha == "" || len(ob.rcpts) != 0 {
		t.Fatalf("relayed %+v, outbound %+v", gw, ob)
	}
	if len(w.inbox(t, w.bob)) != 1 {
		t.Fatal("the local recipient got nothing")
	}

	// Authenticated, with an ordinary remote recipient too: two entries.
	gw2 := &fakeGateway{}
	p = New(Config{Store: w.st, Gateway: gw2, Outbound: ob})
	tx, _ = p.Begin(ctx, &Envelope{ID: "g2", AuthAccountID: w.alice.ID, From: "alice@example.org"})
	for _, r := range []string{"known@gw.example", "z@other.example"} {
		if err := tx.AddRcpt(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Body(ctx, strings.NewReader("From: alice@example.org\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	if gw2.envID != "g2-gw" || strings.Join(ob.rcpts, ",") != "z@other.example" {
		t.Fatalf("gateway entry %q, outbound %v", gw2.envID, ob.rcpts)
	}
}

// The envelope checks run for gateway recipients as for any other.
func TestPipelineGatewayChecks(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	p := New(Config{Store: w.st, Gateway: &fakeGateway{},
		Checks: Checks{Envelope: []EnvelopeCheck{fixedCheck{"blocklist", ActionReject}}}})
	tx, _ := p.Begin(ctx, &Envelope{ID: "g3", From: "x@remote.example"})
	if got := code(tx.AddRcpt(ctx, "known@gw.example")); got != "550 5.7.1" {
		t.Fatalf("blocked gateway recipient: %s", got)
	}
}
