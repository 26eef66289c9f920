package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tandemmail/tandem/webui"
)

// settings exports or imports the whole configuration as one file
// (webui/settings.go: domains, accounts with password hashes, aliases,
// feature settings).
func (c *cli) settings(args []string) error {
	if len(args) == 0 {
		return c.usageErr("settings needs a subcommand: export [FILE] or import FILE|-")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "export":
		if len(rest) > 1 {
			return c.usageErr("usage: settings export [FILE]  (default: standard output)")
		}
		resp, err := c.do("GET", "/api/settings/export", nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		out := c.stdout
		if len(rest) == 1 && rest[0] != "-" {
			// The file holds password hashes and any uploaded TLS key.
			f, err := os.OpenFile(rest[0], os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return fmt.Errorf("settings export: %w", err)
			}
			defer f.Close()
			out = f
		}
		if _, err := io.Copy(out, resp.Body); err != nil {
			return fmt.Errorf("settings export: %w", err)
		}
		if f, ok := out.(*os.File); ok && f != os.Stdout {
			if err := f.Close(); err != nil {
				return fmt.Errorf("settings export: %w", err)
			}
			fmt.Fprintf(c.stderr, "settings written to %s (keep it secret: it holds password hashes)\n", rest[0])
		}
		return nil
	case "import":
		if len(rest) != 1 {
			return c.usageErr("usage: settings import FILE|-")
		}
		var in io.Reader = c.stdin
		if rest[0] != "-" {
			f, err := os.Open(rest[0])
			if err != nil {
				return fmt.Errorf("settings import: %w", err)
			}
			defer f.Close()
			in = f
		}
		var rep webui.SettingsReport
		if err := c.call("POST", "/api/settings/import", in, &rep); err != nil {
			return fmt.Errorf("settings import: %w", err)
		}
		for _, k := range []struct {
			name string
			n    webui.SettingsCounts
		}{{"domains", rep.Domains}, {"accounts", rep.Accounts}, {"aliases", rep.Aliases}, {"settings (kv)", rep.KV}} {
			fmt.Fprintf(c.stdout, "%-14s %d created, %d updated, %d unchanged, %d failed\n", k.name, k.n.Created, k.n.Updated, k.n.Unchanged, k.n.Failed)
		}
		for _, e := range rep.Errors {
			fmt.Fprintln(c.stdout, "error:", e)
		}
		if len(rep.Errors) > 0 {
			return fmt.Errorf("settings import: %d item(s) failed", len(rep.Errors))
		}
		return nil
	default:
		return c.usageErr("unknown settings subcommand %q: export [FILE] or import FILE|-", sub)
	}
}

// cert shows or replaces the certificate every node serves
// (webui/certs.go).
func (c *cli) cert(args []string) error {
	if len(args) == 0 {
		return c.usageErr("cert needs a subcommand: show, upload CERT.pem KEY.pem, remove")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "show":
		var out json.RawMessage
		if err := c.call("GET", "/api/certificates", nil, &out); err != nil {
			return err
		}
		c.printJSON(out)
		return nil
	case "upload":
		if len(rest) != 2 {
			return c.usageErr("usage: cert upload CERT.pem KEY.pem  (the chain, leaf first, and its private key)")
		}
		certPEM, err := os.ReadFile(rest[0])
		if err != nil {
			return fmt.Errorf("cert upload: %w", err)
		}
		keyPEM, err := os.ReadFile(rest[1])
		if err != nil {
			return fmt.Errorf("cert upload: %w", err)
		}
		var out json.RawMessage
		if err := c.call("PUT", "/api/certificates", map[string]string{"cert_pem": string(certPEM), "key_pem": string(keyPEM)}, &out); err != nil {
			return fmt.Errorf("cert upload: %w", err)
		}
		c.printJSON(out)
		return nil
	case "remove":
		if len(rest) != 0 {
			return c.usageErr("usage: cert remove")
		}
		return c.call("DELETE", "/api/certificates", nil, nil)
	default:
		return c.usageErr("unknown cert subcommand %q: show, upload CERT.pem KEY.pem, remove", sub)
	}
}

// network shows and changes the box's addresses (with confirm-or-roll-back)
// and the remote-management switches (webui/network.go).
func (c *cli) network(args []string) error {
	const help = "network show | apply IFACE CIDR... [--gw4 IP] [--gw6 IP] [--rollback 120] | confirm ID | rollback ID | remote [ping=on|off] [http=on|off] [https=on|off]"
	if len(args) == 0 {
		return c.usageErr("usage: %s", help)
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "show":
		var out json.RawMessage
		if err := c.call("GET", "/api/network/interfaces", nil, &out); err != nil {
			return err
		}
		c.printJSON(out)
		return nil
	case "apply":
		fs := flag.NewFlagSet("network apply", flag.ContinueOnError)
		fs.SetOutput(c.stderr)
		gw4 := fs.String("gw4", "", "IPv4 default gateway")
		gw6 := fs.String("gw6", "", "IPv6 default gateway")
		rollback := fs.Int("rollback", 120, "seconds until the change is undone unless confirmed")
		var pos []string
		for len(rest) > 0 {
			if err := fs.Parse(rest); err != nil {
				return errUsage
			}
			if fs.NArg() == 0 {
				break
			}
			pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
		}
		if len(pos) < 2 {
			return c.usageErr("usage: network apply IFACE CIDR... [--gw4 IP] [--gw6 IP] [--rollback 120]")
		}
		var out struct {
			ID       string    `json:"id"`
			Deadline time.Time `json:"deadline"`
		}
		req := webui.NetworkApplyRequest{Interface: pos[0], Addrs: pos[1:], Gateway4: *gw4, Gateway6: *gw6, RollbackSeconds: *rollback}
		if err := c.call("POST", "/api/network/apply", req, &out); err != nil {
			return fmt.Errorf("network apply: %w", err)
		}
		fmt.Fprintf(c.stdout, "applied; undone at %s unless you run:\n  tandem --data %s network confirm %s\n",
			out.Deadline.Local().Format(time.TimeOnly), c.data, out.ID)
		return nil
	case "confirm", "rollback":
		if len(rest) != 1 {
			return c.usageErr("usage: network %s ID", sub)
		}
		if err := c.call("POST", "/api/network/"+sub+"/"+url.PathEscape(rest[0]), nil, nil); err != nil {
			return fmt.Errorf("network %s: %w", sub, err)
		}
		fmt.Fprintf(c.stdout, "%s: done\n", sub)
		return nil
	case "remote":
		body := map[string]bool{}
		for _, kv := range rest {
			k, v, ok := strings.Cut(kv, "=")
			if k == "https" {
				k = "https_admin"
			}
			if !ok || (v != "on" && v != "off") || (k != "ping" && k != "http" && k != "https_admin") {
				return c.usageErr("network remote: %q: want ping=on|off, http=on|off or https=on|off", kv)
			}
			body[k] = v == "on"
		}
		var out json.RawMessage
		var err error
		if len(body) == 0 {
			err = c.call("GET", "/api/network/remote", nil, &out)
		} else {
			err = c.call("PUT", "/api/network/remote", body, &out)
		}
		if err != nil {
			return fmt.Errorf("network remote: %w", err)
		}
		c.printJSON(out)
		return nil
	default:
		return c.usageErr("usage: %s", help)
	}
}

// tool runs a network tool on the box and prints its output as it comes
// (webui/tools.go).
func (c *cli) tool(args []string) error {
	const help = "tool ping HOST [COUNT] | traceroute HOST | dns NAME [TYPE] [SERVER] | tcp HOST PORT"
	if len(args) < 2 {
		return c.usageErr("usage: %s", help)
	}
	req := webui.ToolRequest{}
	name, rest := args[0], args[1:]
	atoi := func(s, what string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, c.usageErr("tool %s: %s %q is not a number", name, what, s)
		}
		return n, nil
	}
	var err error
	switch {
	case name == "ping" && len(rest) <= 2:
		req.Host = rest[0]
		if len(rest) == 2 {
			req.Count, err = atoi(rest[1], "count")
		}
	case name == "traceroute" && len(rest) == 1:
		req.Host = rest[0]
	case name == "dns" && len(rest) <= 3:
		req.Name = rest[0]
		if len(rest) > 1 {
			req.Type = rest[1]
		}
		if len(rest) > 2 {
			req.Server = rest[2]
		}
	case name == "tcp" && len(rest) == 2:
		req.Host = rest[0]
		req.Port, err = atoi(rest[1], "port")
	default:
		return c.usageErr("usage: %s", help)
	}
	if err != nil {
		return err
	}
	resp, err := c.do("POST", "/api/tools/"+name, req)
	if err != nil {
		return fmt.Errorf("tool %s: %w", name, err)
	}
	defer resp.Body.Close()
	_, err = io.Copy(c.stdout, resp.Body)
	return err
}
