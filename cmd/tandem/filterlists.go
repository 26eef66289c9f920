package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Sender-reputation commands (filter list|dnsbl|greylist|rule|fingerprint).
// They talk to the API routes of webui/filterlists.go.

// filterReputation dispatches the reputation subcommands of 'tandem filter'.
func (c *cli) filterReputation(sub string, rest []string) error {
	switch sub {
	case "list":
		return c.filterList(rest)
	case "dnsbl":
		return c.filterDNSBL(rest)
	case "greylist":
		return c.filterGreylist(rest)
	case "rule":
		return c.filterRule(rest)
	case "fingerprint":
		return c.filterFingerprint(rest)
	}
	return c.usageErr("filter: unknown subcommand %q", sub)
}

type cliListsDoc struct {
	Scope string   `json:"scope"`
	Block []string `json:"block"`
	Allow []string `json:"allow"`
}

func (c *cli) printLists(docs []cliListsDoc) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCOPE\tLIST\tENTRY")
	for _, d := range docs {
		for _, e := range d.Block {
			fmt.Fprintf(tw, "%s\tblock\t%s\n", d.Scope, e)
		}
		for _, e := range d.Allow {
			fmt.Fprintf(tw, "%s\tallow\t%s\n", d.Scope, e)
		}
	}
	tw.Flush()
}

func (c *cli) filterList(args []string) error {
	if len(args) == 0 {
		return c.usageErr("filter list needs a subcommand: show, add, del")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "show":
		if len(rest) > 1 {
			return c.usageErr("usage: filter list show [SCOPE]")
		}
		path := "/api/filter/lists"
		if len(rest) == 1 {
			path += "?scope=" + url.QueryEscape(rest[0])
		}
		var docs []cliListsDoc
		if err := c.call("GET", path, nil, &docs); err != nil {
			return err
		}
		c.printLists(docs)
	case "add", "del":
		if len(rest) < 3 {
			return c.usageErr("usage: filter list %s SCOPE block|allow ENTRY...", sub)
		}
		if rest[1] != "block" && rest[1] != "allow" {
			return c.usageErr("filter list %s: the list is block or allow, not %q", sub, rest[1])
		}
		method := "POST"
		if sub == "del" {
			method = "DELETE"
		}
		var doc cliListsDoc
		req := map[string]any{"scope": rest[0], "list": rest[1], "entries": rest[2:]}
		if err := c.call(method, "/api/filter/lists", req, &doc); err != nil {
			return err
		}
		c.printLists([]cliListsDoc{doc})
	default:
		return c.usageErr("unknown filter list subcommand %q", sub)
	}
	return nil
}

func (c *cli) filterDNSBL(args []string) error {
	if len(args) == 0 {
		return c.usageErr("filter dnsbl needs a subcommand: list, add, del")
	}
	type zone struct {
		Zone   string   `json:"zone"`
		Kind   string   `json:"kind"`
		Score  float64  `json:"score"`
		Reject bool     `json:"reject,omitempty"`
		Match  []string `json:"match,omitempty"`
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "list", "show":
		var zs []zone
		if err := c.call("GET", "/api/filter/dnsbl", nil, &zs); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ZONE\tKIND\tSCORE\tREJECT\tMATCH")
		for _, z := range zs {
			m := "any 127.0.0.0/8"
			if len(z.Match) > 0 {
				m = strings.Join(z.Match, ",")
			}
			fmt.Fprintf(tw, "%s\t%s\t%g\t%v\t%s\n", z.Zone, z.Kind, z.Score, z.Reject, m)
		}
		tw.Flush()
	case "add":
		fs := flag.NewFlagSet("filter dnsbl add", flag.ContinueOnError)
		fs.SetOutput(c.stderr)
		allow := fs.Bool("allow", false, "an allow list (DNSWL): a hit lowers the score")
		score := fs.Float64("score", 0, "points a hit adds (block) or subtracts (allow); default 3")
		rej := fs.Bool("reject", false, "refuse listed clients at connect (block lists only)")
		match := fs.String("match", "", "answers that count, e.g. 127.0.0.2-127.0.0.11,127.0.0.20")
		zoneName, flags := firstArg(rest)
		if err := fs.Parse(flags); err != nil || zoneName == "" || fs.NArg() > 0 {
			return c.usageErr("usage: filter dnsbl add ZONE [--allow] [--score N] [--reject] [--match RANGES]")
		}
		z := zone{Zone: zoneName, Kind: "block", Score: *score, Reject: *rej}
		if *allow {
			z.Kind = "allow"
		}
		if *match != "" {
			z.Match = strings.Split(*match, ",")
		}
		var out zone
		if err := c.call("POST", "/api/filter/dnsbl", z, &out); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s list %s added (score %g, reject %v)\n", out.Kind, out.Zone, out.Score, out.Reject)
	case "del":
		if len(rest) != 1 {
			return c.usageErr("usage: filter dnsbl del ZONE")
		}
		if err := c.call("DELETE", "/api/filter/dnsbl/"+url.PathEscape(rest[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "zone %s removed\n", rest[0])
	default:
		return c.usageErr("unknown filter dnsbl subcommand %q", sub)
	}
	return nil
}

// firstArg splits "NAME --flags..." into the name and the flags.
func firstArg(args []string) (string, []string) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", args
	}
	return args[0], args[1:]
}

