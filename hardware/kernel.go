package hardware

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// New opens the interface (in Config.Netns if set) and removes any of the
// virtual addresses left behind by an earlier run (DESIGN §4: a node that
// starts does not hold the VIP). The lease starts released.
func New(cfg Config) (*VIPLease, error) {
	if cfg.V4 == nil && cfg.V6 == nil {
		return nil, errors.New("virtual IP: no address configured")
	}
	if err := checkInterfaceName(cfg.Interface); err != nil {
		return nil, fmt.Errorf("virtual IP interface %q: %w", cfg.Interface, err)
	}
	k, err := openKernel(cfg)
	if err != nil {
		return nil, err
	}
	l, err := newLease(cfg, k)
	if err != nil {
		k.close()
		return nil, err
	}
	if err := k.removeLeftovers(l.log); err != nil {
		k.close()
		return nil, err
	}
	return l, nil
}

// kernel is the netlink backend, bound to one namespace.
type kernel struct {
	cfg  Config
	ns   netns.NsHandle // -1: this process's namespace
	h    *netlink.Handle
	link netlink.Link
}

func openKernel(cfg Config) (*kernel, error) {
	k := &kernel{cfg: cfg, ns: netns.None()}
	var err error
	if cfg.Netns != "" {
		if filepath.IsAbs(cfg.Netns) {
			k.ns, err = netns.GetFromPath(cfg.Netns)
		} else {
			k.ns, err = netns.GetFromName(cfg.Netns)
		}
		if err != nil {
			return nil, fmt.Errorf("virtual IP: network namespace %s: %w", cfg.Netns, err)
		}
		k.h, err = netlink.NewHandleAt(k.ns)
	} else {
		k.h, err = netlink.NewHandle()
	}
	if err != nil {
		k.close()
		return nil, fmt.Errorf("virtual IP: netlink: %w", err)
	}
	if k.link, err = k.h.LinkByName(cfg.Interface); err != nil {
		k.close()
		return nil, fmt.Errorf("virtual IP: interface %s: %w", cfg.Interface, err)
	}
	return k, nil
}

// addrs are the netlink forms of the addresses with the lifetime.
func (k *kernel) addrs(lifetime time.Duration) []*netlink.Addr {
	secs := int(lifetime / time.Second)
	var out []*netlink.Addr
	if k.cfg.V4 != nil {
		out = append(out, &netlink.Addr{IPNet: cloneIPNet(k.cfg.V4), ValidLft: secs, PreferedLft: secs})
	}
	if k.cfg.V6 != nil {
		// No duplicate address detection: it keeps the address tentative
		// (unusable) for 1.5 s, and the lease already rules out a second
		// holder (RFC 4862 §5.4 lets DAD be skipped).
		out = append(out, &netlink.Addr{IPNet: cloneIPNet(k.cfg.V6), ValidLft: secs, PreferedLft: secs, Flags: unix.IFA_F_NODAD})
	}
	return out
}

func cloneIPNet(n *net.IPNet) *net.IPNet {
	return &net.IPNet{IP: append(net.IP(nil), n.IP...), Mask: append(net.IPMask(nil), n.Mask...)}
}

// add installs or refreshes the addresses: NLM_F_REPLACE sets a fresh
// valid_lft on an address already there.
func (k *kernel) add(lifetime time.Duration) error {
	for _, a := range k.addrs(lifetime) {
		err := k.h.AddrReplace(k.link, a)
		if errors.Is(err, unix.ENODEV) {
			// The interface was re-created: find it again.
			if k.link, err = k.h.LinkByName(k.cfg.Interface); err == nil {
				err = k.h.AddrReplace(k.link, a)
			}
		}
		if err != nil {
			return fmt.Errorf("add %s on %s: %w", a.IPNet, k.cfg.Interface, err)
		}
	}
	return nil
}

func (k *kernel) remove() error {
	var errs []error
	for _, a := range k.addrs(0) {
		if err := k.h.AddrDel(k.link, a); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("delete %s from %s: %w", a.IPNet, k.cfg.Interface, err))
		}
	}
	return errors.Join(errs...)
}

// gone reports a delete that failed because there was nothing to delete.
func gone(err error) bool {
	return errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV)
}

// removeLeftovers deletes the virtual addresses wherever they are in the
// namespace, whatever their prefix length or lifetime: an earlier run may
// have been configured differently or killed before its lease ran out.
func (k *kernel) removeLeftovers(log *slog.Logger) error {
	all, err := k.h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("virtual IP: list addresses: %w", err)
	}
	var errs []error
	for _, a := range all {
		if !k.isVIP(a.IP) {
			continue
		}
		link := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: a.LinkIndex}}
		if err := k.h.AddrDel(link, &a); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("virtual IP: remove leftover %s: %w", a.IPNet, err))
			continue
		}
		log.Warn("removed a leftover virtual IP", "addr", a.IPNet.String(), "ifindex", a.LinkIndex)
	}
	return errors.Join(errs...)
}

func (k *kernel) isVIP(ip net.IP) bool {
	return (k.cfg.V4 != nil && ip.Equal(k.cfg.V4.IP)) || (k.cfg.V6 != nil && ip.Equal(k.cfg.V6.IP))
}

func (k *kernel) close() error {
	if k.h != nil {
		k.h.Close()
	}
	if k.ns.IsOpen() {
		return k.ns.Close()
	}
	return nil
}
