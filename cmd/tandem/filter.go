package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tandemmail/tandem/filter/spamstage"
	"golang.org/x/term"
)

// filter runs 'tandem filter classify|train|stats|policy'.
func (c *cli) filter(args []string) error {
	if len(args) == 0 {
		return c.usageErr("filter needs a subcommand: classify, train, stats, policy, list, dnsbl, greylist, rule, fingerprint")
	}
	switch args[0] {
	case "classify":
		if len(args) > 2 {
			return c.usageErr("filter classify [FILE] (default: the message on standard input)")
		}
		var in io.Reader = c.stdin
		if len(args) == 2 && args[1] != "-" {
			f, err := os.Open(args[1])
			if err != nil {
				return fmt.Errorf("classify: %w", err)
			}
			defer f.Close()
			in = f
		}
		var out json.RawMessage
		if err := c.call("POST", "/api/filter/classify", in, &out); err != nil {
			return fmt.Errorf("classify: %w", err)
		}
		c.printJSON(out)
		return nil
	case "train":
		return c.filterTrain(args[1:])
	case "stats":
		var out json.RawMessage
		if err := c.call("GET", "/api/filter/stats", nil, &out); err != nil {
			return err
		}
		c.printJSON(out)
		return nil
	case "policy":
		return c.filterPolicy(args[1:])
	case "list", "dnsbl", "greylist", "rule", "fingerprint": // sender reputation: filterlists.go
		return c.filterReputation(args[0], args[1:])
	}
	return c.usageErr("filter: unknown subcommand %q (classify, train, stats, policy, list, dnsbl, greylist, rule, fingerprint)", args[0])
}

// trainChunk is how many messages go in one request: big enough for few
// Raft entries, small enough for a smooth progress bar.
const trainChunk = 50

// maxTrainFile skips files that cannot be mail (the server would only
// read the first MiB anyway).
const maxTrainFile = 16 << 20

// maxTrainRequest bounds the raw message bytes of one request.
const maxTrainRequest = 16 << 20

type trainFile struct{ path, class string }

