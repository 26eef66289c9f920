package node

import (
	"context"
	"fmt"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/filter/virus"
)

// virusChecks adds the antivirus stage (SPEC F3) when --clamd is set. A
// clamd that does not answer at start is logged, not fatal: mail then
// meets the --clamd-policy until it comes up.
func (n *Node) virusChecks(c *filter.Checks) error {
	if n.cfg.ClamdAddr == "" {
		return nil
	}
	eng, err := virus.ParseClamdAddr(n.cfg.ClamdAddr)
	if err != nil {
		return fmt.Errorf("--clamd: %w", err)
	}
	policy, err := virus.ParsePolicy(n.cfg.ClamdPolicy)
	if err != nil {
		return fmt.Errorf("--clamd-policy: %w", err)
	}
	action, err := virus.ParseAction(n.cfg.VirusAction)
	if err != nil {
		return fmt.Errorf("--virus-action: %w", err)
	}
	if n.cfg.MaxMessageBytes > 0 && n.cfg.MaxMessageBytes+64<<10 > virus.DefaultMaxSize {
		// Let clamd's own StreamMaxLength decide for large messages; the
		// admin raising --max-message-size raises it there too.
		eng.MaxSize = n.cfg.MaxMessageBytes + 64<<10
	}
	if n.cfg.ClamdTimeout > 0 {
		eng.ScanTimeout = n.cfg.ClamdTimeout
	}
	log := n.log.With("service", "virus")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if v, err := eng.Version(ctx); err != nil {
		log.Warn("clamd not answering; mail gets the --clamd-policy until it does", "clamd", eng.String(), "policy", string(policy), "err", err)
	} else {
		log.Info("virus scanning with clamd", "clamd", eng.String(), "version", v, "policy", string(policy), "action", string(action))
	}
	c.Message = append(c.Message, &virus.Stage{Engine: eng, Unavailable: policy, Infected: action, Logger: log})
	return nil
}
