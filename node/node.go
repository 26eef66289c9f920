// Package node is the composition root: it builds storage, the Raft node,
// the protocol servers and the admin API from a Config, starts them in
// order and stops them in reverse.
package node

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tandemmail/tandem/cluster"
	"github.com/tandemmail/tandem/hardware"
	"github.com/tandemmail/tandem/protocols/outbound"
	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/webui"
)

// Version is the build's version string.
var Version = "dev"

// Node is a running Tandem server.
type Node struct {
	cfg     Config
	log     *slog.Logger
	started time.Time

	fsm   *storage.FSM
	blobs *storage.BlobStore
	raft  *cluster.Node
	repl  *storage.BlobReplicator

	witnessBlobs *storage.BlobReplicator
	maillog      *storage.LogWriter
	outbound     atomic.Pointer[outbound.Engine]
	store        *storage.Store
	tls          *tls.Config

	mu        sync.Mutex
	listeners map[string]string // service → bound address
	routes    map[string]*routedListener
	closers   []func() error
	wg        sync.WaitGroup
	stopSweep chan struct{}
	spam      spamState             // node/spam.go
	fw        fwState               // node/firewall.go
	certs     *webui.CertSource     // node/tls.go: uploaded or self-signed certificate
	addrs     *hardware.AddrManager // interface addresses for the setup wizard (nil: unavailable)
	web       *webui.Web            // node/web.go: the web admin on the HTTP(S) listeners
}

// AdminSocket is the path of the CLI's unix socket in a data folder.
func AdminSocket(dataDir string) string { return filepath.Join(dataDir, "admin.sock") }

// Start opens the data folder and starts every configured listener. The
// caller stops it with Close.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	def := Defaults()
	if cfg.DataDir == "" {
		cfg.DataDir = def.DataDir
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = def.MaxMessageBytes
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = def.ShutdownTimeout
	}
	if cfg.Hostname == "" {
		h, _ := os.Hostname()
		cfg.Hostname = strings.ToLower(h)
		if cfg.Hostname == "" {
			cfg.Hostname = "localhost"
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data folder %s: %w", cfg.DataDir, err)
	}
	if cfg.NodeID == "" {
		id, err := loadNodeID(cfg.DataDir, cfg.Hostname)
		if err != nil {
			return nil, err
		}
		cfg.NodeID = id
	}
	if cfg.Witness && cfg.Join == "" {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, "raft", "raft.db")); err != nil {
			return nil, errors.New("a witness joins an existing cluster: give --join with a member's cluster address and --cluster-secret")
		}
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeID), started: time.Now(),
		listeners: map[string]string{}, stopSweep: make(chan struct{})}
	if err := n.openStorage(ctx); err != nil {
		n.Close()
		return nil, err
	}
	cert, err := loadOrCreateCert(filepath.Join(cfg.DataDir, "tls"), cfg.Hostname)
	if err != nil {
		n.Close()
		return nil, err
	}
	n.tls = serverTLS(cert)
	n.useUploadedCert(cert) // node/tls.go
	if err := n.firstStart(ctx); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.startAdmin(); err != nil {
		n.Close()
		return nil, err
	}
	if cfg.Witness {
		n.wg.Add(1)
		go n.witnessLoop()
		if err := n.startHTTP(); err != nil {
			n.Close()
			return nil, err
		}
	} else if err := n.startServices(); err != nil {
		n.Close()
		return nil, err
	}
	if !cfg.Witness {
		if err := n.startDNS(); err != nil { // node/dns.go
			n.Close()
			return nil, err
		}
	}
	if !cfg.Witness && (cfg.VIP4 != "" || cfg.VIP6 != "") {
		if err := n.startVIP(); err != nil {
			n.Close()
			return nil, err
		}
	}
	n.wg.Add(1)
	go n.sweepLoop()
	n.log.Info("tandem started", "version", Version, "data", cfg.DataDir, "listeners", n.Listeners())
	return n, nil
}

// Run starts a node and serves until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	n, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return n.Close()
}

