package main

import (
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"
)

type dkimKey struct {
	Domain    string `json:"domain"`
	Selector  string `json:"selector"`
	Algorithm string `json:"algorithm"`
	State     string `json:"state"`
	Created   int64  `json:"created"`
	Activated int64  `json:"activated"`
	Retired   int64  `json:"retired"`
	DNSName   string `json:"dns_name"`
	PublicTXT string `json:"public_txt"`
}

func unixDate(u int64) string {
	if u == 0 {
		return "-"
	}
	return time.Unix(u, 0).Local().Format(time.DateTime)
}

// dkim administers DKIM keys: list, show (with the DNS records to
// publish), rotate and activate.
func (c *cli) dkim(args []string) error {
	if len(args) == 0 {
		return c.usageErr("dkim needs a subcommand: list [DOMAIN], show DOMAIN, rotate DOMAIN, activate DOMAIN SELECTOR")
	}
	sub, rest := args[0], args[1:]
	var keys []dkimKey
	switch sub {
	case "list":
		if len(rest) > 1 {
			return c.usageErr("usage: dkim list [DOMAIN]")
		}
		q := ""
		if len(rest) == 1 {
			q = "?domain=" + url.QueryEscape(rest[0])
		}
		if err := c.call("GET", "/api/dkim"+q, nil, &keys); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DOMAIN\tSELECTOR\tALGORITHM\tSTATE\tCREATED\tACTIVATED\tRETIRED")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Domain, k.Selector, k.Algorithm, k.State,
				unixDate(k.Created), unixDate(k.Activated), unixDate(k.Retired))
		}
		return tw.Flush()
	case "show":
		if len(rest) != 1 {
			return c.usageErr("usage: dkim show DOMAIN")
		}
		if err := c.call("GET", "/api/dkim/"+url.PathEscape(rest[0]), nil, &keys); err != nil {
			return err
		}
		if len(keys) == 0 {
			fmt.Fprintf(c.stdout, "%s has no DKIM keys yet (they are made within seconds on the leader)\n", rest[0])
			return nil
		}
		fmt.Fprintf(c.stdout, "DKIM keys of %s; publish these TXT records (the built-in DNS server does):\n", rest[0])
		for _, k := range keys {
			fmt.Fprintf(c.stdout, "\n; %s, %s, created %s\n", k.Algorithm, k.State, unixDate(k.Created))
			fmt.Fprintf(c.stdout, "%s. IN TXT %s\n", k.DNSName, quoteTXT(k.PublicTXT))
		}
	case "rotate":
		if len(rest) != 1 {
			return c.usageErr("usage: dkim rotate DOMAIN")
		}
		if err := c.call("POST", "/api/dkim/"+url.PathEscape(rest[0])+"/rotate", nil, &keys); err != nil {
			return err
		}
		var sels []string
		for _, k := range keys {
			sels = append(sels, k.Selector)
		}
		fmt.Fprintf(c.stdout, "new keys %s of %s are published in DNS; they start signing after the publish delay (--dkim-publish-delay),\nor now with: tandem dkim activate %s %s\n",
			strings.Join(sels, ", "), rest[0], rest[0], sels[0])
	case "activate":
		if len(rest) != 2 {
			return c.usageErr("usage: dkim activate DOMAIN SELECTOR")
		}
		if err := c.call("POST", "/api/dkim/"+url.PathEscape(rest[0])+"/activate/"+url.PathEscape(rest[1]), nil, &keys); err != nil {
			return err
		}
		for _, k := range keys {
			fmt.Fprintf(c.stdout, "%s %s is now %s\n", k.Domain, k.Selector, k.State)
		}
	default:
		return c.usageErr("unknown dkim subcommand %q", sub)
	}
	return nil
}

// quoteTXT splits a TXT value into quoted strings of at most 255 bytes
// (RFC 1035 §3.3), as zone files and DNS control panels take them.
func quoteTXT(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	parts = append(parts, `"`+v+`"`)
	if len(parts) == 1 {
		return parts[0]
	}
	return "( " + strings.Join(parts, " ") + " )"
}
