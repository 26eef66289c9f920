package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tandemmail/tandem/node"
	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/webui"
	"golang.org/x/term"
)

var errUsage = errors.New("usage")

// cli is the admin client: it talks to the running node's JSON API over
// the unix socket in the data folder (DESIGN §7).
type cli struct {
	data           string
	stdin          io.Reader
	stdout, stderr io.Writer
}

func (c *cli) client() *http.Client {
	sock := node.AdminSocket(c.data)
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

// call sends a request to the API and decodes a JSON answer into out.
func (c *cli) call(method, path string, body any, out any) error {
	resp, err := c.do(method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("read answer: %w", err)
		}
	}
	return nil
}

func (c *cli) do(method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case io.Reader:
		rd, ctype = b, "text/csv"
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, "http://tandem"+path, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the tandem server of data folder %q (is it running? start it with 'tandem serve --data %s'): %w", c.data, c.data, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("server answered %s", resp.Status)
	}
	return resp, nil
}

func (c *cli) printJSON(v any) {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (c *cli) status(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("status takes no arguments")
	}
	var st json.RawMessage
	if err := c.call("GET", "/api/status", nil, &st); err != nil {
		return err
	}
	c.printJSON(st)
	return nil
}

func (c *cli) usageErr(format string, a ...any) error {
	fmt.Fprintf(c.stderr, "tandem: "+format+"\n", a...)
	return errUsage
}

