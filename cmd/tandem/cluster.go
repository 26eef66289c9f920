package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

type clusterStatus struct {
	Node    string `json:"node"`
	Leader  string `json:"leader"`
	Term    uint64 `json:"term"`
	Quorum  int    `json:"quorum"`
	VIP     string `json:"vip"`
	VIPHeld string `json:"vip_holder"`
	Members []struct {
		ID           string `json:"id"`
		Addr         string `json:"addr"`
		Voter        bool   `json:"voter"`
		Self         bool   `json:"self"`
		Role         string `json:"role"`
		Health       string `json:"health"`
		AppliedIndex uint64 `json:"applied_index"`
		Lag          uint64 `json:"lag"`
	} `json:"members"`
	Events []struct {
		Time     time.Time     `json:"time"`
		Leader   string        `json:"leader"`
		Term     uint64        `json:"term"`
		Downtime time.Duration `json:"downtime_ns"`
		Kind     string        `json:"kind"`
	} `json:"events"`
}

func (c *cli) cluster(args []string) error {
	if len(args) == 0 {
		return c.usageErr("cluster needs a subcommand: status, join, leave, remove ID, transfer-leadership [ID]")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "status":
		jsonOut := len(rest) == 1 && rest[0] == "--json"
		var raw json.RawMessage
		if err := c.call("GET", "/api/cluster", nil, &raw); err != nil {
			return err
		}
		if jsonOut {
			c.printJSON(raw)
			return nil
		}
		var st clusterStatus
		if err := json.Unmarshal(raw, &st); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "leader %s, term %d, quorum %d of %d\n", dash(st.Leader), st.Term, st.Quorum, len(st.Members))
		if st.VIP != "" {
			fmt.Fprintf(c.stdout, "virtual IP %s held by %s\n", st.VIP, dash(st.VIPHeld))
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tADDRESS\tROLE\tVOTER\tHEALTH\tAPPLIED\tLAG")
		for _, m := range st.Members {
			id := m.ID
			if m.Self {
				id += " (this node)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%d\t%d\n", id, m.Addr, m.Role, m.Voter, m.Health, m.AppliedIndex, m.Lag)
		}
		tw.Flush()
		if len(st.Events) > 0 {
			fmt.Fprintln(c.stdout, "\nrecent leadership changes:")
			for _, e := range st.Events {
				line := fmt.Sprintf("  %s  %-12s term %-4d leader %s", e.Time.Local().Format(time.DateTime), e.Kind, e.Term, dash(e.Leader))
				if e.Downtime > 0 {
					line += fmt.Sprintf("  (no leader for %s)", e.Downtime.Round(time.Millisecond))
				}
				fmt.Fprintln(c.stdout, line)
			}
		}
	case "join":
		var res struct {
			Command string `json:"command"`
		}
		if err := c.call("GET", "/api/cluster/join-command", nil, &res); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "On the new box, start Tandem with (keep the secret private):\n  %s\n", res.Command)
	case "drill":
		kill, target := false, ""
		for i := 0; i < len(rest); i++ {
			switch rest[i] {
			case "--kill":
				kill = true
			case "--target":
				if i+1 >= len(rest) {
					return c.usageErr("--target needs a host")
				}
				target = rest[i+1]
				i++
			default:
				return c.usageErr("usage: cluster drill [--kill] [--target HOST]")
			}
		}
		fmt.Fprintln(c.stderr, "running a failover drill: mail keeps flowing to a throw-away account while leadership moves...")
		var rep struct {
			Text   string `json:"text"`
			Passed bool   `json:"passed"`
		}
		if err := c.call("POST", "/api/cluster/drill", map[string]any{"kill": kill, "target": target}, &rep); err != nil {
			return err
		}
		fmt.Fprint(c.stdout, rep.Text)
		if !rep.Passed {
			return fmt.Errorf("drill failed")
		}
	case "promote":
		if len(rest) < 1 || rest[0] != "--i-understand-split-brain" {
			return c.usageErr("usage: cluster promote --i-understand-split-brain [REASON]\n" +
				"Makes this node serve alone when its partner is gone for good. If the partner is in fact\n" +
				"alive and serving, you will have two diverging mail systems.")
		}
		reason := strings.Join(rest[1:], " ")
		if err := c.call("POST", "/api/cluster/promote", map[string]string{"confirm": "i-understand-split-brain", "reason": reason}, nil); err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, "this node now serves alone; wipe the lost node's data folder before it joins again")
	case "leave":
		if err := c.call("POST", "/api/cluster/leave", map[string]string{}, nil); err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, "this node left the cluster; stop it now")
	case "remove":
		if len(rest) != 1 {
			return c.usageErr("usage: cluster remove ID")
		}
		if err := c.call("POST", "/api/cluster/remove", map[string]string{"id": rest[0]}, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "node %s removed\n", rest[0])
	case "transfer-leadership":
		id := ""
		if len(rest) == 1 {
			id = rest[0]
		} else if len(rest) > 1 {
			return c.usageErr("usage: cluster transfer-leadership [ID]")
		}
		if err := c.call("POST", "/api/cluster/transfer-leadership", map[string]string{"id": id}, nil); err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, "leadership transferred")
	default:
		return c.usageErr("unknown cluster subcommand %q", sub)
	}
	return nil
}
