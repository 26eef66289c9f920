package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/tandemmail/tandem/protocols/outbound"
)

const gatewayUsage = "usage: domain gateway NAME --backend HOST:PORT [--backend HOST:PORT ...] [--verify callout|list|none] [--recipients FILE] | domain gateway NAME --off | domain gateway NAME"

// domainGateway configures the mail gateway mode of a hosted domain
// (SPEC M9): its mail is filtered here and relayed to backend hosts.
func (c *cli) domainGateway(args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return c.usageErr(gatewayUsage)
	}
	name := args[0]
	path := "/api/domains/" + url.PathEscape(name) + "/gateway"
	fs := flag.NewFlagSet("domain gateway", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var backends []string
	fs.Func("backend", "backend HOST:PORT (repeat, in order of preference)", listFlag(&backends))
	verify := fs.String("verify", "", "recipient check: callout (ask a backend, default), list (--recipients) or none")
	file := fs.String("recipients", "", "file of valid addresses, one per line (with --verify list)")
	off := fs.Bool("off", false, "stop relaying; mail for the domain is stored here again")
	if err := fs.Parse(args[1:]); err != nil {
		return c.usageErr("%v; %s", err, gatewayUsage)
	}
	if fs.NArg() > 0 {
		return c.usageErr("unexpected %q; %s", fs.Arg(0), gatewayUsage)
	}
	switch {
	case *off:
		if len(backends) > 0 || *verify != "" || *file != "" {
			return c.usageErr("--off takes no other option")
		}
		if err := c.call("DELETE", path, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "gateway mode of %s turned off\n", name)
		return nil
	case len(backends) == 0 && *verify == "" && *file == "":
		var g outbound.GatewayDomain
		if err := c.call("GET", path, nil, &g); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "domain:     %s\nbackends:   %s\nverify:     %s\n", g.Domain, strings.Join(g.Backends, ", "), g.Verify)
		if g.Verify == outbound.VerifyList {
			fmt.Fprintf(c.stdout, "recipients: %d\n", len(g.Recipients))
		}
		return nil
	case len(backends) == 0:
		return c.usageErr("at least one --backend HOST:PORT is needed; %s", gatewayUsage)
	}
	req := map[string]any{"backends": backends, "verify": *verify}
	if *file != "" {
		if *verify == "" {
			*verify = outbound.VerifyList
			req["verify"] = *verify
		}
		rcpts, err := readRecipients(*file)
		if err != nil {
			return err
		}
		req["recipients"] = rcpts
	}
	if *verify == outbound.VerifyList && *file == "" {
		return c.usageErr("--verify list needs --recipients FILE")
	}
	var g outbound.GatewayDomain
	if err := c.call("PUT", path, req, &g); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s is a gateway domain: relayed to %s, recipients checked by %s\n",
		g.Domain, strings.Join(g.Backends, ", "), g.Verify)
	return nil
}

// readRecipients reads one address a line; blank lines and # comments are
// skipped.
func readRecipients(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--recipients: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if !strings.Contains(t, "@") || strings.ContainsAny(t, " \t<>,;") {
			return nil, fmt.Errorf("--recipients %s line %d: %q is not an address", path, line, t)
		}
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--recipients %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--recipients %s: no addresses", path)
	}
	return out, nil
}

// gatewayColumn is the GATEWAY column of "domain list": the backends, or
// "-" for a domain stored here.
func (c *cli) gatewayColumn() map[string]string {
	var gs []outbound.GatewayDomain
	out := map[string]string{}
	if err := c.call("GET", "/api/gateway", nil, &gs); err != nil {
		return out // an older node without the route: no column content
	}
	for _, g := range gs {
		out[g.Domain] = strings.Join(g.Backends, ",") + " (" + g.Verify + ")"
	}
	return out
}