// filterTrain trains from folders of .eml files (any file counts, as
// corpora often have no extension) with a progress bar.
func (c *cli) filterTrain(args []string) error {
	fs := flag.NewFlagSet("filter train", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	var spamDirs, hamDirs multiFlag
	fs.Var(&spamDirs, "spam", "folder of spam messages (repeatable)")
	fs.Var(&hamDirs, "ham", "folder of ham (good) messages (repeatable)")
	forget := fs.Bool("forget", false, "untrain the given messages instead")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 || len(spamDirs)+len(hamDirs) == 0 {
		return c.usageErr("filter train --spam DIR --ham DIR [--forget]")
	}
	var files []trainFile
	for _, set := range []struct {
		dirs  []string
		class string
	}{{spamDirs, "spam"}, {hamDirs, "ham"}} {
		for _, d := range set.dirs {
			n := 0
			err := filepath.WalkDir(d, func(p string, de os.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if de.Type().IsRegular() && !strings.HasPrefix(de.Name(), ".") {
					files = append(files, trainFile{p, set.class})
					n++
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("train: %w", err)
			}
			if n == 0 {
				return fmt.Errorf("train: folder %s has no messages", d)
			}
		}
	}
	// Interleave the classes in proportion, as mail arrives, so a stopped
	// run has learned both and error-driven training sees a steady mix.
	var byClass [2][]trainFile
	for _, f := range files {
		i := 0
		if f.class == "ham" {
			i = 1
		}
		byClass[i] = append(byClass[i], f)
	}
	files = spamstage.Interleave(byClass[0], byClass[1])
	tty := false
	if f, ok := c.stdout.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	type msg struct {
		Class   string `json:"class"`
		Message []byte `json:"message"`
	}
	var trained, unchanged, skipped int
	var req struct {
		Messages []msg `json:"messages"`
	}
	size, done := 0, 0
	send := func() error {
		if len(req.Messages) > 0 {
			var res struct{ Trained, Unchanged int }
			if err := c.call("POST", "/api/filter/train", req, &res); err != nil {
				return fmt.Errorf("train (after %d of %d messages): %w", done, len(files), err)
			}
			trained += res.Trained
			unchanged += res.Unchanged
		}
		done += len(req.Messages)
		req.Messages, size = nil, 0
		if tty {
			fmt.Fprint(c.stdout, "\r\033[K"+progressBar(done+skipped, len(files)))
		} else if done+skipped == len(files) || (done/trainChunk)%20 == 0 {
			fmt.Fprintln(c.stdout, progressBar(done+skipped, len(files)))
		}
		return nil
	}
	for _, f := range files {
		st, err := os.Stat(f.path)
		if err != nil || st.Size() == 0 || st.Size() > maxTrainFile {
			fmt.Fprintf(c.stderr, "skipped %s: empty, unreadable or over %d bytes\n", f.path, maxTrainFile)
			skipped++
			continue
		}
		// One request stays well under the API's 32 MiB body limit
		// (base64 adds a third).
		if len(req.Messages) == trainChunk || size+int(st.Size()) > maxTrainRequest {
			if err := send(); err != nil {
				return err
			}
		}
		b, err := os.ReadFile(f.path)
		if err != nil {
			return fmt.Errorf("train: %w", err)
		}
		class := f.class
		if *forget {
			class = "none"
		}
		req.Messages = append(req.Messages, msg{class, b})
		size += len(b)
	}
	if err := send(); err != nil {
		return err
	}
	if tty {
		fmt.Fprint(c.stdout, "\r\033[K")
	}
	fmt.Fprintf(c.stdout, "%d messages: %d learned, %d already known, %d skipped\n", len(files), trained, unchanged, skipped)
	return nil
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// filterPolicy runs 'filter policy list|get|set|del'.
func (c *cli) filterPolicy(args []string) error {
	const use = "filter policy list | get SCOPE | set SCOPE [--threshold N] [--action junk|inbox|delete|quarantine] [--tag TEXT] | del SCOPE\n  SCOPE is global, a domain (d:example.com) or an address (u:user@example.com)"
	if len(args) == 0 {
		return c.usageErr(use)
	}
	var out json.RawMessage
	switch args[0] {
	case "list":
		if err := c.call("GET", "/api/filter/policy", nil, &out); err != nil {
			return err
		}
	case "get", "del":
		if len(args) != 2 {
			return c.usageErr(use)
		}
		method := "GET"
		if args[0] == "del" {
			method = "DELETE"
		}
		if err := c.call(method, "/api/filter/policy/"+pathEscape(args[1]), nil, &out); err != nil {
			return err
		}
	case "set":
		if len(args) < 2 {
			return c.usageErr(use)
		}
		fs := flag.NewFlagSet("filter policy set", flag.ContinueOnError)
		fs.SetOutput(c.stderr)
		threshold := fs.String("threshold", "", "spam score at or above which the action applies (default 5)")
		action := fs.String("action", "", "junk, inbox, delete or quarantine")
		tag := fs.String("tag", "", `subject tag, e.g. "[SPAM]"; "-" for none`)
		if err := fs.Parse(args[2:]); err != nil || fs.NArg() > 0 {
			return c.usageErr(use)
		}
		// Start from the stored policy so set changes only what is given.
		var cur struct {
			Set map[string]any `json:"set"`
		}
		if err := c.call("GET", "/api/filter/policy/"+pathEscape(args[1]), nil, &cur); err != nil {
			return err
		}
		p := cur.Set
		if p == nil {
			p = map[string]any{}
		}
		if *threshold != "" {
			f, err := strconv.ParseFloat(*threshold, 64)
			if err != nil {
				return fmt.Errorf("--threshold %q: not a number", *threshold)
			}
			p["threshold"] = f
		}
		if *action != "" {
			p["action"] = *action
		}
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "tag" {
				p["tag"] = *tag
			}
		})
		if len(p) == 0 {
			return errors.New("policy set: give --threshold, --action or --tag")
		}
		if err := c.call("PUT", "/api/filter/policy/"+pathEscape(args[1]), p, &out); err != nil {
			return err
		}
	default:
		return c.usageErr(use)
	}
	c.printJSON(out)
	return nil
}

func pathEscape(s string) string { return url.PathEscape(s) }
