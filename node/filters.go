package node

import (
	"fmt"

	"github.com/tandemmail/tandem/filter"
)

// filterChecks assembles the pipeline's check stages (DESIGN §6). Each
// filter feature adds its stages in its own file through one function of
// this list; the order is the order mail meets them: cheap connection
// checks first (firewall, DNSBL), then the envelope (greylisting), then
// the message (sender verification, virus scan, spam, which reads the
// earlier verdicts).
func (n *Node) filterChecks() (filter.Checks, error) {
	var c filter.Checks
	if n.cfg.NoFilters {
		return c, nil // --filters=false: measuring the pipeline without its checks
	}
	for _, add := range []func(*filter.Checks) error{
		// Stage builders are listed here, one per feature file.
		n.firewallChecks,   // mail firewall: blocked clients, message rate (node/firewall.go)
		n.reputationChecks, // dnsbl, greylist, allow/block lists, rules, awl, fingerprints (node/reputation.go)
		// sender auth (node/auth.go): after firewall, dnsbl, greylist, lists; before virus, spam
		n.authChecks,
		n.virusChecks, // antivirus via clamd (node/virus.go)
		n.spamChecks,  // spam: always last, it adds up every earlier verdict's score
	} {
		if err := add(&c); err != nil {
			return filter.Checks{}, fmt.Errorf("filter stages: %w", err)
		}
	}
	return c, nil
}
