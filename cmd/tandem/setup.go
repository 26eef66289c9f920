package main

import (
	"encoding/json"
	"fmt"
)

// setup shows or changes whether the web setup wizard is finished. Until
// it is, the web dashboard sends a global admin to /setup; an admin who set
// the box up from the command line marks it done here.
func (c *cli) setup(args []string) error {
	if len(args) != 1 {
		fmt.Fprintln(c.stderr, "usage: tandem setup status|done|reset")
		return errUsage
	}
	var st struct {
		Done bool `json:"done"`
	}
	switch args[0] {
	case "status":
		if err := c.call("GET", "/api/setup", nil, &st); err != nil {
			return fmt.Errorf("setup status: %w", err)
		}
	case "done", "reset":
		if err := c.call("PUT", "/api/setup", map[string]bool{"done": args[0] == "done"}, &st); err != nil {
			return fmt.Errorf("setup %s: %w", args[0], err)
		}
	default:
		fmt.Fprintf(c.stderr, "tandem setup: unknown subcommand %q (want status, done or reset)\n", args[0])
		return errUsage
	}
	out, _ := json.Marshal(st)
	fmt.Fprintln(c.stdout, string(out))
	return nil
}