func (c *cli) domain(args []string) error {
	if len(args) == 0 {
		return c.usageErr("domain needs a subcommand: add, list, del, catchall")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "add":
		if len(rest) != 1 {
			return c.usageErr("usage: domain add NAME")
		}
		if err := c.call("POST", "/api/domains", map[string]string{"name": rest[0]}, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "domain %s added\n", strings.ToLower(rest[0]))
	case "list":
		var ds []storage.Domain
		if err := c.call("GET", "/api/domains", nil, &ds); err != nil {
			return err
		}
		gw := c.gatewayColumn() // cmd/tandem/gateway.go
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DOMAIN\tCATCH-ALL\tCREATED\tGATEWAY")
		for _, d := range ds {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Name, dash(d.CatchAll), d.Created.Format(time.DateTime), dash(gw[d.Name]))
		}
		tw.Flush()
	case "del":
		if len(rest) != 1 {
			return c.usageErr("usage: domain del NAME")
		}
		if err := c.call("DELETE", "/api/domains/"+url.PathEscape(rest[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "domain %s deleted\n", rest[0])
	case "catchall":
		if len(rest) < 1 || len(rest) > 2 {
			return c.usageErr("usage: domain catchall NAME [TARGET]")
		}
		target := ""
		if len(rest) == 2 {
			target = rest[1]
		}
		if err := c.call("PUT", "/api/domains/"+url.PathEscape(rest[0])+"/catchall", map[string]string{"target": target}, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "catch-all of %s set to %s\n", rest[0], dash(target))
	case "signature":
		return c.domainSignature(rest)
	case "dns":
		return c.domainDNS(rest)
	case "gateway":
		return c.domainGateway(rest)
	default:
		return c.usageErr("unknown domain subcommand %q", sub)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// readPassword takes --password, --password-stdin, or prompts on a terminal.
func (c *cli) readPassword(pw string, fromStdin bool) (string, error) {
	switch {
	case pw != "" && fromStdin:
		return "", errors.New("give --password or --password-stdin, not both")
	case pw != "":
		return pw, nil
	case fromStdin:
		line, err := bufio.NewReader(c.stdin).ReadString('\n')
		if err != nil && err != io.EOF {
			return "", fmt.Errorf("read password from stdin: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return "", errors.New("empty password on stdin")
		}
		return line, nil
	}
	if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(c.stderr, "Password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", err
		}
		if len(b) == 0 {
			return "", errors.New("empty password")
		}
		return string(b), nil
	}
	return "", errors.New("no password: use --password PW or --password-stdin")
}

func (c *cli) account(args []string) error {
	if len(args) == 0 {
		return c.usageErr("account needs a subcommand: add, list, del, passwd, import")
	}
	sub, rest := args[0], args[1:]
	if sub == "admin" {
		return c.accountAdmin(rest) // cmd/tandem/webadmin.go
	}
	fs := flag.NewFlagSet("account "+sub, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	pw := fs.String("password", "", "password")
	pwStdin := fs.Bool("password-stdin", false, "read the password from the first line of stdin")
	name := fs.String("name", "", "display name")
	quota := fs.String("quota", "", "quota, e.g. 2G (default: unlimited)")
	admin := fs.Bool("admin", false, "make the account an administrator")
	domain := fs.String("domain", "", "only this domain")
	search := fs.String("search", "", "address or name contains")
	// Flags may follow the address: account add a@b --password x.
	var pos []string
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
	switch sub {
	case "add":
		if len(pos) != 1 {
			return c.usageErr("usage: account add ADDR (--password PW | --password-stdin) [--name N] [--quota Q] [--admin]")
		}
		p, err := c.readPassword(*pw, *pwStdin)
		if err != nil {
			return err
		}
		var acct storage.Account
		if err := c.call("POST", "/api/accounts", map[string]any{"address": pos[0], "password": p,
			"display_name": *name, "quota": *quota, "admin": *admin}, &acct); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "account %s added\n", acct.Address)
	case "list":
		q := url.Values{}
		if *domain != "" {
			q.Set("domain", *domain)
		}
		if *search != "" {
			q.Set("search", *search)
		}
		var res struct {
			Total    int               `json:"total"`
			Accounts []storage.Account `json:"accounts"`
		}
		if err := c.call("GET", "/api/accounts?"+q.Encode(), nil, &res); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDRESS\tNAME\tUSED\tQUOTA\tADMIN")
		for _, a := range res.Accounts {
			quota := "unlimited"
			if a.QuotaBytes > 0 {
				quota = humanBytes(a.QuotaBytes)
			}
			adm := ""
			if a.Admin {
				adm = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Address, dash(a.DisplayName), humanBytes(a.UsedBytes), quota, adm)
		}
		tw.Flush()
		fmt.Fprintf(c.stdout, "%d accounts\n", res.Total)
	case "del":
		if len(pos) != 1 {
			return c.usageErr("usage: account del ADDR")
		}
		if err := c.call("DELETE", "/api/accounts/"+url.PathEscape(pos[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "account %s deleted with its mail\n", pos[0])
	case "passwd":
		if len(pos) != 1 {
			return c.usageErr("usage: account passwd ADDR [--password PW | --password-stdin]")
		}
		p, err := c.readPassword(*pw, *pwStdin)
		if err != nil {
			return err
		}
		if err := c.call("PUT", "/api/accounts/"+url.PathEscape(pos[0])+"/password", map[string]string{"password": p}, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "password of %s changed\n", pos[0])
	case "import":
		if len(pos) != 1 {
			return c.usageErr("usage: account import FILE (or - for stdin)")
		}
		return c.importAccounts(pos[0])
	default:
		return c.usageErr("unknown account subcommand %q", sub)
	}
	return nil
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// importAccounts streams the file to the server and shows each line's
// result, with a progress bar when stdout is a terminal.
func (c *cli) importAccounts(path string) error {
	var in io.Reader = c.stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer f.Close()
		in = f
	}
	resp, err := c.do("POST", "/api/accounts/import", in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	tty := false
	if f, ok := c.stdout.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	dec := json.NewDecoder(resp.Body)
	total, seen := 0, 0
	var final webui.ImportLine
	for {
		var l webui.ImportLine
		if err := dec.Decode(&l); err != nil {
			if err == io.EOF {
				break
			}
			return fmt.Errorf("import: read progress: %w", err)
		}
		switch {
		case l.Total > 0:
			total = l.Total
		case l.Done:
			final = l
		default:
			seen++
			if tty {
				fmt.Fprint(c.stdout, "\r\033[K")
			}
			if l.Error != "" {
				fmt.Fprintf(c.stdout, "line %d: %s: %s: %s\n", l.Line, dash(l.Address), l.Status, l.Error)
			} else {
				fmt.Fprintf(c.stdout, "line %d: %s: %s\n", l.Line, l.Address, l.Status)
			}
			if tty {
				fmt.Fprint(c.stdout, progressBar(seen, total))
			}
		}
	}
	if tty {
		fmt.Fprint(c.stdout, "\r\033[K")
	}
	if !final.Done {
		return errors.New("import: the server stopped before the end; check with 'account list'")
	}
	fmt.Fprintf(c.stdout, "%d lines: %d accounts created, %d failed\n", total, final.Created, final.Failed)
	if final.Failed > 0 {
		return fmt.Errorf("import: %d lines failed", final.Failed)
	}
	return nil
}

func progressBar(done, total int) string {
	if total <= 0 {
		return ""
	}
	const width = 30
	filled := done * width / total
	return fmt.Sprintf("[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, total)
}

func (c *cli) alias(args []string) error {
	if len(args) == 0 {
		return c.usageErr("alias needs a subcommand: add, list, del")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "add":
		if len(rest) < 2 {
			return c.usageErr("usage: alias add ALIAS TARGET...")
		}
		if err := c.call("POST", "/api/aliases", storage.Alias{Address: rest[0], Targets: rest[1:]}, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "alias %s → %s\n", rest[0], strings.Join(rest[1:], ", "))
	case "list":
		path := "/api/aliases"
		if len(rest) == 2 && rest[0] == "--domain" {
			path += "?domain=" + url.QueryEscape(rest[1])
		} else if len(rest) != 0 {
			return c.usageErr("usage: alias list [--domain D]")
		}
		var al []storage.Alias
		if err := c.call("GET", path, nil, &al); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ALIAS\tTARGETS")
		for _, a := range al {
			fmt.Fprintf(tw, "%s\t%s\n", a.Address, strings.Join(a.Targets, ", "))
		}
		tw.Flush()
	case "del":
		if len(rest) != 1 {
			return c.usageErr("usage: alias del ALIAS")
		}
		if err := c.call("DELETE", "/api/aliases/"+url.PathEscape(rest[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "alias %s deleted\n", rest[0])
	default:
		return c.usageErr("unknown alias subcommand %q", sub)
	}
	return nil
}