func loadNodeID(dir, hostname string) (string, error) {
	p := filepath.Join(dir, "node-id")
	if b, err := os.ReadFile(p); err == nil {
		return strings.TrimSpace(string(b)), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	id := strings.SplitN(hostname, ".", 2)[0]
	if id == "" {
		id = "node1"
	}
	if err := writeFileSync(p, []byte(id+"\n"), 0o644); err != nil {
		return "", err
	}
	return id, nil
}

func (n *Node) openStorage(ctx context.Context) error {
	var err error
	n.fsm, err = storage.OpenFSM(filepath.Join(n.cfg.DataDir, "state.db"), n.log)
	if err != nil {
		return err
	}
	n.blobs, err = storage.OpenBlobStore(filepath.Join(n.cfg.DataDir, "blobs"), n.log)
	if err != nil {
		return err
	}
	var secret []byte
	if n.cfg.ClusterAddr != "" {
		if secret, err = n.clusterSecret(); err != nil {
			return err
		}
	}
	n.raft, err = cluster.Open(cluster.Config{NodeID: n.cfg.NodeID, Dir: filepath.Join(n.cfg.DataDir, "raft"),
		BindAddr: n.cfg.ClusterAddr, Advertise: n.cfg.ClusterAdvertise, Secret: secret, Join: n.cfg.Join,
		Logger: n.log}, n.fsm)
	if err != nil {
		return err
	}
	if mux := n.raft.Mux(); mux != nil {
		n.raft.OnDrillStop(stopNow)
		if n.cfg.Witness {
			n.witnessBlobs = storage.NewWitnessBlobServer(n.raft, n.log)
		} else {
			n.repl = storage.NewBlobReplicator(n.raft, n.blobs, n.log)
			mux.Handle(cluster.ChanRelay, n.serveRelay)
		}
	} else if n.cfg.Witness {
		return errors.New("a witness needs --cluster-addr")
	}
	scfg := storage.StoreConfig{FSM: n.fsm, Blobs: n.blobs, Raft: n.raft,
		Logger: n.log, BcryptCost: n.cfg.BcryptCost, Replicator: n.repl}
	if n.raft.Mux() != nil {
		n.raft.SetResponseCodec(storage.EncodeResponse)
		scfg.Forwarder = n.raft
	}
	n.store = storage.NewStore(scfg)
	n.maillog = storage.NewLogWriter(n.store, n.log)
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if n.cfg.Join != "" && n.raft.Status().LastLogIndex == 0 {
		n.log.Info("joining cluster", "via", n.cfg.Join)
		if err := n.raft.Join(wctx, n.cfg.Join); err != nil {
			return err
		}
	}
	if err := n.raft.WaitLeader(wctx); err != nil {
		return err
	}
	if n.raft.Mux() != nil {
		if err := n.startGossip(); err != nil {
			return err
		}
	}
	// Raft replays committed entries after a restart before this node can
	// serve reads that reflect them; wait until it has caught up.
	for n.raft.Status().AppliedIndex < n.raft.Status().CommitIndex {
		select {
		case <-wctx.Done():
			return fmt.Errorf("replay raft log: %w", wctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// startGossip runs memberlist beside Raft for health on the status page.
func (n *Node) startGossip() error {
	addr := n.cfg.GossipAddr
	if addr == "" {
		host, port, err := net.SplitHostPort(n.cfg.ClusterAddr)
		if err != nil {
			return fmt.Errorf("--cluster-addr %q: %w", n.cfg.ClusterAddr, err)
		}
		var p int
		fmt.Sscan(port, &p)
		if p == 0 {
			addr = net.JoinHostPort(host, "0")
		} else {
			addr = net.JoinHostPort(host, fmt.Sprint(p+1))
		}
	}
	_, err := n.raft.StartGossip(addr, func() cluster.Health {
		st := n.raft.Status()
		return cluster.Health{Version: Version, Role: st.State, Applied: st.AppliedIndex, Commit: st.CommitIndex,
			DiskFree: diskFree(n.cfg.DataDir), ClusterAddr: n.raft.Addr(), Witness: n.cfg.Witness}
	})
	if err != nil {
		return fmt.Errorf("%w (set --gossip-addr)", err)
	}
	return nil
}

func diskFree(dir string) uint64 {
	var fs syscall.Statfs_t
	if syscall.Statfs(dir, &fs) != nil {
		return 0
	}
	return fs.Bavail * uint64(fs.Bsize)
}

// clusterSecret returns the secret that authenticates cluster traffic:
// given on the command line (joining nodes), or kept in the data folder,
// or made now for a node that starts a new cluster.
func (n *Node) clusterSecret() ([]byte, error) {
	p := filepath.Join(n.cfg.DataDir, "cluster-secret")
	if n.cfg.ClusterSecret != "" {
		if len(n.cfg.ClusterSecret) < 16 {
			return nil, errors.New("--cluster-secret: at least 16 characters")
		}
		if err := writeFileSync(p, []byte(n.cfg.ClusterSecret+"\n"), 0o600); err != nil {
			return nil, err
		}
		return []byte(n.cfg.ClusterSecret), nil
	}
	if b, err := os.ReadFile(p); err == nil {
		return []byte(strings.TrimSpace(string(b))), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if n.cfg.Join != "" {
		return nil, errors.New("joining a cluster needs its secret: --cluster-secret (see 'tandem cluster status' on a member)")
	}
	raw := make([]byte, 24)
	rand.Read(raw)
	secret := hex.EncodeToString(raw)
	if err := writeFileSync(p, []byte(secret+"\n"), 0o600); err != nil {
		return nil, err
	}
	return []byte(secret), nil
}

// firstStart creates the first domain and admin on a fresh node and prints
// the login once (SPEC M1).
func (n *Node) firstStart(ctx context.Context) error {
	if n.cfg.Join != "" || n.cfg.Witness || !n.raft.IsLeader() {
		return nil // a member of an existing cluster has its state already
	}
	ds, err := n.store.Domains()
	if err != nil {
		return err
	}
	if len(ds) > 0 {
		return nil
	}
	dom := n.cfg.Domain
	if dom == "" {
		dom = n.cfg.Hostname
		if !strings.Contains(dom, ".") {
			dom += ".local"
		}
	}
	if err := n.store.AddDomain(ctx, dom); err != nil {
		return fmt.Errorf("create first domain %s (set another with --domain): %w", dom, err)
	}
	pw := randomPassword()
	admin := "admin@" + strings.ToLower(dom)
	if _, err := n.store.AddAccount(ctx, storage.NewAccount{Address: admin, Password: pw,
		DisplayName: "Administrator", Admin: true}); err != nil {
		return fmt.Errorf("create first admin: %w", err)
	}
	fmt.Fprintf(n.cfg.Out, `
Tandem is set up. This is shown once: keep the password.
  Mail domain:   %s
  Admin account: %s
  Password:      %s
Change it with:  tandem --data %s account passwd %s
Then log in to the web admin (its address is printed below): the setup
wizard asks for the box's address, the mail domains and the accounts.
`, dom, admin, pw, n.cfg.DataDir, admin)
	return nil
}

func randomPassword() string {
	const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 16)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// listen binds one service's address, explaining the usual failures.
func (n *Node) listen(service, flag, addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		hint := ""
		var port int
		if _, p, e := net.SplitHostPort(addr); e == nil {
			fmt.Sscan(p, &port)
		}
		switch {
		case errors.Is(err, syscall.EACCES) && port > 0 && port < 1024:
			hint = fmt.Sprintf(": ports below 1024 need root (or CAP_NET_BIND_SERVICE); run as root or pick a high port, e.g. %s 127.0.0.1:%d, or turn it off with %s ''", flag, 10000+port, flag)
		case errors.Is(err, syscall.EADDRINUSE):
			hint = fmt.Sprintf(": another program already listens there; stop it, or pick another address with %s, or turn it off with %s ''", flag, flag)
		}
		return nil, fmt.Errorf("%s: listen on %s: %w%s", service, addr, err, hint)
	}
	n.mu.Lock()
	n.listeners[service] = l.Addr().String()
	n.mu.Unlock()
	return l, nil
}

// Listeners maps each running service to its bound address.
func (n *Node) Listeners() map[string]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]string, len(n.listeners))
	for k, v := range n.listeners {
		out[k] = v
	}
	return out
}

// Store is the node's mail store.
func (n *Node) Store() *storage.Store { return n.store }

func (n *Node) addCloser(f func() error) {
	n.mu.Lock()
	n.closers = append(n.closers, f)
	n.mu.Unlock()
}

func (n *Node) startAdmin() error {
	sock := AdminSocket(n.cfg.DataDir)
	// A socket left by a killed process: remove it if nobody answers.
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("admin socket %s: another tandem process serves this data folder", sock)
	}
	os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("admin socket: %w", err)
	}
	acfg := webui.APIConfig{Store: n.store, Status: func() any { return n.Status() }, Logger: n.log,
		Bouncer: engineBouncer{n}, // node/gateway.go
		QueueKick: func() {
			if e := n.outbound.Load(); e != nil {
				e.Wake()
			}
		}}
	if n.raft.Mux() != nil {
		acfg.Cluster = clusterOps{n}
	}
	if e, err := n.spamEngine(); err == nil { // node/spam.go; a failure is reported by the mail services
		acfg.Spam, acfg.PublicURL, acfg.Hostname = e, n.publicURL, n.cfg.Hostname
	}
	acfg.Certs, acfg.DNSResolver = n.certs, n.cfg.DNSResolver
	acfg.Firewall = firewallAdmin{n}        // node/firewall.go
	if z, err := n.dnsZones(); err == nil { // node/dns.go; startDNS reports a bad flag
		acfg.DNSZones = z
	}
	if !n.cfg.Witness {
		// The setup wizard's address step and the remote-management ping
		// switch (webui/network.go).
		if am, err := hardware.NewAddrManager(hardware.AddrManagerConfig{Logger: n.log}); err != nil {
			n.log.Warn("interface configuration unavailable", "err", err)
		} else {
			n.addrs, acfg.Network = am, am
			n.addCloser(am.Close)
		}
		stopPing := (&webui.PingSwitch{KV: n.store, ProcSysNet: "/proc/sys/net", Logger: n.log}).Start()
		n.addCloser(func() error { stopPing(); return nil })
	}
	acfg.GlobalAdmin = webui.RequestIsGlobal // web logins carry a principal; the socket none
	api := webui.NewAPI(acfg)
	if err := n.startWeb(api); err != nil { // node/web.go
		l.Close()
		return err
	}
	if err := n.web.AddSetupPages(); err != nil { // webui/wizard.go: setup wizard and network tools
		l.Close()
		return err
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	n.serveHTTP("admin", srv, l)
	return nil
}

func (n *Node) serveHTTP(name string, srv *http.Server, l net.Listener) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http server stopped", "service", name, "err", err)
		}
	}()
	n.addCloser(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
		defer cancel()
		return srv.Shutdown(ctx)
	})
}