// parseDays is time.ParseDuration that also knows "36d".
func parseDays(s string) (int64, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(d, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("duration %q: want e.g. 36d, 24h, 5m", s)
		}
		return int64(n * 86400), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("duration %q: want e.g. 36d, 24h, 5m, 90s", s)
	}
	return int64((d + time.Second - 1) / time.Second), nil
}

func (c *cli) filterGreylist(args []string) error {
	if len(args) == 0 {
		return c.usageErr("filter greylist needs a subcommand: show, on, off")
	}
	type settings struct {
		Enabled             bool     `json:"enabled"`
		Domains             []string `json:"domains"`
		DelaySeconds        int64    `json:"delay_seconds"`
		ExpirySeconds       int64    `json:"expiry_seconds"`
		PassValidSeconds    int64    `json:"pass_valid_seconds"`
		AutoWhitelistPasses int      `json:"auto_whitelist_passes"`
	}
	show := func(s settings) {
		state := "off"
		switch {
		case s.Enabled:
			state = "on for all domains"
		case len(s.Domains) > 0:
			state = "on for " + strings.Join(s.Domains, ", ")
		}
		or := func(n, def int64) string {
			if n <= 0 {
				n = def
			}
			if n >= 86400 && n%86400 == 0 {
				return fmt.Sprintf("%dd", n/86400)
			}
			return (time.Duration(n) * time.Second).String()
		}
		passes := strconv.Itoa(s.AutoWhitelistPasses)
		switch {
		case s.AutoWhitelistPasses == 0:
			passes = "5"
		case s.AutoWhitelistPasses < 0:
			passes = "never"
		}
		fmt.Fprintf(c.stdout, "greylisting %s; delay %s, expiry %s, passes valid %s, network whitelisted after %s passes\n",
			state, or(s.DelaySeconds, 300), or(s.ExpirySeconds, 86400), or(s.PassValidSeconds, 36*86400), passes)
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "show":
		var st struct {
			Settings settings `json:"settings"`
			Triplets []struct {
				Network string `json:"net"`
				From    string `json:"from"`
				Rcpt    string `json:"rcpt"`
				First   int64  `json:"first"`
				Passed  int64  `json:"passed"`
			} `json:"triplets"`
		}
		if err := c.call("GET", "/api/filter/greylist", nil, &st); err != nil {
			return err
		}
		show(st.Settings)
		if len(st.Triplets) > 0 {
			tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NETWORK\tSENDER\tRECIPIENT\tFIRST SEEN\tPASSED")
			for _, t := range st.Triplets {
				passed := "-"
				if t.Passed != 0 {
					passed = time.Unix(t.Passed, 0).Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Network, t.From, t.Rcpt, time.Unix(t.First, 0).Format(time.DateTime), passed)
			}
			tw.Flush()
		}
	case "on", "off", "set":
		fs := flag.NewFlagSet("filter greylist "+sub, flag.ContinueOnError)
		fs.SetOutput(c.stderr)
		var domains []string
		fs.Func("domain", "only for this domain (repeatable)", func(v string) error { domains = append(domains, v); return nil })
		req := map[string]any{}
		for _, f := range []struct{ name, key, help string }{
			{"delay", "delay_seconds", "wait before a retry passes (default 5m)"},
			{"expiry", "expiry_seconds", "how long a first attempt can be retried (default 24h)"},
			{"pass-valid", "pass_valid_seconds", "how long a passed triplet passes at once (default 36d)"},
		} {
			fs.Func(f.name, f.help, func(v string) error {
				n, err := parseDays(v)
				req[f.key] = n
				return err
			})
		}
		fs.Func("auto-passes", "passes after which a client network passes at once (default 5; -1 never)", func(v string) error {
			n, err := strconv.Atoi(v)
			req["auto_whitelist_passes"] = n
			return err
		})
		if err := fs.Parse(rest); err != nil || fs.NArg() > 0 {
			return c.usageErr("usage: filter greylist on|off|set [--domain D]... [--delay 5m] [--expiry 24h] [--pass-valid 36d] [--auto-passes N]")
		}
		switch {
		case sub == "set":
		case len(domains) == 0:
			req["enabled"] = sub == "on"
		case sub == "on":
			req["add_domains"] = domains
		default:
			req["remove_domains"] = domains
		}
		var st settings
		if err := c.call("PATCH", "/api/filter/greylist", req, &st); err != nil {
			return err
		}
		show(st)
	default:
		return c.usageErr("unknown filter greylist subcommand %q", sub)
	}
	return nil
}

