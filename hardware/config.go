package hardware

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"
)

// DefaultLifetime is the lease lifetime when Config.Lifetime is zero
// (DESIGN §4).
const DefaultLifetime = 3 * time.Second

// Config describes the virtual addresses and where they live.
type Config struct {
	// Interface carries the addresses, e.g. "eth0".
	Interface string
	// V4 and V6 are the virtual addresses with their prefix length
	// (10.0.0.100/24, fd00::100/64); at least one is set. IP is the address
	// itself, not the network.
	V4, V6 *net.IPNet
	// Lifetime is the kernel-enforced valid lifetime of the addresses. The
	// kernel counts whole seconds, so it must be a whole number of seconds,
	// at least 1 s; zero means DefaultLifetime.
	Lifetime time.Duration
	// Logger gets lease events; nil means slog.Default().
	Logger *slog.Logger
	// Netns is the network namespace to work in: a name as made by
	// `ip netns add` or an absolute path (/proc/PID/ns/net); "" is the
	// namespace of this process.
	Netns string
}

// ParseVIP reads the --vip, --vip6 and --vip-iface flags ("" for a flag not
// given) into a Config with the default lifetime.
func ParseVIP(v4, v6, iface string) (Config, error) {
	var c Config
	if v4 == "" && v6 == "" {
		return c, errors.New("no virtual address: give --vip (e.g. 10.0.0.100/24) and/or --vip6 (e.g. fd00::100/64)")
	}
	if err := checkInterfaceName(iface); err != nil {
		return c, fmt.Errorf("--vip-iface %q: %w", iface, err)
	}
	c.Interface = iface
	if v4 != "" {
		n, err := parseVIPAddr(v4, true)
		if err != nil {
			return c, fmt.Errorf("--vip %q: %w", v4, err)
		}
		c.V4 = n
	}
	if v6 != "" {
		n, err := parseVIPAddr(v6, false)
		if err != nil {
			return c, fmt.Errorf("--vip6 %q: %w", v6, err)
		}
		c.V6 = n
	}
	return c, nil
}

func checkInterfaceName(s string) error {
	switch {
	case s == "":
		return errors.New("name the interface that carries the virtual address, e.g. --vip-iface eth0")
	case len(s) > 15: // IFNAMSIZ - 1
		return errors.New("interface names have at most 15 characters")
	case s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n\x00"):
		return errors.New("not an interface name")
	}
	return nil
}

// parseVIPAddr reads "address/prefix" and refuses what cannot be a host's
// unicast address on a LAN.
func parseVIPAddr(s string, want4 bool) (*net.IPNet, error) {
	example := "10.0.0.100/24"
	if !want4 {
		example = "fd00::100/64"
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if _, aerr := netip.ParseAddr(s); aerr == nil && !strings.Contains(s, "/") {
			return nil, fmt.Errorf("give the prefix length too, e.g. %s", example)
		}
		return nil, fmt.Errorf("want an address with its prefix length, e.g. %s", example)
	}
	a := p.Addr()
	switch {
	case a.Zone() != "":
		return nil, errors.New("no zone: the interface is --vip-iface")
	case want4 && !a.Is4():
		return nil, fmt.Errorf("not an IPv4 address (IPv6 goes in --vip6), e.g. %s", example)
	case !want4 && (!a.Is6() || a.Is4In6()):
		return nil, fmt.Errorf("not an IPv6 address (IPv4 goes in --vip), e.g. %s", example)
	case !a.IsGlobalUnicast() || a.IsLinkLocalUnicast():
		return nil, errors.New("not a unicast address a client can reach (loopback, link-local, multicast or unspecified)")
	}
	if want4 && p.Bits() < 31 {
		// RFC 919 §7 / RFC 922: the all-zeros and all-ones hosts of a
		// subnet are the network and broadcast addresses.
		hostBits := 32 - p.Bits()
		b := a.As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		host := v & (1<<hostBits - 1)
		if host == 0 || host == 1<<hostBits-1 {
			return nil, fmt.Errorf("%s is the network or broadcast address of %s", a, p.Masked())
		}
	}
	if !want4 && p.Bits() < 127 && a == p.Masked().Addr() {
		// RFC 4291 §2.6.1: the all-zeros host is the Subnet-Router anycast
		// address.
		return nil, fmt.Errorf("%s is the subnet-router anycast address of %s; pick a host address", a, p.Masked())
	}
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(p.Bits(), a.BitLen())}, nil
}

// lifetime checks Config.Lifetime and applies the default.
func (c Config) lifetime() (time.Duration, error) {
	switch {
	case c.Lifetime == 0:
		return DefaultLifetime, nil
	case c.Lifetime < time.Second || c.Lifetime%time.Second != 0:
		// Rounding down would make the caller's wait too short for a
		// lease the kernel holds longer; rounding up the reverse.
		return 0, fmt.Errorf("virtual IP lifetime %v: the kernel counts whole seconds; give 1s or more in whole seconds", c.Lifetime)
	}
	return c.Lifetime, nil
}

// String names the addresses for logs and errors.
func (c Config) String() string {
	var parts []string
	if c.V4 != nil {
		parts = append(parts, c.V4.String())
	}
	if c.V6 != nil {
		parts = append(parts, c.V6.String())
	}
	s := strings.Join(parts, ",")
	if c.Interface != "" {
		s += " on " + c.Interface
	}
	if c.Netns != "" {
		s += " in netns " + c.Netns
	}
	return s
}