// startVIP opens the interface and lets the VIP follow leadership.
func (n *Node) startVIP() error {
	if n.raft.Mux() == nil {
		return errors.New("--vip needs a cluster: give --cluster-addr")
	}
	vc, err := hardware.ParseVIP(n.cfg.VIP4, n.cfg.VIP6, n.cfg.VIPInterface)
	if err != nil {
		return err
	}
	vc.Lifetime = n.cfg.VIPLifetime
	if vc.Lifetime <= 0 {
		vc.Lifetime = time.Second
	}
	vc.Logger = n.log
	lease, err := hardware.New(vc)
	if err != nil {
		return err
	}
	n.raft.OnVIPStatus(lease.Held)
	n.wg.Add(1)
	go n.vipLoop(lease, vc.Lifetime)
	return nil
}

// witnessLoop hands leadership to a data node whenever the witness wins an
// election: hashicorp/raft has no "voter that never leads" (DESIGN §5).
func (n *Node) witnessLoop() {
	defer n.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.stopSweep:
			return
		case <-t.C:
			if n.raft.IsLeader() {
				if err := n.raft.TransferLeadership(""); err != nil {
					n.log.Warn("witness could not hand leadership over", "err", err)
				} else {
					n.log.Info("witness handed leadership to a data node")
				}
			}
		}
	}
}

