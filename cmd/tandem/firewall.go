package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"
)

// fwBlock is one row of GET /api/firewall/blocks (webui/firewall.go).
type fwBlock struct {
	Key     string    `json:"key"`
	Target  string    `json:"target"`
	Kind    string    `json:"kind"`
	Reason  string    `json:"reason"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	Hits    int       `json:"hits"`
}

// firewall: tandem firewall list [--json] | block TARGET [--for 2h]
// [--reason R] | unblock TARGET. TARGET is an IP, a CIDR or an account.
func (c *cli) firewall(args []string) error {
	if len(args) == 0 {
		return c.usageErr("firewall needs a subcommand: list, block IP|CIDR|ACCOUNT, unblock IP|CIDR|ACCOUNT")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "list":
		fs := flag.NewFlagSet("firewall list", flag.ContinueOnError)
		fs.SetOutput(c.stderr)
		asJSON := fs.Bool("json", false, "print JSON")
		if err := fs.Parse(rest); err != nil || fs.NArg() > 0 {
			return c.usageErr("usage: firewall list [--json]")
		}
		var bs []fwBlock
		if err := c.call("GET", "/api/firewall/blocks", nil, &bs); err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(c.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(bs)
		}
		if len(bs) == 0 {
			fmt.Fprintln(c.stdout, "no blocks")
			return nil
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TARGET\tKIND\tEXPIRES\tHITS\tREASON")
		for _, b := range bs {
			exp := "never"
			if !b.Expires.IsZero() {
				exp = b.Expires.Local().Format("2006-01-02 15:04:05")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", b.Target, b.Kind, exp, b.Hits, b.Reason)
		}
		return tw.Flush()
	case "block":
		if len(rest) == 0 {
			return c.usageErr("usage: firewall block IP|CIDR|ACCOUNT [--for 2h] [--reason TEXT]")
		}
		target := rest[0]
		fs := flag.NewFlagSet("firewall block", flag.ContinueOnError)
		fs.SetOutput(c.stderr)
		dur := fs.Duration("for", 0, "how long (default: until unblocked)")
		reason := fs.String("reason", "", "shown in the list and to the client")
		if err := fs.Parse(rest[1:]); err != nil || fs.NArg() > 0 {
			return c.usageErr("usage: firewall block IP|CIDR|ACCOUNT [--for 2h] [--reason TEXT]")
		}
		if *dur < 0 {
			return fmt.Errorf("firewall block: --for %v: must be positive", *dur)
		}
		body := map[string]string{"target": target, "reason": *reason}
		if *dur > 0 {
			body["duration"] = dur.String()
		}
		var b fwBlock
		if err := c.call("POST", "/api/firewall/blocks", body, &b); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "blocked %s\n", b.Target)
	case "unblock":
		if len(rest) != 1 {
			return c.usageErr("usage: firewall unblock IP|CIDR|ACCOUNT")
		}
		if err := c.call("DELETE", "/api/firewall/blocks?target="+url.QueryEscape(rest[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "unblocked %s\n", rest[0])
	default:
		return c.usageErr("unknown firewall subcommand %q", sub)
	}
	return nil
}
