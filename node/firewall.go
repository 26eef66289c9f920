package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/filter/firewall"
	"github.com/tandemmail/tandem/protocols/pop3d"
	"github.com/tandemmail/tandem/protocols/smtpd"
)

// fwState is the node's mail firewall (SPEC F4), made on first use (the
// admin API starts before the mail services).
type fwState struct {
	once sync.Once
	f    *firewall.Firewall
	err  error
}

// firewall returns the node's mail firewall; its leader-side prune loop
// starts with it.
func (n *Node) firewall() (*firewall.Firewall, error) {
	n.fw.once.Do(func() {
		allow, err := firewall.ParseAllow(n.cfg.FirewallAllow)
		if err != nil {
			n.fw.err = fmt.Errorf("--firewall-allow: %w", err)
			return
		}
		n.fw.f = firewall.New(n.store, firewall.Config{
			Allow: allow, MaxConnIP: n.cfg.FirewallMaxConnIP, MaxConnNet: n.cfg.FirewallMaxConnNet,
			MsgRate: n.cfg.FirewallMsgRate, AuthFailures: n.cfg.FirewallAuthFailures, BadRcpts: n.cfg.FirewallBadRcpts,
			Window: n.cfg.FirewallWindow, BlockTime: n.cfg.FirewallBlockTime,
			Logger: n.log.With("service", "firewall"),
		})
		ctx, cancel := context.WithCancel(context.Background())
		n.addCloser(func() error { cancel(); return nil })
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.firewallPrune(ctx, n.fw.f) }()
	})
	return n.fw.f, n.fw.err
}

// firewallPrune removes expired blocks from the replicated store; only
// the leader writes, every node enforces expiry on read meanwhile.
func (n *Node) firewallPrune(ctx context.Context, f *firewall.Firewall) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !n.raft.IsLeader() {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if k, err := f.Prune(pctx); err != nil {
			n.log.Warn("prune firewall blocks", "err", err)
		} else if k > 0 {
			n.log.Info("expired firewall blocks removed", "count", k)
		}
		cancel()
	}
}

// firewallChecks adds the firewall's connection check (blocked clients,
// message rate): the first stage of all.
func (n *Node) firewallChecks(c *filter.Checks) error {
	f, err := n.firewall()
	if err != nil {
		return err
	}
	c.Conn = append(c.Conn, firewall.Stage{F: f})
	return nil
}

// firewallRcptObserver counts unknown recipients for the dictionary-attack
// detection; nil when the firewall is off.
func (n *Node) firewallRcptObserver() func(context.Context, *filter.Envelope, string, *filter.Reject) {
	f, err := n.firewall()
	if err != nil || n.cfg.NoFilters {
		return nil
	}
	return firewall.Stage{F: f}.ObserveRcptReject
}

// firewallListener refuses blocked clients and clients over their
// connection limits at accept, with the protocol's greeting-time refusal
// (RFC 5321 §3.1 421; RFC 9051 §7.1.5 BYE; RFC 1939 -ERR with RFC 2449
// [SYS/TEMP]). Implicit-TLS ports cannot speak before the handshake, so
// there the connection is just closed.
func (n *Node) firewallListener(service string, l net.Listener) net.Listener {
	f, err := n.firewall()
	if err != nil || n.cfg.NoFilters {
		return l // a bad flag is reported by the filter stages
	}
	return &fwListener{Listener: l, f: f, service: service, host: n.cfg.Hostname, n: n}
}

type fwListener struct {
	net.Listener
	f       *firewall.Firewall
	service string
	host    string
	n       *Node
}

func (l *fwListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		a := firewall.RemoteAddr(c.RemoteAddr())
		release, err := l.f.Acquire(a)
		if err == nil {
			return &fwConn{Conn: c, release: release}, nil
		}
		l.n.log.Info("connection refused by the firewall", "service", l.service, "client_ip", a.String(), "why", err)
		go refuse(c, l.service, l.host, err)
	}
}

