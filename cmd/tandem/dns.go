package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/tandemmail/tandem/protocols/dnsd"
	"github.com/tandemmail/tandem/webui"
)

// listFlag collects a repeatable flag whose values may also be comma lists.
func listFlag(dst *[]string) func(string) error {
	return func(v string) error {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				*dst = append(*dst, p)
			}
		}
		return nil
	}
}

// dns administers the zones of the built-in DNS server (SPEC D1).
func (c *cli) dns(args []string) error {
	const use = "dns needs a subcommand: record add DOMAIN NAME TYPE VALUE [--ttl N], record set DOMAIN NAME TYPE VALUE... [--ttl N], record list DOMAIN, record del DOMAIN NAME TYPE [VALUE], zone DOMAIN"
	if len(args) == 0 {
		return c.usageErr(use)
	}
	switch args[0] {
	case "zone":
		if len(args) != 2 {
			return c.usageErr("usage: dns zone DOMAIN")
		}
		var v webui.DNSZoneView
		if err := c.call("GET", dnsRecordsPath(args[1]), nil, &v); err != nil {
			return err
		}
		_, err := io.WriteString(c.stdout, v.ZoneFile)
		return err
	case "record":
		if len(args) < 2 {
			return c.usageErr(use)
		}
		return c.dnsRecord(args[1], args[2:])
	default:
		return c.usageErr("unknown dns subcommand %q; %s", args[0], use)
	}
}

func dnsRecordsPath(domain string) string {
	return "/api/dns/" + url.PathEscape(domain) + "/records"
}

func (c *cli) dnsRecord(sub string, args []string) error {
	switch sub {
	case "add":
		fs := flag.NewFlagSet("dns record add", flag.ContinueOnError)
		fs.SetOutput(c.stderr)
		ttl := fs.Uint("ttl", 0, "TTL in seconds (default 3600)")
		pos, err := parseInterleaved(fs, args)
		if err != nil {
			return errUsage
		}
		if len(pos) < 4 {
			return c.usageErr("usage: dns record add DOMAIN NAME TYPE VALUE [--ttl N]   (NAME: @ for the domain itself, www, or a full name ending in '.')")
		}
		if *ttl > 1<<31-1 {
			return c.usageErr("--ttl %d: at most %d seconds", *ttl, 1<<31-1)
		}
		// The value may be given as several words (an MX "10 mail"): join them.
		rec := dnsd.Record{Name: pos[1], Type: strings.ToUpper(pos[2]), TTL: uint32(*ttl), Value: strings.Join(pos[3:], " ")}
		var v webui.DNSZoneView
		if err := c.call("POST", dnsRecordsPath(pos[0]), rec, &v); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "record added to %s; serial now %d\n", v.Domain, v.Serial)
		return nil
	case "set":
		fs := flag.NewFlagSet("dns record set", flag.ContinueOnError)
		fs.SetOutput(c.stderr)
		ttl := fs.Uint("ttl", 0, "TTL in seconds (default 3600)")
		pos, err := parseInterleaved(fs, args)
		if err != nil {
			return errUsage
		}
		if len(pos) < 4 {
			return c.usageErr("usage: dns record set DOMAIN NAME TYPE VALUE [VALUE...] [--ttl N]   (each VALUE one argument: quote '10 mail')")
		}
		if *ttl > 1<<31-1 {
			return c.usageErr("--ttl %d: at most %d seconds", *ttl, 1<<31-1)
		}
		req := webui.DNSSetRequest{Name: pos[1], Type: strings.ToUpper(pos[2]), TTL: uint32(*ttl), Values: pos[3:]}
		var v webui.DNSZoneView
		if err := c.call("PUT", dnsRecordsPath(pos[0]), req, &v); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "records set in %s; serial now %d\n", v.Domain, v.Serial)
		return nil
	case "list":
		if len(args) != 1 {
			return c.usageErr("usage: dns record list DOMAIN")
		}
		var v webui.DNSZoneView
		if err := c.call("GET", dnsRecordsPath(args[0]), nil, &v); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "zone %s serial %d (auto: made by the server; add a record of the same name and type to replace it)\n", v.Domain, v.Serial)
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tTTL\tTYPE\tVALUE\tSOURCE")
		for _, r := range v.Records {
			src := "admin"
			if r.Auto {
				src = "auto"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", r.Name, r.TTL, r.Type, shorten(r.Value), src)
		}
		return tw.Flush()
	case "del", "delete":
		if len(args) < 3 {
			return c.usageErr("usage: dns record del DOMAIN NAME TYPE [VALUE]")
		}
		q := url.Values{"name": {args[1]}, "type": {strings.ToUpper(args[2])}}
		if len(args) > 3 {
			q.Set("value", strings.Join(args[3:], " "))
		}
		var v webui.DNSZoneView
		if err := c.call("DELETE", dnsRecordsPath(args[0])+"?"+q.Encode(), nil, &v); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "record deleted from %s; serial now %d\n", v.Domain, v.Serial)
		return nil
	default:
		return c.usageErr("unknown dns record subcommand %q (add, set, list, del)", sub)
	}
}

