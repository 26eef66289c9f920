package main

import (
	"flag"
	"fmt"
	"net/url"
	"strings"
)

// accountAdmin: `tandem account admin ADDR [--domains a,b | --none]` shows
// or sets the domains an account administers in the web admin (KV
// web.domain_admins, webui/auth_admins.go). Global administrators are
// accounts made with --admin.
func (c *cli) accountAdmin(args []string) error {
	fs := flag.NewFlagSet("account admin", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	domains := fs.String("domains", "", "comma-separated domains this account administers")
	none := fs.Bool("none", false, "take away all domain administration")
	var pos []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(pos) != 1 {
		return c.usageErr("usage: account admin ADDR [--domains a.example,b.example | --none]")
	}
	path := "/api/accounts/" + url.PathEscape(pos[0]) + "/domains"
	var res struct {
		Address string   `json:"address"`
		Global  bool     `json:"global_admin"`
		Domains []string `json:"domains"`
	}
	switch {
	case *none && *domains != "":
		return c.usageErr("give --domains or --none, not both")
	case *none || *domains != "":
		var ds []string
		for _, d := range strings.Split(*domains, ",") {
			if d = strings.TrimSpace(d); d != "" {
				ds = append(ds, d)
			}
		}
		if ds == nil {
			ds = []string{}
		}
		if err := c.call("PUT", path, map[string]any{"domains": ds}, &res); err != nil {
			return err
		}
	default:
		if err := c.call("GET", path, nil, &res); err != nil {
			return err
		}
	}
	switch {
	case res.Global:
		fmt.Fprintf(c.stdout, "%s is a global administrator\n", res.Address)
	case len(res.Domains) == 0:
		fmt.Fprintf(c.stdout, "%s administers no domains\n", res.Address)
	default:
		fmt.Fprintf(c.stdout, "%s administers %s\n", res.Address, strings.Join(res.Domains, ", "))
	}
	return nil
}
