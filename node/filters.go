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
	for _, add := range []func(*filter.Checks) error{
		// Stage builders are listed here, one per feature file.
	} {
		if err := add(&c); err != nil {
			return filter.Checks{}, fmt.Errorf("filter stages: %w", err)
		}
	}
	return c, nil
}