type cliRule struct {
	ID     string  `json:"id,omitempty"`
	Field  string  `json:"field"`
	Header string  `json:"header,omitempty"`
	Op     string  `json:"op"`
	Value  string  `json:"value"`
	Action string  `json:"action"`
	Score  float64 `json:"score,omitempty"`
}

func (c *cli) printRules(rs []cliRule) {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tFIELD\tOP\tVALUE\tACTION")
	for _, r := range rs {
		field, action := r.Field, r.Action
		if r.Header != "" {
			field += ":" + r.Header
		}
		if r.Action == "score" {
			action = fmt.Sprintf("score %+g", r.Score)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%q\t%s\n", r.ID, field, r.Op, r.Value, action)
	}
	tw.Flush()
}

func (c *cli) filterRule(args []string) error {
	if len(args) == 0 {
		return c.usageErr("filter rule needs a subcommand: list, add, del")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "list", "show":
		if len(rest) != 1 {
			return c.usageErr("usage: filter rule list USER")
		}
		var rs []cliRule
		if err := c.call("GET", "/api/filter/rules?user="+url.QueryEscape(rest[0]), nil, &rs); err != nil {
			return err
		}
		c.printRules(rs)
	case "add":
		fs := flag.NewFlagSet("filter rule add", flag.ContinueOnError)
		fs.SetOutput(c.stderr)
		var r cliRule
		fs.StringVar(&r.Field, "field", "", "from, to (To and Cc), subject or header")
		fs.StringVar(&r.Header, "header", "", "the header field's name, with --field header")
		fs.StringVar(&r.Op, "op", "contains", "contains, equals or regex (RE2)")
		fs.StringVar(&r.Value, "value", "", "the text or expression")
		fs.StringVar(&r.Action, "action", "", "allow, block or score")
		fs.Float64Var(&r.Score, "score", 0, "points for --action score (negative: less spammy)")
		user, flags := firstArg(rest)
		if err := fs.Parse(flags); err != nil || user == "" || fs.NArg() > 0 {
			return c.usageErr("usage: filter rule add USER --field F [--header NAME] --op OP --value TEXT --action allow|block|score [--score N]")
		}
		req := map[string]any{"user": user, "field": r.Field, "header": r.Header, "op": r.Op, "value": r.Value, "action": r.Action, "score": r.Score}
		var out cliRule
		if err := c.call("POST", "/api/filter/rules", req, &out); err != nil {
			return err
		}
		c.printRules([]cliRule{out})
	case "del":
		if len(rest) != 2 {
			return c.usageErr("usage: filter rule del USER ID")
		}
		if err := c.call("DELETE", "/api/filter/rules/"+url.PathEscape(rest[0])+"/"+url.PathEscape(rest[1]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "rule %s of %s deleted\n", rest[1], rest[0])
	default:
		return c.usageErr("unknown filter rule subcommand %q", sub)
	}
	return nil
}

func (c *cli) filterFingerprint(args []string) error {
	if len(args) == 0 {
		return c.usageErr("filter fingerprint needs a subcommand: add, list, del")
	}
	type info struct {
		Key   string    `json:"key"`
		Added time.Time `json:"added"`
		Note  string    `json:"note"`
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "add":
		fs := flag.NewFlagSet("filter fingerprint add", flag.ContinueOnError)
		fs.SetOutput(c.stderr)
		note := fs.String("note", "", "a note kept with the fingerprint")
		if err := fs.Parse(rest); err != nil {
			return errUsage
		}
		add := func(name string, r io.Reader) error {
			var out info
			if err := c.call("POST", "/api/filter/fingerprints?note="+url.QueryEscape(*note), r, &out); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			fmt.Fprintf(c.stdout, "fingerprint %s added (%s)\n", out.Key, name)
			return nil
		}
		if fs.NArg() == 0 {
			return add("stdin", c.stdin)
		}
		for _, p := range fs.Args() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			err = add(p, f)
			f.Close()
			if err != nil {
				return err
			}
		}
	case "list", "show":
		var is []info
		if err := c.call("GET", "/api/filter/fingerprints", nil, &is); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tADDED\tNOTE")
		for _, i := range is {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", i.Key, i.Added.Local().Format(time.DateTime), i.Note)
		}
		tw.Flush()
	case "del":
		if len(rest) != 1 {
			return c.usageErr("usage: filter fingerprint del KEY")
		}
		if err := c.call("DELETE", "/api/filter/fingerprints/"+url.PathEscape(rest[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "fingerprint %s deleted\n", rest[0])
	default:
		return c.usageErr("unknown filter fingerprint subcommand %q", sub)
	}
	return nil
}
