package main

import (
	"fmt"
	"io"
	"strings"
)

const usage = `Tandem: a complete company mail system in one binary.

Usage:
  tandem [serve] [flags]              run the server (single node, embedded defaults)
  tandem [--data DIR] COMMAND ...     administer the server running on DIR

Commands:
  serve                               run the server (see 'tandem serve --help')
  witness --cluster-addr A --join B --cluster-secret S
                                      a voter that keeps no mail: makes a pair survive the loss of one box
  status                              the node's state as JSON
  domain add|list|del NAME            hosted domains
  domain catchall NAME [TARGET]       deliver unknown addresses of NAME to TARGET ("" clears)
  account add ADDR (--password PW | --password-stdin) [--name N] [--quota 2G] [--admin]
  account list [--domain D] [--search S]
  account del ADDR
  account passwd ADDR [--password PW | --password-stdin]
  account import FILE|-               lines of: address, password, display name, quota
  alias add ALIAS TARGET...           deliver ALIAS to TARGET(s)
  alias list [--domain D]
  alias del ALIAS
  log search [--since 2h] [--until T] [--from A] [--to A] [--ip IP] [--subject S] [--event E] [--queue-id ID]
                                      mail log records as JSON lines
  log transcript QUEUEID              the SMTP dialogue of every delivery attempt
  queue list | show ID | retry ID | delete ID | bounce ID
  cluster status [--json]             members, roles, replication lag, recent failovers
  cluster join                        print the command that adds a new box
  cluster leave                       take this node out of the cluster
  cluster remove ID                   take another node out
  cluster transfer-leadership [ID]    hand leadership to another node
  cluster drill [--kill] [--target HOST]
                                      rehearse a failover under load and report timings and losses
  cluster promote --i-understand-split-brain
                                      let the survivor of a pair (no witness) serve alone
  version

--data DIR is the data folder (default ./tandem-data); commands talk to the
running server over DIR/admin.sock.
`

// run dispatches a command line and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	dataDir := ""
	// --data may stand before the command: tandem --data DIR account list.
	for len(args) > 0 {
		a := args[0]
		if a == "--data" || a == "-data" {
			if len(args) < 2 {
				fmt.Fprintln(stderr, "tandem: --data needs a folder")
				return 2
			}
			dataDir, args = args[1], args[2:]
			continue
		}
		if v, ok := strings.CutPrefix(a, "--data="); ok {
			dataDir, args = v, args[1:]
			continue
		}
		break
	}
	cmd := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	if dataDir != "" && (cmd == "" || cmd == "serve" || cmd == "witness") {
		args = append([]string{"--data", dataDir}, args...)
	}
	if dataDir == "" {
		dataDir = "tandem-data"
	}
	c := &cli{data: dataDir, stdin: stdin, stdout: stdout, stderr: stderr}
	var err error
	switch cmd {
	case "witness":
		err = serve(append([]string{"--witness"}, args...), stdout, stderr)
	case "", "serve":
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") && cmd == "" {
			fmt.Fprint(stdout, usage)
			return 0
		}
		err = serve(args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "status":
		err = c.status(args)
	case "domain":
		err = c.domain(args)
	case "account":
		err = c.account(args)
	case "alias":
		err = c.alias(args)
	case "cluster":
		err = c.cluster(args)
	case "log":
		err = c.log(args)
	case "queue":
		err = c.queue(args)
	default:
		fmt.Fprintf(stderr, "tandem: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		if err == errUsage {
			return 2
		}
		fmt.Fprintf(stderr, "tandem: %v\n", err)
		return 1
	}
	return 0
}
