// Package hardware owns the box's network interfaces as far as Tandem
// touches them: the virtual IP lease of DESIGN §4 and the gratuitous ARP and
// unsolicited neighbour advertisements that move clients to a new holder.
//
// # The lease
//
// The leader holds the virtual addresses (an IPv4 and/or an IPv6 address on
// one interface). Each is added with netlink with a short valid lifetime
// (Config.Lifetime, whole seconds, default 3 s; preferred lifetime the
// same), and renewed every quarter lifetime while the caller's stillLeader
// check holds. If the process dies, hangs or is cut off, nobody renews and
// the kernel deletes the address itself when the lifetime runs out: unlike
// keepalived, a dead Tandem cannot leave the address behind.
//
// The cluster code drives a VIP (New gives the real one):
//
//	lease, err := hardware.New(cfg)             // removes leftovers from an earlier run
//	err = lease.Acquire(ctx, notBefore, stillLeader)
//	lease.Held()                                // true while the addresses are in place
//	err = lease.Release()                       // on losing leadership: delete at once
//	err = lease.Close()                         // at shutdown
//
// Acquire waits until notBefore, the moment any earlier holder's lease must
// have run out (the caller computes it: last contact with the old leader +
// lifetime + margin; zero if the old holder is known to have released it),
// checks stillLeader once more, adds the addresses (IPv6 with IFA_F_NODAD:
// duplicate address detection would hold the address back for 1.5 s) and
// returns. A goroutine owned by the lease then renews the addresses and
// announces them (gratuitous ARP, RFC 5227 §2.3; unsolicited neighbour
// advertisements with Override, RFC 4861 §7.2.6: 14 rounds over 4.5 s);
// Release and Close stop it. The lease drops the addresses on its own, and
// Held turns false, when stillLeader reports false, or when it lapses: a
// renewal or announcement that comes too late (the process stalled past
// the lifetime) is not made, since a new leader may hold the address by
// now, and the lease is not taken again for one lifetime, so that the
// caller's view of leadership can catch up with the cluster's.
//
// The IPv4 address is best in a subnet the interface already has an
// address in, so the kernel makes it a secondary address: deleting a
// primary address deletes its secondaries too, unless
// net.ipv4.conf.IFACE.promote_secondaries is set.
//
// # What it must not do
//
// It decides nothing: leadership, quorum contact and the wait before taking
// the address belong to the caller. It touches only the configured
// addresses, on the configured interface (leftovers: on any interface of
// its namespace), and sends only announcements of those addresses.
//
// # Tests
//
// NewFakeNet gives leases with the same state machine over a pretend kernel
// that records adds, removals and announcements, expires addresses by a
// clock, and reports any moment two nodes held the address at once; it
// needs no root:
//
//	net := hardware.NewFakeNet(nil)            // or a test clock's Now
//	a, _ := net.Lease("n1", hardware.Config{Lifetime: time.Second})
//	net.Crash(a)                               // a SIGKILL: the address stays until it expires
//	net.Holders(); net.Conflicts(); net.Events()
//
// Config.Netns runs a real lease inside a network namespace (a name from
// `ip netns add` or a /proc/PID/ns/net path): netlink calls go through a
// handle opened in it, and the announcement sockets are opened on a thread
// switched into it. A process started with `ip netns exec` needs no Netns.
package hardware
