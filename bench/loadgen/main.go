// Command loadgen drives SMTP and IMAP load against a mail server on loopback
// and prints "RESULT key=value ..." lines that bench/run.sh collects.
//
// Modes:
//
//	loadgen smtp   -addr HOST:PORT -imap-addr HOST:PORT ...  intake and end-to-end delivery rate
//	loadgen imap   -addr HOST:PORT ...                       FETCH and SEARCH throughput
//	loadgen report FILE...                                   side-by-side markdown table with ratios
//
// Every mode is bounded in count and time: a watchdog ends the process when
// -timeout (plus a grace period) has passed, whatever the server does.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: loadgen smtp|imap|report [flags]
  loadgen smtp -h    SMTP intake and end-to-end delivery
  loadgen imap -h    IMAP FETCH/SEARCH throughput
  loadgen report [-primary NAME] FILE...   table from RESULT lines`

// run dispatches to a mode and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "smtp":
		err = runSMTP(ctx, args[1:], stdout, stderr)
	case "imap":
		err = runIMAP(ctx, args[1:], stdout, stderr)
	case "report":
		err = runReport(args[1:], stdout)
	default:
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadgen %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// errNotLoopback is returned for targets outside 127.0.0.0/8 and ::1: the
// benchmark only ever talks to servers on this machine.
var errNotLoopback = errors.New("target is not a loopback address")

// checkLoopback accepts "127.x.y.z:port", "[::1]:port" and "localhost:port".
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: %w", addr, errNotLoopback)
	}
	return nil
}

// watchdog ends the process with exit code 3 if it is still running after d.
// It is the outer bound that keeps a hung server from hanging the benchmark.
func watchdog(d time.Duration, stdout io.Writer, tag string) *time.Timer {
	return time.AfterFunc(d, func() {
		fmt.Fprintf(stdout, "RESULT %s status=killed-by-watchdog after=%s\n", tag, d)
		os.Exit(3)
	})
}

// result formats one RESULT line with keys in the given order.
type result struct {
	keys []string
	vals map[string]string
}

func newResult() *result { return &result{vals: map[string]string{}} }

func (r *result) set(k string, v any) *result {
	if _, ok := r.vals[k]; !ok {
		r.keys = append(r.keys, k)
	}
	var s string
	switch x := v.(type) {
	case float64:
		s = fmt.Sprintf("%.1f", x)
	case time.Duration:
		s = fmt.Sprintf("%.3f", x.Seconds())
	default:
		s = fmt.Sprint(x)
	}
	r.vals[k] = strings.ReplaceAll(s, " ", "_")
	return r
}

func (r *result) String() string {
	var b strings.Builder
	b.WriteString("RESULT")
	for _, k := range r.keys {
		fmt.Fprintf(&b, " %s=%s", k, r.vals[k])
	}
	return b.String()
}

// percentile returns the p-th percentile (0..100) of ds; ds is sorted in place.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(float64(len(ds)-1) * p / 100)
	return ds[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