// refuse sends the refusal without holding up the accept loop.
func refuse(c net.Conn, service, host string, why error) {
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	msg := "Too many connections, try again later"
	if errors.Is(why, firewall.ErrBlocked) {
		msg = "Client blocked by the mail firewall"
	}
	var line string
	switch service {
	case "smtp", "submission":
		line = "421 4.7.0 " + host + " " + msg + "\r\n"
	case "imap":
		line = "* BYE [UNAVAILABLE] " + msg + "\r\n"
	case "pop3":
		line = "-ERR [SYS/TEMP] " + msg + "\r\n"
	default:
		return
	}
	_, _ = c.Write([]byte(line))
}

// fwConn releases its connection slot once closed.
type fwConn struct {
	net.Conn
	release func()
}

func (c *fwConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// fwAuthGuard checks logins against the firewall for the protocol
// servers: refused while the client or the account is blocked; failures
// are counted toward the brute-force limits.
type fwAuthGuard struct{ f *firewall.Firewall }

// AllowAuth is asked before the password is checked.
func (g fwAuthGuard) AllowAuth(ip net.IP, user string) error {
	return g.f.AllowAuth(firewall.AddrOf(ip), user)
}

// AuthFailed is told of every failed login.
func (g fwAuthGuard) AuthFailed(ip net.IP, user string) {
	// A block is a Raft write; without a leader it must not hang the login.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g.f.AuthFailed(ctx, firewall.AddrOf(ip), user)
}

// firewallAuthGuard is nil when the firewall is off.
func (n *Node) firewallAuthGuard() *fwAuthGuard {
	f, err := n.firewall()
	if err != nil || n.cfg.NoFilters {
		return nil
	}
	return &fwAuthGuard{f: f}
}

// fwPOP3 wraps the POP3 backend with the firewall's login checks.
type fwPOP3 struct {
	pop3d.Backend
	f *firewall.Firewall
}

func (b fwPOP3) Login(ctx context.Context, username, password string, remote net.Addr) (pop3d.Maildrop, error) {
	a := firewall.RemoteAddr(remote)
	if err := b.f.AllowAuth(a, username); err != nil {
		// RFC 3206 [AUTH]: the same answer as a bad password, so a
		// guesser learns nothing; the log says why.
		return nil, fmt.Errorf("%w: %w", pop3d.ErrAuthFailed, err)
	}
	md, err := b.Backend.Login(ctx, username, password, remote)
	if errors.Is(err, pop3d.ErrAuthFailed) {
		b.f.AuthFailed(ctx, a, username)
	}
	return md, err
}

// firewallPOP3 wraps be when the firewall is on.
func (n *Node) firewallPOP3(be pop3d.Backend) pop3d.Backend {
	f, err := n.firewall()
	if err != nil || n.cfg.NoFilters {
		return be
	}
	return fwPOP3{Backend: be, f: f}
}

// firewallAdmin is the admin API's view of the firewall (webui/firewall.go).
type firewallAdmin struct{ n *Node }

func (a firewallAdmin) fw() (*firewall.Firewall, error) { return a.n.firewall() }

func (a firewallAdmin) List() ([]firewall.Block, error) {
	f, err := a.fw()
	if err != nil {
		return nil, err
	}
	return f.List(), nil
}

func (a firewallAdmin) Block(ctx context.Context, target, reason string, d time.Duration) (firewall.Block, error) {
	f, err := a.fw()
	if err != nil {
		return firewall.Block{}, err
	}
	key, err := firewall.ParseTarget(target)
	if err != nil {
		return firewall.Block{}, err
	}
	if reason == "" {
		reason = "blocked by the admin"
	}
	return f.Block(ctx, key, reason, d, 0)
}

func (a firewallAdmin) Unblock(ctx context.Context, target string) (bool, error) {
	f, err := a.fw()
	if err != nil {
		return false, err
	}
	key, err := firewall.ParseTarget(target)
	if err != nil {
		return false, err
	}
	return f.Unblock(ctx, key)
}

// smtpAuthGuard avoids a typed nil in the interface when the firewall is off.
func smtpAuthGuard(g *fwAuthGuard) smtpd.AuthGuard {
	if g == nil {
		return nil
	}
	return g
}

// imapAuthGuard is the IMAP server's AuthGuard, nil when the firewall is off.
func (n *Node) imapAuthGuard() interface {
	AllowAuth(ip net.IP, user string) error
	AuthFailed(ip net.IP, user string)
} {
	if g := n.firewallAuthGuard(); g != nil {
		return g
	}
	return nil
}
