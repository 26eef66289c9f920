package node

import (
	"context"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/filter/dnsbl"
	"github.com/tandemmail/tandem/filter/fingerprint"
	"github.com/tandemmail/tandem/filter/greylist"
	"github.com/tandemmail/tandem/filter/lists"
)

// reputationChecks adds the sender-reputation stages (SPEC F1): DNSBL and
// DNSWL (filter/dnsbl), the allow/block lists, personal rules and the
// automatic whitelist (filter/lists), greylisting (filter/greylist) and
// spam fingerprints (filter/fingerprint). All are configured through the
// replicated KV store (tandem filter ...), so they start empty and idle.
//
// Order inside the stages: at connect the DNS lists, then the global IP
// lists; per recipient the lists first (a block refuses at once with 550
// instead of greylisting first), then the automatic whitelist, then
// greylisting, which lets allow-listed senders and clients (lists and
// DNSWL) and correspondents pass;
// at DATA the whitelist records what users send, then personal rules and
// fingerprints, whose scores the spam stage adds up.
func (n *Node) reputationChecks(c *filter.Checks) error {
	log := n.log.With("stage", "reputation")
	ls := lists.NewStage(n.store, log)
	bl := dnsbl.New(dnsbl.Config{KV: n.store, Resolver: dnsbl.NewDNSResolver(n.cfg.DNSResolver), Logger: log,
		Exempt: ls.AllowedIP})
	awl := lists.NewAWL(n.store, log, 0, nil)
	n.addCloser(awl.Close)
	gl := greylist.New(greylist.Config{KV: n.store, Logger: log,
		Known: func(ctx context.Context, env *filter.Envelope, rcpt string) bool {
			return ls.Allowed(env, rcpt) || awl.KnownTo(env, rcpt) || bl.Allowed(ctx, env.ClientIP)
		}})
	n.addCloser(gl.Close)
	c.Conn = append(c.Conn, bl, ls)
	c.Envelope = append(c.Envelope, ls, awl, gl)
	c.Message = append(c.Message, awl, lists.NewRules(n.store, log), fingerprint.New(fingerprint.Config{KV: n.store, Logger: log}))
	return nil
}