// parseInterleaved parses flags that may stand anywhere among the
// positional arguments; "--" ends flags (for a TXT value starting with '-').
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// domainDNS prints the records a domain must publish where its DNS is hosted,
// or with --check looks them up and reports what is missing or wrong (exit
// code 1 then).
func (c *cli) domainDNS(args []string) error {
	fs := flag.NewFlagSet("domain dns", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	check := fs.Bool("check", false, "look the records up and say which are present, missing or wrong")
	resolver := fs.String("resolver", "", "resolver HOST[:PORT] for --check (default: the server's --dns-resolver, else /etc/resolv.conf)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return errUsage
	}
	if len(pos) != 1 {
		return c.usageErr("usage: domain dns NAME [--check [--resolver HOST:PORT]]")
	}
	path := "/api/domains/" + url.PathEscape(pos[0]) + "/dns"
	if !*check {
		if *resolver != "" {
			return c.usageErr("--resolver only goes with --check")
		}
		var v webui.DNSPublishView
		if err := c.call("GET", path, nil, &v); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "; Records to publish for %s where its DNS is hosted (zone-file format).\n", v.Domain)
		for _, r := range v.Records {
			fmt.Fprintf(c.stdout, "%s\t%d\tIN\t%s\t%s\n", r.Name, r.TTL, r.Type, r.Value)
		}
		for _, n := range v.Notes {
			fmt.Fprintf(c.stdout, "; NOTE: %s\n", n)
		}
		return nil
	}
	if *resolver != "" {
		path += "/check?resolver=" + url.QueryEscape(*resolver)
	} else {
		path += "/check"
	}
	var v webui.DNSCheckView
	if err := c.call("GET", path, nil, &v); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tNAME\tTYPE\tEXPECTED\tFOUND")
	problems := 0
	for _, r := range v.Results {
		found := strings.Join(r.Found, " | ")
		if r.Error != "" {
			found = r.Error
		}
		if r.Status != dnsd.CheckPresent {
			problems++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", strings.ToUpper(r.Status), r.Record.Name, r.Record.Type, shorten(r.Record.Value), shorten(found))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if problems > 0 {
		return fmt.Errorf("%s: %s of %d records missing or wrong (asked %s)", v.Domain, strconv.Itoa(problems), len(v.Results), v.Resolver)
	}
	fmt.Fprintf(c.stdout, "all %d records of %s are published (asked %s)\n", len(v.Results), v.Domain, v.Resolver)
	return nil
}

// shorten keeps table columns readable: long values (DKIM keys) are cut in
// the middle; 'dns zone' and 'domain dns' print them whole.
func shorten(v string) string {
	const limit = 72
	if len(v) <= limit {
		return v
	}
	return v[:limit/2-2] + " .. " + v[len(v)-limit/2+2:]
}
