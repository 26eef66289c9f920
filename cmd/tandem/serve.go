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
	fs.BoolVar(&cfg.Witness, "witness", false, "run as a witness (see 'tandem witness')")
	fs.DurationVar(&cfg.LogRetention, "log-retention", cfg.LogRetention, "how long the mail log and delivery transcripts are kept")
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
	fmt.Fprintln(stdout, "Stop it with Ctrl-C.")
	<-ctx.Done()
	fmt.Fprintln(stdout, "Stopping...")
	return n.Close()
}
