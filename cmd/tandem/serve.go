package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/tandemmail/tandem/node"
)

func versionString() string { return "tandem " + node.Version }

// serve parses the node flags and runs the server until SIGINT or SIGTERM.
func serve(args []string, stdout, stderr io.Writer) error {
	cfg := node.Defaults()
	fs := flag.NewFlagSet("tandem serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data folder")
	fs.StringVar(&cfg.NodeID, "node-id", "", "node ID (default: kept in the data folder, first from the hostname)")
	fs.StringVar(&cfg.Hostname, "hostname", "", "host name used in greetings and the certificate (default: this host's name)")
	fs.StringVar(&cfg.Domain, "domain", "", "first mail domain on a fresh node (default: from the hostname)")
	fs.StringVar(&cfg.SMTPAddr, "smtp-addr", cfg.SMTPAddr, "inbound SMTP (MX) listen address; '' turns it off")
	fs.StringVar(&cfg.SubmissionAddr, "submission-addr", cfg.SubmissionAddr, "submission (STARTTLS + AUTH) listen address")
	fs.StringVar(&cfg.SubmissionsAddr, "submissions-addr", cfg.SubmissionsAddr, "submission over implicit TLS listen address")
	fs.StringVar(&cfg.IMAPAddr, "imap-addr", cfg.IMAPAddr, "IMAP (STARTTLS) listen address")
	fs.StringVar(&cfg.IMAPSAddr, "imaps-addr", cfg.IMAPSAddr, "IMAP over implicit TLS listen address")
	fs.StringVar(&cfg.POP3Addr, "pop3-addr", cfg.POP3Addr, "POP3 (STLS) listen address")
	fs.StringVar(&cfg.POP3SAddr, "pop3s-addr", cfg.POP3SAddr, "POP3 over implicit TLS listen address")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "HTTP listen address (status, health)")
	fs.StringVar(&cfg.HTTPSAddr, "https-addr", cfg.HTTPSAddr, "HTTPS listen address of the web admin (node certificate); '' turns it off")
	fs.StringVar(&cfg.ClusterAddr, "cluster-addr", "", "cluster address HOST:PORT for Raft, blob copies and relays ('' = single node)")
	fs.StringVar(&cfg.ClusterAdvertise, "cluster-advertise", "", "address peers dial, if --cluster-addr listens on all addresses")
	fs.StringVar(&cfg.GossipAddr, "gossip-addr", "", "memberlist gossip address HOST:PORT (default: cluster port + 1)")
	fs.StringVar(&cfg.Join, "join", "", "cluster address of a member, to join its cluster on first start")
	fs.StringVar(&cfg.ClusterSecret, "cluster-secret", "", "the cluster's secret (needed to join; see 'tandem cluster join')")
	fs.BoolVar(&cfg.AllowInsecureAuth, "allow-insecure-auth", false, "accept passwords without TLS (testing only)")
	fs.Int64Var(&cfg.MaxMessageBytes, "max-message-size", cfg.MaxMessageBytes, "largest message accepted, in bytes")
	fs.StringVar(&cfg.VIP4, "vip", "", "virtual IPv4 address the leader holds, e.g. 10.0.0.100/24")
	fs.StringVar(&cfg.VIP6, "vip6", "", "virtual IPv6 address the leader holds, e.g. fd00::100/64")
	fs.StringVar(&cfg.VIPInterface, "vip-iface", "", "interface that carries the virtual addresses")
	fs.DurationVar(&cfg.VIPLifetime, "vip-lifetime", time.Second, "kernel-enforced lease of the virtual addresses (whole seconds)")
	fs.StringVar(&cfg.DNSResolver, "dns-resolver", "", "DNS server for outbound delivery, HOST:PORT (default: /etc/resolv.conf)")
	fs.IntVar(&cfg.OutboundPort, "outbound-port", 25, "remote SMTP port for outbound delivery")
	fs.StringVar(&cfg.Smarthost, "smarthost", "", "relay all outbound mail through HOST:PORT (STARTTLS; implicit TLS on 465)")
	fs.StringVar(&cfg.SmarthostUser, "smarthost-user", "", "AUTH user for the smarthost")
	fs.StringVar(&cfg.SmarthostPasswordFile, "smarthost-password-file", "", "file holding the smarthost password")
	fs.DurationVar(&cfg.GatewayCalloutPositiveTTL, "gateway-callout-positive-ttl", time.Hour, "how long a gateway backend's acceptance of a recipient is cached")
	fs.DurationVar(&cfg.GatewayCalloutNegativeTTL, "gateway-callout-negative-ttl", 10*time.Minute, "how long a gateway backend's refusal of a recipient is cached")
	fs.IntVar(&cfg.GatewayCalloutCacheSize, "gateway-callout-cache-size", 10000, "most recipient callout answers kept in memory")
	fs.BoolVar(&cfg.Witness, "witness", false, "run as a witness (see 'tandem witness')")
	fs.DurationVar(&cfg.LogRetention, "log-retention", cfg.LogRetention, "how long the mail log and delivery transcripts are kept")
	fs.BoolFunc("dmarc-enforce", "act on DMARC policies: p=reject refused at DATA, quarantine to Junk (default true; =false only tags)", func(v string) error { b, err := strconv.ParseBool(v); cfg.DMARCMonitorOnly = !b; return err })
	fs.DurationVar(&cfg.DKIMPublishDelay, "dkim-publish-delay", 48*time.Hour, "how long a rotated DKIM key is in DNS before it signs")
	fs.DurationVar(&cfg.DKIMRetireDelay, "dkim-retire-delay", 48*time.Hour, "how long a replaced DKIM key stays in DNS")
	fs.Func("public-url", "base URL of secure-signature links, e.g. https://mail.example.com (default: http://HOSTNAME:HTTP-PORT)", publicURLFlag(&cfg.PublicURL))
	fs.DurationVar(&cfg.SignatureTTL, "signature-ttl", 90*24*time.Hour, "how long a secure-signature verification link works")
	fs.BoolFunc("filters", "run the filter stages: spam, DNSBL, greylisting, sender authentication (default true; =false for benchmarks)", func(v string) error { b, err := strconv.ParseBool(v); cfg.NoFilters = !b; return err })
	fs.DurationVar(&cfg.QuarantineDigest, "quarantine-digest", 24*time.Hour, "how often each user gets a digest of quarantined spam (negative: never)")
	fs.Func("dns-addr", "built-in DNS server listen address(es), UDP and TCP, e.g. 0.0.0.0:53,[::]:53 (repeatable; default off)", listFlag(&cfg.DNSAddrs))
	fs.Func("dns-axfr-allow", "CIDR(s) allowed to transfer zones by AXFR (repeatable or comma list; default none)", listFlag(&cfg.DNSAXFRAllow))
	fs.Func("dns-host-ip", "mail host address(es) published in DNS when there is no --vip/--vip6 (repeatable or comma list)", listFlag(&cfg.DNSHostIPs))
	fs.IntVar(&cfg.DNSRateLimit, "dns-rate-limit", 100, "DNS responses per second per client network (negative: unlimited)")
	fs.StringVar(&cfg.ClamdAddr, "clamd", "", "ClamAV daemon for virus scanning: unix:/path or host:port (default: no virus scan)")
	fs.StringVar(&cfg.ClamdPolicy, "clamd-policy", "tempfail", "when clamd cannot scan: tempfail (451, retry later) or accept (deliver marked unscanned)")
	fs.StringVar(&cfg.VirusAction, "virus-action", "reject", "infected inbound mail: reject (550 5.7.1 at DATA) or quarantine")
	fs.DurationVar(&cfg.ClamdTimeout, "clamd-timeout", 60*time.Second, "longest wait for one clamd scan; then --clamd-policy applies")
	fs.Func("firewall-allow", "network(s) the mail firewall never limits or blocks, CIDR or IP (repeatable or comma list; default none)", listFlag(&cfg.FirewallAllow))
	fs.IntVar(&cfg.FirewallMaxConnIP, "firewall-max-conn-ip", 0, "concurrent connections per client IP (0: default 100; negative: unlimited)")
	fs.IntVar(&cfg.FirewallMaxConnNet, "firewall-max-conn-net", 0, "concurrent connections per client /24 or /64 (0: default 300; negative: unlimited)")
	fs.Float64Var(&cfg.FirewallMsgRate, "firewall-msg-rate", 0, "messages per minute per client IP, burst the same (default 0: unlimited)")
	fs.IntVar(&cfg.FirewallAuthFailures, "firewall-auth-failures", 0, "failed logins per client IP within the window before a block, 5 times that per account (0: default 10; negative: off)")
	fs.IntVar(&cfg.FirewallBadRcpts, "firewall-bad-rcpts", 0, "unknown recipients per client IP within the window before a block (0: default 20; negative: off)")
	fs.DurationVar(&cfg.FirewallWindow, "firewall-window", 0, "detection window for login failures and unknown recipients (0: default 10m)")
	fs.DurationVar(&cfg.FirewallBlockTime, "firewall-block-time", 0, "how long an automatic block lasts (0: default 1h)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: %w", *logLevel, err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	cfg.Out = stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.Witness {
		cfg.SMTPAddr, cfg.SubmissionAddr, cfg.SubmissionsAddr = "", "", ""
		cfg.IMAPAddr, cfg.IMAPSAddr, cfg.POP3Addr, cfg.POP3SAddr = "", "", "", ""
	}
	n, err := node.Start(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Tandem %s is running (data folder %s).\n", node.Version, cfg.DataDir)
	for _, l := range n.ListenerSummary() {
		fmt.Fprintf(stdout, "  %s\n", l)
	}
	if u := n.AdminURL(); u != "" {
		fmt.Fprintf(stdout, "Web admin: %s\n", u)
	}
	fmt.Fprintln(stdout, "Stop it with Ctrl-C.")
	<-ctx.Done()
	fmt.Fprintln(stdout, "Stopping...")
	return n.Close()
}
