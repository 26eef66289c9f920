package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"
)

// quarantine runs 'tandem quarantine list|release|delete|digest'.
func (c *cli) quarantine(args []string) error {
	const use = "quarantine list [ADDRESS] [--json] | release ID... | delete ID... | digest"
	if len(args) == 0 {
		return c.usageErr(use)
	}
	switch args[0] {
	case "list":
		path, asJSON := "/api/quarantine", false
		for _, a := range args[1:] {
			switch {
			case a == "--json":
				asJSON = true
			case len(a) > 0 && a[0] != '-':
				path = "/api/quarantine?account=" + url.QueryEscape(a)
			default:
				return c.usageErr(use)
			}
		}
		var recs []struct {
			ID         string  `json:"id"`
			Address    string  `json:"address"`
			From       string  `json:"from"`
			Subject    string  `json:"subject"`
			Score      float64 `json:"score"`
			Held       int64   `json:"held"`
			ReleaseURL string  `json:"release_url"`
		}
		var raw json.RawMessage
		if err := c.call("GET", path, nil, &raw); err != nil {
			return err
		}
		if asJSON {
			c.printJSON(raw)
			return nil
		}
		if err := json.Unmarshal(raw, &recs); err != nil {
			return fmt.Errorf("read answer: %w", err)
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tUSER\tHELD\tSCORE\tFROM\tSUBJECT")
		for _, r := range recs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%s\t%s\n", r.ID, r.Address, time.Unix(r.Held, 0).UTC().Format(time.DateTime),
				r.Score, trunc(r.From, 40), trunc(r.Subject, 50))
		}
		tw.Flush()
		return nil
	case "release", "delete":
		if len(args) < 2 {
			return c.usageErr(use)
		}
		var out json.RawMessage
		if err := c.call("POST", "/api/quarantine/"+args[0], map[string]any{"ids": args[1:]}, &out); err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		verb := "released to INBOX"
		if args[0] == "delete" {
			verb = "deleted"
		}
		fmt.Fprintf(c.stdout, "%d message(s) %s\n", len(args)-1, verb)
		return nil
	case "digest":
		var out struct {
			Sent int `json:"sent"`
		}
		if err := c.call("POST", "/api/quarantine/digest", nil, &out); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%d digest(s) sent\n", out.Sent)
		return nil
	}
	return c.usageErr(use)
}

func trunc(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
