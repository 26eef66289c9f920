// Command serve generates the DNS benchmark zone and serves it with protocols/dnsd.
//
//	serve -names 1000 -zone-out bench.test.zone -queries-out queries.txt -write-only
//	serve -names 1000 -addr 127.0.0.1:5302
//
// The zone is deterministic for a given -names, so the zone file NSD loads and the
// zone dnsd serves are the same records.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/tandemmail/tandem/protocols/dnsd"
)

const origin = "bench.test."

func main() {
	names := flag.Int("names", 1000, "host names in the zone")
	addr := flag.String("addr", "127.0.0.1:5302", "listen address (UDP and TCP)")
	zoneOut := flag.String("zone-out", "", "write the zone in zone-file format here")
	queriesOut := flag.String("queries-out", "", "write the query list (\"name TYPE\" lines) here")
	writeOnly := flag.Bool("write-only", false, "write the files and exit")
	sockets := flag.Int("udp-sockets", 0, "dnsd UDP sockets sharing the port (0: default)")
	workers := flag.Int("udp-workers", 0, "dnsd UDP readers per socket (0: default)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here while serving")
	flag.Parse()

	z := benchZone(*names)
	if err := z.Validate(); err != nil {
		fatal(err)
	}
	if *zoneOut != "" {
		if err := os.WriteFile(*zoneOut, []byte(z.ZoneFile()), 0o644); err != nil {
			fatal(err)
		}
	}
	if *queriesOut != "" {
		if err := os.WriteFile(*queriesOut, []byte(queries(z)), 0o644); err != nil {
			fatal(err)
		}
	}
	if *writeOnly {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := dnsd.New(dnsd.Config{Addrs: []string{*addr}, Zones: dnsd.NewMemorySource(z), Logger: log,
		UDPSockets: *sockets, UDPWorkers: *workers})
	if err != nil {
		fatal(err)
	}
	if err := s.Start(); err != nil {
		fatal(err)
	}
	fmt.Printf("serving %d records on %s\n", len(z.Records), s.Addrs()[0])
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	<-ctx.Done()
	s.Close()
	if st := s.Stats(); st.Panics != 0 {
		fatal(fmt.Errorf("%d handler panics", st.Panics))
	}
}

// benchZone is a mail domain with n hosts: each has an A record, every 4th an AAAA,
// every 10th a TXT, every 20th an MX.
func benchZone(n int) dnsd.Zone {
	z := dnsd.DefaultZone(origin, "mail."+origin, []net.IP{net.ParseIP("192.0.2.1")},
		[]net.IP{net.ParseIP("2001:db8::1")}, "sel", "v=DKIM1; k=rsa; p="+strings.Repeat("QUJD", 90))
	for i := range n {
		host := fmt.Sprintf("host%04d.%s", i, origin)
		add := func(t, v string) {
			z.Records = append(z.Records, dnsd.Record{Name: host, Type: t, TTL: 3600, Value: v})
		}
		add("A", fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
		if i%4 == 0 {
			add("AAAA", fmt.Sprintf("2001:db8:1::%x", i))
		}
		if i%10 == 0 {
			add("TXT", fmt.Sprintf(`"host %d of the benchmark zone"`, i))
		}
		if i%20 == 0 {
			add("MX", "10 mail."+origin)
		}
	}
	return z
}

// queries lists every (name, type) of the zone, plus 2 % names that do not exist,
// shuffled with a fixed seed.
func queries(z dnsd.Zone) string {
	var qs []string
	for _, r := range z.Records {
		qs = append(qs, r.Name+" "+r.Type)
	}
	for i := range len(qs) / 50 {
		qs = append(qs, fmt.Sprintf("nx%d.%s A", i, z.Origin))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(qs), func(i, j int) { qs[i], qs[j] = qs[j], qs[i] })
	return strings.Join(qs, "\n") + "\n"
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "serve:", err)
	os.Exit(1)
}
