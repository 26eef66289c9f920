package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tandemmail/tandem/protocols/dnsd"
)

// The built-in authoritative DNS server (SPEC D1). Every node serves the
// zones from its own replicated state (protocols/dnsd KVZones over the KV
// store), so a follower answers like the leader; only the leader persists
// serial bumps of derived records (Reconcile).

// dnsPoll is how often the server checks the zone version: a change made on
// any node is served everywhere within about this delay plus replication.
const dnsPoll = 200 * time.Millisecond

// dnsHost is where the mail host is reachable: the VIPs in a cluster, else
// the --dns-host-ip addresses.
func (n *Node) dnsHost() (dnsd.HostConfig, error) {
	h := dnsd.HostConfig{Hostname: n.cfg.Hostname}
	add := func(flag, s string) error {
		s = strings.TrimSpace(s)
		if s == "" {
			return nil
		}
		var a netip.Addr
		if p, err := netip.ParsePrefix(s); err == nil {
			a = p.Addr()
		} else if a, err = netip.ParseAddr(s); err != nil {
			return fmt.Errorf("%s %q: not an IP address", flag, s)
		}
		if a.Is4() || a.Is4In6() {
			h.V4 = append(h.V4, net.IP(a.Unmap().AsSlice()))
		} else {
			h.V6 = append(h.V6, net.IP(a.AsSlice()))
		}
		return nil
	}
	if n.cfg.VIP4 != "" || n.cfg.VIP6 != "" {
		if err := add("--vip", n.cfg.VIP4); err != nil {
			return h, err
		}
		if err := add("--vip6", n.cfg.VIP6); err != nil {
			return h, err
		}
		return h, nil
	}
	for _, s := range n.cfg.DNSHostIPs {
		for _, part := range strings.Split(s, ",") {
			if err := add("--dns-host-ip", part); err != nil {
				return h, err
			}
		}
	}
	return h, nil
}

// dnsZones is the zone source and record manager over this node's store.
func (n *Node) dnsZones() (*dnsd.KVZones, error) {
	h, err := n.dnsHost()
	if err != nil {
		return nil, err
	}
	return dnsd.NewKVZones(n.store, h, n.log.With("service", "dns"), nil), nil
}

// dnsAddrs splits the --dns-addr values. A wildcard IPv6 address is dual
// stack on Linux, so "0.0.0.0:53" beside "[::]:53" is dropped instead of
// failing with "address in use".
func dnsAddrs(vals []string) ([]string, error) {
	var addrs []string
	v6any := map[string]bool{}
	for _, v := range vals {
		for _, a := range strings.Split(v, ",") {
			a = strings.TrimSpace(a)
			if a == "" {
				continue
			}
			host, port, err := net.SplitHostPort(a)
			if err != nil {
				return nil, fmt.Errorf("--dns-addr %q: want HOST:PORT, e.g. 0.0.0.0:53 or [::]:53: %w", a, err)
			}
			if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
				return nil, fmt.Errorf("--dns-addr %q: bad port", a)
			}
			if host != "" && net.ParseIP(host) == nil {
				return nil, fmt.Errorf("--dns-addr %q: the host must be an IP address", a)
			}
			if host == "::" {
				v6any[port] = true
			}
			addrs = append(addrs, a)
		}
	}
	out := addrs[:0]
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		if (host == "0.0.0.0" || host == "") && v6any[port] {
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

// startDNS checks the DNS flags, starts the leader's zone maintenance and,
// with --dns-addr, the server.
func (n *Node) startDNS() error {
	zones, err := n.dnsZones()
	if err != nil {
		return err
	}
	addrs, err := dnsAddrs(n.cfg.DNSAddrs)
	if err != nil {
		return err
	}
	var allow []netip.Prefix
	for _, v := range n.cfg.DNSAXFRAllow {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			p, err := netip.ParsePrefix(s)
			if err != nil {
				a, aerr := netip.ParseAddr(s)
				if aerr != nil {
					return fmt.Errorf("--dns-axfr-allow %q: want a CIDR such as 192.0.2.0/24 or an address: %w", s, err)
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			allow = append(allow, p.Masked())
		}
	}
	n.wg.Add(1)
	go n.dnsReconcileLoop(zones)
	if len(addrs) == 0 {
		return nil
	}
	h, _ := n.dnsHost()
	if len(h.V4)+len(h.V6) == 0 {
		n.log.Warn("dns: no mail host address to publish; give --dns-host-ip (or --vip) so MX targets resolve")
	}
	rate := n.cfg.DNSRateLimit
	if rate == 0 {
		rate = 100
	}
	srv, err := dnsd.New(dnsd.Config{Addrs: addrs, Zones: zones, Logger: n.log, AllowTransfer: allow,
		RateLimit: max(rate, 0), PollInterval: dnsPoll})
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	if err := srv.Start(); err != nil {
		hint := ""
		switch {
		case errors.Is(err, syscall.EACCES):
			hint = "; port 53 needs root (or CAP_NET_BIND_SERVICE), or pick a high port such as 127.0.0.1:5353"
		case errors.Is(err, syscall.EADDRINUSE):
			hint = "; another DNS server (systemd-resolved, dnsmasq?) listens there: stop it or give --dns-addr a specific address"
		}
		return fmt.Errorf("--dns-addr: %w%s", err, hint)
	}
	n.addCloser(srv.Close)
	n.mu.Lock()
	for i, a := range srv.Addrs() {
		name := "dns"
		if i > 0 {
			name = "dns" + strconv.Itoa(i+1)
		}
		n.listeners[name] = a
	}
	n.mu.Unlock()
	return nil
}

// dnsReconcileLoop lets the leader persist serial bumps of derived records
// and drop the zone documents of deleted domains whenever the zone version
// changes (and every minute in case a write was lost to a conflict).
func (n *Node) dnsReconcileLoop(zones *dnsd.KVZones) {
	defer n.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last uint64
	var lastRun time.Time
	for {
		select {
		case <-n.stopSweep:
			return
		case <-t.C:
		}
		if !n.raft.IsLeader() {
			last = 0
			continue
		}
		v := zones.Version()
		if v == last && time.Since(lastRun) < time.Minute {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := zones.Reconcile(ctx)
		cancel()
		lastRun = time.Now()
		if err != nil {
			n.log.Warn("dns zone maintenance", "err", err)
			continue
		}
		last = zones.Version()
	}
}
