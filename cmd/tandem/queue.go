package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tandemmail/tandem/storage"
)

func (c *cli) log(args []string) error {
	if len(args) == 0 {
		return c.usageErr("log needs a subcommand: search, transcript QUEUEID")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "search":
		fs := flag.NewFlagSet("log search", flag.ContinueOnError)
		fs.SetOutput(c.stderr)
		q := url.Values{}
		for _, f := range []struct{ name, param, help string }{
			{"since", "since", "from this time (RFC 3339, YYYY-MM-DD[ HH:MM]) or this long ago (2h)"},
			{"until", "until", "up to this time"},
			{"from", "from", "envelope sender contains"},
			{"to", "to", "a recipient contains"},
			{"ip", "ip", "client IP (or prefix)"},
			{"subject", "subject", "subject contains"},
			{"event", "event", "received, delivered, deferred, bounced, rejected, ..."},
			{"queue-id", "queue_id", "one message"},
			{"limit", "limit", "at most this many records (default 1000)"},
		} {
			f := f
			fs.Func(f.name, f.help, func(v string) error { q.Set(f.param, v); return nil })
		}
		if err := fs.Parse(rest); err != nil {
			return errUsage
		}
		var recs []json.RawMessage
		if err := c.call("GET", "/api/log?"+q.Encode(), nil, &recs); err != nil {
			return err
		}
		for _, r := range recs {
			var compact strings.Builder
			json.NewEncoder(&compact).Encode(r)
			fmt.Fprint(c.stdout, compact.String())
		}
	case "transcript":
		if len(rest) != 1 {
			return c.usageErr("usage: log transcript QUEUEID")
		}
		var res struct {
			Attempts []string `json:"attempts"`
		}
		if err := c.call("GET", "/api/log/transcript/"+url.PathEscape(rest[0]), nil, &res); err != nil {
			return err
		}
		for i, t := range res.Attempts {
			if i > 0 {
				fmt.Fprintln(c.stdout)
			}
			fmt.Fprint(c.stdout, t)
			if !strings.HasSuffix(t, "\n") {
				fmt.Fprintln(c.stdout)
			}
		}
	default:
		return c.usageErr("unknown log subcommand %q", sub)
	}
	return nil
}

func (c *cli) queue(args []string) error {
	if len(args) == 0 {
		return c.usageErr("queue needs a subcommand: list, show ID, retry ID, delete ID, bounce ID")
	}
	sub, rest := args[0], args[1:]
	needID := func() (string, error) {
		if len(rest) != 1 {
			return "", c.usageErr("usage: queue %s ID", sub)
		}
		return url.PathEscape(rest[0]), nil
	}
	switch sub {
	case "list":
		var q []storage.QueueEntry
		if err := c.call("GET", "/api/queue", nil, &q); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "QUEUE ID\tAGE\tSIZE\tFROM\tPENDING\tNEXT ATTEMPT\tLAST ERROR")
		for _, e := range q {
			lastErr := ""
			for _, r := range e.Rcpts {
				if r.Status == storage.RcptPending && r.LastError != "" {
					lastErr = r.LastError
				}
			}
			if len(lastErr) > 60 {
				lastErr = lastErr[:60] + "..."
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, time.Since(e.Created).Round(time.Second), humanBytes(e.Size),
				dash(e.From), strings.Join(e.Pending(), ","), e.NextAttempt.Local().Format(time.DateTime), dash(lastErr))
		}
		tw.Flush()
		fmt.Fprintf(c.stdout, "%d messages queued\n", len(q))
	case "show":
		id, err := needID()
		if err != nil {
			return err
		}
		var e json.RawMessage
		if err := c.call("GET", "/api/queue/"+id, nil, &e); err != nil {
			return err
		}
		c.printJSON(e)
	case "retry":
		id, err := needID()
		if err != nil {
			return err
		}
		if err := c.call("POST", "/api/queue/"+id+"/retry", map[string]string{}, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s will be tried now\n", rest[0])
	case "delete":
		id, err := needID()
		if err != nil {
			return err
		}
		if err := c.call("DELETE", "/api/queue/"+id, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s deleted without a bounce\n", rest[0])
	case "bounce":
		id, err := needID()
		if err != nil {
			return err
		}
		if err := c.call("POST", "/api/queue/"+id+"/bounce", map[string]string{}, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s returned to its sender\n", rest[0])
	default:
		return c.usageErr("unknown queue subcommand %q", sub)
	}
	return nil
}