// sweepLoop removes blob files that no message references, hourly.
func (n *Node) sweepLoop() {
	defer n.wg.Done()
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-n.stopSweep:
			return
		case <-t.C:
			if k := n.store.SweepBlobs(time.Hour); k > 0 {
				n.log.Info("removed unreferenced blobs", "count", k)
			}
			if n.raft.IsLeader() && n.cfg.LogRetention > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				if err := n.store.LogPrune(ctx, time.Now().Add(-n.cfg.LogRetention)); err != nil {
					n.log.Warn("prune mail log", "err", err)
				}
				cancel()
			}
		}
	}
}

// Close stops every service, then storage, in reverse order of start.
func (n *Node) Close() error {
	n.mu.Lock()
	closers := n.closers
	n.closers = nil
	n.mu.Unlock()
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	select {
	case <-n.stopSweep:
	default:
		close(n.stopSweep)
	}
	if n.maillog != nil {
		n.maillog.Close()
	}
	if n.repl != nil {
		n.repl.Close()
	}
	if n.witnessBlobs != nil {
		n.witnessBlobs.Close()
	}
	if n.store != nil {
		n.store.Close()
	}
	if n.raft != nil {
		if err := n.raft.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.fsm != nil {
		if err := n.fsm.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	n.wg.Wait()
	os.Remove(AdminSocket(n.cfg.DataDir))
	return errors.Join(errs...)
}

// Status is the node's state for `tandem status` and /api/status.
type Status struct {
	Version   string            `json:"version"`
	NodeID    string            `json:"node_id"`
	Hostname  string            `json:"hostname"`
	DataDir   string            `json:"data_dir"`
	Uptime    string            `json:"uptime"`
	Raft      cluster.Status    `json:"raft"`
	Listeners map[string]string `json:"listeners"`
	Domains   int               `json:"domains"`
	Accounts  int               `json:"accounts"`
	DiskFree  uint64            `json:"disk_free_bytes"`
}

// Status reports the node's state.
func (n *Node) Status() Status {
	ds, _ := n.store.Domains()
	_, total, _ := n.store.Accounts(storage.AccountQuery{Limit: 1})
	free := diskFree(n.cfg.DataDir)
	return Status{Version: Version, NodeID: n.cfg.NodeID, Hostname: n.cfg.Hostname, DataDir: n.cfg.DataDir,
		Uptime: time.Since(n.started).Round(time.Second).String(), Raft: n.raft.Status(),
		Listeners: n.Listeners(), Domains: len(ds), Accounts: total, DiskFree: free}
}

var _ io.Writer = (*os.File)(nil)
