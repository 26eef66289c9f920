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
  domain signature NAME on|off        the secure-signature verification link on outgoing mail of NAME
  domain dns NAME [--check [--resolver HOST:PORT]]
                                      DNS records to publish where NAME's DNS is hosted; --check looks them up
  domain gateway NAME --backend HOST:PORT [--backend ...] [--verify callout|list|none] [--recipients FILE]
                                      relay NAME's mail to backend hosts after filtering (--off: store it here)
  dns record add DOMAIN NAME TYPE VALUE [--ttl N]
                                      add to the built-in DNS zone (A, AAAA, CNAME, MX, TXT, SRV, CAA, PTR)
  dns record set DOMAIN NAME TYPE VALUE... [--ttl N]
                                      replace NAME's TYPE records (also the automatic ones, e.g. @ MX)
  dns record list DOMAIN | del DOMAIN NAME TYPE [VALUE]
  dns zone DOMAIN                     the zone the built-in DNS server serves, in zone-file format
  dkim list [DOMAIN]                  DKIM keys: selector, algorithm, state (published, active, retired)
  dkim show DOMAIN                    the DKIM TXT records to publish
  dkim rotate DOMAIN                  new keys, published now, signing after --dkim-publish-delay
  dkim activate DOMAIN SELECTOR       let a rotated key sign now (the old one retires)
  account add ADDR (--password PW | --password-stdin) [--name N] [--quota 2G] [--admin]
  account list [--domain D] [--search S]
  account del ADDR
  account passwd ADDR [--password PW | --password-stdin]
  account import FILE|-               lines of: address, password, display name, quota
  account admin ADDR [--domains a,b | --none]  web admin of these domains only
  alias add ALIAS TARGET...           deliver ALIAS to TARGET(s)
  alias list [--domain D]
  alias del ALIAS
  log search [--since 2h] [--until T] [--from A] [--to A] [--ip IP] [--subject S] [--event E] [--queue-id ID]
                                      mail log records as JSON lines
  log transcript QUEUEID              the SMTP dialogue of every delivery attempt
  queue list | show ID | retry ID | delete ID | bounce ID
  filter classify [FILE] < message.eml
                                      spam verdict, score and reasons as JSON
  filter train --spam DIR --ham DIR   teach the spam filter from folders of messages (--forget untrains)
  filter stats                        size of the learned spam state
  filter policy list | get SCOPE | set SCOPE [--threshold N] [--action junk|inbox|delete|quarantine] [--tag T] | del SCOPE
                                      spam actions; SCOPE: global, d:DOMAIN or u:ADDRESS
  filter list show [SCOPE] | add|del SCOPE block|allow ENTRY...
                                      allow/block lists; SCOPE: global, DOMAIN or ADDRESS; ENTRY: address,
                                      domain, .domain (and subdomains), IP or CIDR
  filter dnsbl list | del ZONE | add ZONE [--allow] [--score N] [--reject] [--match 127.0.0.2-127.0.0.255]
  filter greylist show | on | off | set [--domain D] [--delay 5m] [--expiry 24h] [--pass-valid 36d] [--auto-passes 5]
  filter rule list USER | del USER ID
  filter rule add USER --field from|to|subject|header [--header NAME] --op contains|equals|regex
                       --value TEXT --action allow|block|score [--score N]
  filter fingerprint add [--note T] [FILE...] < spam.eml | list | del KEY
                                      near-copies of known spam score +6
  quarantine list [ADDRESS] [--json] | release ID... | delete ID... | digest
                                      held spam; release delivers to INBOX and trains ham
  firewall list [--json] | block IP|CIDR|ACCOUNT [--for 2h] [--reason T] | unblock IP|CIDR|ACCOUNT
                                      mail firewall blocks (brute force, dictionary attacks, admin)
  cluster status [--json]             members, roles, replication lag, recent failovers
  cluster join                        print the command that adds a new box
  cluster leave                       take this node out of the cluster
  cluster remove ID                   take another node out
  cluster transfer-leadership [ID]    hand leadership to another node
  cluster drill [--kill] [--target HOST]
                                      rehearse a failover under load and report timings and losses
  cluster promote --i-understand-split-brain
                                      let the survivor of a pair (no witness) serve alone
  settings export [FILE] | import FILE|-
                                      the whole configuration as one file (secret: holds password hashes)
  cert show | upload CERT.pem KEY.pem | remove
                                      the TLS certificate every node serves (default: self-signed)
  network show | apply IFACE CIDR... [--gw4 IP] [--gw6 IP] [--rollback 120] | confirm ID | rollback ID
                                      the box's addresses; a change is undone unless confirmed in time
  network remote [ping=on|off] [http=on|off] [https=on|off]
                                      remote management: answer pings, admin pages over HTTP / HTTPS
  tool ping HOST [COUNT] | traceroute HOST | dns NAME [TYPE] [SERVER] | tcp HOST PORT
                                      network tools run from the box
  setup status|done|reset             whether the web setup wizard is finished (the dashboard opens it until then)
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
	case "setup":
		err = c.setup(args)
	case "dkim":
		err = c.dkim(args)
	case "dns":
		err = c.dns(args)
	case "filter":
		err = c.filter(args)
	case "quarantine":
		err = c.quarantine(args)
	case "firewall":
		err = c.firewall(args)
	case "settings":
		err = c.settings(args)
	case "cert":
		err = c.cert(args)
	case "network":
		err = c.network(args)
	case "tool":
		err = c.tool(args)
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
