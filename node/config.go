package node

import (
	"io"
	"log/slog"
	"time"
)

// Config is the node-local configuration (DESIGN §7): where data lives and
// what to listen on. Everything cluster-wide is replicated state instead.
type Config struct {
	DataDir  string
	NodeID   string // default: kept in DataDir/node-id, first set from the hostname
	Hostname string // name in greetings and the certificate; default: the host's name
	Domain   string // first domain on a fresh node; default: derived from the hostname

	// Listen addresses; "" turns the listener off.
	SMTPAddr        string
	SubmissionAddr  string
	SubmissionsAddr string
	IMAPAddr        string
	IMAPSAddr       string
	POP3Addr        string
	POP3SAddr       string
	HTTPAddr        string
	HTTPSAddr       string // web admin over TLS with the node's certificate (node/web.go)

	// ClusterAddr is the cluster listen address (Raft, blob copies, client
	// relays share it); "" runs a single node in-process.
	ClusterAddr string
	// ClusterAdvertise is the address peers dial, when ClusterAddr listens
	// on all addresses.
	ClusterAdvertise string
	// Join is a member's cluster address, for a new node joining a cluster.
	Join string
	// ClusterSecret authenticates the cluster; made at bootstrap and kept
	// in DataDir/cluster-secret; a joining node must be given it.
	ClusterSecret string
	// GossipAddr is memberlist's address (UDP and TCP); default: the
	// cluster address's host with the next port.
	GossipAddr string
	// VIP4 and VIP6 are the virtual addresses ("10.0.0.100/24") the leader
	// holds on VIPInterface (DESIGN §4).
	VIP4, VIP6, VIPInterface string
	// VIPLifetime is the kernel-enforced lease of the VIP (default 1 s).
	VIPLifetime time.Duration
	// DNSResolver is the DNS server outbound delivery asks ("" = the
	// system's); OutboundPort the remote SMTP port (default 25). Both exist
	// so tests never reach the internet.
	DNSResolver  string
	OutboundPort int
	// Smarthost relays all outbound mail through HOST:PORT (STARTTLS, or
	// implicit TLS on port 465), with AUTH when a user is given.
	Smarthost, SmarthostUser, SmarthostPasswordFile string
	// Gateway recipient callouts (SPEC M9, node/gateway.go): how long a
	// backend's "yes" and "no" are remembered, and how many answers at
	// most (defaults 1 h, 10 min, 10000).
	GatewayCalloutPositiveTTL, GatewayCalloutNegativeTTL time.Duration
	GatewayCalloutCacheSize                              int
	// Witness runs a Raft voter that keeps no mail and serves no clients
	// (DESIGN §5): a pair plus a witness survives the loss of any one box.
	Witness bool

	// DMARCMonitorOnly turns off acting on DMARC policies (p=reject is
	// then only tagged); --dmarc-enforce=false sets it.
	DMARCMonitorOnly bool
	// DKIMPublishDelay is how long a rotated DKIM key is published in DNS
	// before it signs; DKIMRetireDelay how long a replaced key stays in DNS
	// (defaults 48 h each).
	DKIMPublishDelay, DKIMRetireDelay time.Duration
	// PublicURL is the base of the secure-signature links, e.g.
	// https://mail.example.com (default: http://HOSTNAME:HTTP-PORT).
	PublicURL string
	// SignatureTTL is how long a secure-signature link works (default 90 days).
	SignatureTTL time.Duration
	// QuarantineDigest is how often the leader mails each user the list of
	// their quarantined spam (default 24 h; negative turns it off).
	QuarantineDigest time.Duration
	// DNSAddrs are the built-in authoritative DNS server's listen addresses
	// (UDP and TCP each; none: off); DNSAXFRAllow the CIDRs allowed to
	// transfer zones; DNSHostIPs the mail host's public addresses published
	// when there is no VIP (node/dns.go).
	DNSAddrs, DNSAXFRAllow, DNSHostIPs []string
	// DNSRateLimit is DNS responses per second per client network (0: the
	// default 100; negative: unlimited, for benchmarks).
	DNSRateLimit int
	// NoFilters runs the pipeline without check stages (--filters=false),
	// to measure what the filters cost.
	NoFilters bool
	// ClamdAddr is the virus scanner, "unix:/path" or "host:port" (""
	// means no virus scan); ClamdPolicy what happens when it cannot answer
	// ("tempfail" default, or "accept" marked unscanned); VirusAction what
	// happens to infected inbound mail ("reject" default, "quarantine").
	// node/virus.go.
	ClamdAddr, ClamdPolicy, VirusAction string
	// ClamdTimeout bounds one scan, upload and verdict (0: 60 s).
	ClamdTimeout time.Duration
	// Firewall (SPEC F4, node/firewall.go): FirewallAllow lists networks
	// never limited or blocked (default none); the limits are concurrent
	// connections per IP and per /24 or /64, messages per minute per IP,
	// AUTH failures per IP or account and unknown recipients per IP within
	// FirewallWindow before a block of FirewallBlockTime. 0 takes the
	// default, negative turns that limit off; the message rate is off
	// unless set.
	FirewallAllow                          []string
	FirewallMaxConnIP, FirewallMaxConnNet  int
	FirewallMsgRate                        float64
	FirewallAuthFailures, FirewallBadRcpts int
	FirewallWindow, FirewallBlockTime      time.Duration

	// AllowInsecureAuth permits passwords over plaintext connections (for
	// tests and trusted loopback set-ups only).
	AllowInsecureAuth bool
	MaxMessageBytes   int64
	// LogRetention is how long mail log records and transcripts are kept.
	LogRetention time.Duration

	Logger *slog.Logger
	// Out receives the first-start notice (admin login); default stdout.
	Out io.Writer
	// BcryptCost for password hashing (0: default); tests lower it.
	BcryptCost int
	// ShutdownTimeout bounds a graceful stop.
	ShutdownTimeout time.Duration
}

// Defaults fills unset fields with the embedded defaults (SPEC M1).
func Defaults() Config {
	return Config{
		DataDir:         "tandem-data",
		SMTPAddr:        ":25",
		SubmissionAddr:  ":587",
		SubmissionsAddr: ":465",
		IMAPAddr:        ":143",
		IMAPSAddr:       ":993",
		POP3Addr:        ":110",
		POP3SAddr:       ":995",
		HTTPAddr:        ":8080",
		HTTPSAddr:       ":8443",
		MaxMessageBytes: 50 << 20,
		LogRetention:    90 * 24 * time.Hour,
		ShutdownTimeout: 10 * time.Second,
	}
}
