// Command qload measures DNS queries per second over UDP.
//
//	qload -server 127.0.0.1:5301 -queries queries.txt -label nsd -duration 10s
//
// Each of -workers goroutines owns a UDP socket and keeps -window queries in flight
// (closed loop: a reply or a timeout frees a slot). Queries ("name TYPE" lines, the
// dnsperf format) are sent with EDNS0 (1232 bytes), in file order, round robin. It
// stops after -duration or -count queries, whichever comes first, and prints
//
//	RESULT label=nsd qps=... sent=... received=... lost=... noerror=... nxdomain=... tc=... other=... p50_us=... p99_us=...
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

type config struct {
	server   string
	label    string
	workers  int
	window   int
	duration time.Duration
	count    int64
	timeout  time.Duration
}

// tally is one worker's counts; latency in microsecond buckets up to 100 ms.
type tally struct {
	sent, received, lost      int64
	noerror, nxdomain, tc, ot int64
	lat                       [100001]int64
}

func main() {
	var c config
	file := flag.String("queries", "", "query file: \"name TYPE\" per line")
	flag.StringVar(&c.server, "server", "127.0.0.1:53", "server host:port")
	flag.StringVar(&c.label, "label", "server", "label printed in the RESULT line")
	flag.IntVar(&c.workers, "workers", 4, "sockets, one goroutine each")
	flag.IntVar(&c.window, "window", 20, "queries in flight per worker")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "measurement time")
	flag.Int64Var(&c.count, "count", 0, "stop after this many queries (0: no limit)")
	flag.DurationVar(&c.timeout, "timeout", 500*time.Millisecond, "a query unanswered this long is lost")
	flag.Parse()
	qs, err := loadQueries(*file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "qload:", err)
		os.Exit(1)
	}
	if err := run(c, qs); err != nil {
		fmt.Fprintln(os.Stderr, "qload:", err)
		os.Exit(1)
	}
}

// loadQueries packs every query once; workers only patch the ID.
func loadQueries(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		t, ok := dns.StringToType[strings.ToUpper(fields[1])]
		if !ok {
			return nil, fmt.Errorf("unknown type %q", fields[1])
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(fields[0]), t)
		m.RecursionDesired = false
		m.SetEdns0(1232, false)
		b, err := m.Pack()
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, errors.New("no queries in " + path)
	}
	return out, sc.Err()
}

func run(c config, qs [][]byte) error {
	addr, err := net.ResolveUDPAddr("udp", c.server)
	if err != nil {
		return err
	}
	var budget *int64
	if c.count > 0 {
		budget = new(int64)
		*budget = c.count
	}
	var mu sync.Mutex
	tallies := make([]*tally, c.workers)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(c.duration)
	errs := make(chan error, c.workers)
	for w := range c.workers {
		conn, err := net.DialUDP("udp", nil, addr)
		if err != nil {
			return err
		}
		conn.SetReadBuffer(1 << 20)
		tallies[w] = &tally{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			take := func() bool {
				if budget == nil {
					return true
				}
				mu.Lock()
				defer mu.Unlock()
				if *budget <= 0 {
					return false
				}
				*budget--
				return true
			}
			if err := worker(conn, qs, w, c, end, take, tallies[w]); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	var t tally
	for _, w := range tallies {
		t.sent += w.sent
		t.received += w.received
		t.lost += w.lost
		t.noerror += w.noerror
		t.nxdomain += w.nxdomain
		t.tc += w.tc
		t.ot += w.ot
		for i, n := range w.lat {
			t.lat[i] += n
		}
	}
	fmt.Printf("RESULT label=%s qps=%.0f sent=%d received=%d lost=%d noerror=%d nxdomain=%d tc=%d other=%d p50_us=%d p99_us=%d seconds=%.2f\n",
		c.label, float64(t.received)/elapsed.Seconds(), t.sent, t.received, t.lost, t.noerror, t.nxdomain, t.tc, t.ot,
		percentile(&t, 0.50), percentile(&t, 0.99), elapsed.Seconds())
	return nil
}

// worker keeps c.window queries in flight on conn until end.
func worker(conn *net.UDPConn, qs [][]byte, w int, c config, end time.Time, take func() bool, t *tally) error {
	var sentAt [65536]int64 // by ID; 0 = not in flight
	inflight := 0
	var id uint16
	next := w * len(qs) / c.workers
	buf := make([]byte, 4096)
	send := func() error {
		if !take() {
			return nil
		}
		q := qs[next%len(qs)]
		next++
		id++
		for sentAt[id] != 0 {
			id++
		}
		b := append(buf[2048:2048], q...)
		binary.BigEndian.PutUint16(b, id)
		sentAt[id] = time.Now().UnixNano()
		inflight++
		t.sent++
		_, err := conn.Write(b)
		return err
	}
	for range c.window {
		if err := send(); err != nil {
			return err
		}
	}
	for inflight > 0 {
		conn.SetReadDeadline(time.Now().Add(c.timeout))
		n, err := conn.Read(buf[:2048])
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return err
			}
			// Everything in flight is lost; start a fresh window.
			t.lost += int64(inflight)
			clear(sentAt[:])
			inflight = 0
			if time.Now().After(end) {
				return nil
			}
			for range c.window {
				if err := send(); err != nil {
					return err
				}
			}
			continue
		}
		if n < 12 {
			continue
		}
		rid := binary.BigEndian.Uint16(buf)
		if sentAt[rid] == 0 {
			continue // late reply to a query counted lost
		}
		us := (time.Now().UnixNano() - sentAt[rid]) / 1000
		sentAt[rid] = 0
		inflight--
		t.received++
		t.lat[min(us, int64(len(t.lat)-1))]++
		switch {
		case buf[2]&0x02 != 0:
			t.tc++
		case buf[3]&0x0f == dns.RcodeSuccess:
			t.noerror++
		case buf[3]&0x0f == dns.RcodeNameError:
			t.nxdomain++
		default:
			t.ot++
		}
		if time.Now().Before(end) {
			if err := send(); err != nil {
				return err
			}
		}
	}
	return nil
}

func percentile(t *tally, p float64) int {
	var total int64
	for _, n := range t.lat {
		total += n
	}
	want := int64(float64(total) * p)
	var sum int64
	for i, n := range t.lat {
		sum += n
		if sum > want {
			return i
		}
	}
	return len(t.lat) - 1
}
