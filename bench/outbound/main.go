// Command outbound measures the outbound engine's throughput: it fills a
// fresh single-node store's queue with messages, starts the engine with a
// smarthost pointing at a sink (Postfix's smtp-sink) and times how long the
// queue takes to drain. bench/outbound/run.sh runs it beside Postfix on the
// same sink. Output: one "RESULT key=value ..." line per run.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tandemmail/tandem/cluster"
	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/protocols/outbound"
	"github.com/tandemmail/tandem/storage"
)

func main() {
	sink := flag.String("sink", "127.0.0.1:12600", "SMTP sink host:port")
	messages := flag.Int("messages", 2000, "messages per run")
	size := flag.Int("size", 10240, "message size in bytes")
	conns := flag.String("conns", "1,20", "comma-separated connection counts (MaxConcurrency)")
	dir := flag.String("dir", "", "store directory (default: a temporary one per run)")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up a run after")
	flag.Parse()
	for _, c := range strings.Split(*conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n <= 0 {
			fatal(fmt.Errorf("bad -conns %q", *conns))
		}
		if err := run(*sink, *messages, *size, n, *dir, *timeout); err != nil {
			fatal(err)
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "outbound bench:", err)
	os.Exit(1)
}

// countingSink counts the outcomes of delivery attempts.
type countingSink struct{ delivered, other atomic.Int64 }

func (c *countingSink) SaveTranscript(_ context.Context, t outbound.Transcript) error {
	if strings.Contains(t.Outcome, " delivered: ") && !strings.Contains(t.Outcome, "deferred") && !strings.Contains(t.Outcome, "failed") {
		c.delivered.Add(1)
	} else if c.other.Add(1) <= 3 {
		fmt.Fprintln(os.Stderr, "attempt:", t.Outcome)
	}
	return nil
}

func run(sink string, messages, size, conns int, dir string, timeout time.Duration) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "outbound-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	st, closeStore, err := openStore(dir)
	if err != nil {
		return err
	}
	defer closeStore()
	host, port, err := net.SplitHostPort(sink)
	if err != nil {
		return err
	}
	p, _ := strconv.Atoi(port)
	counts := &countingSink{}
	eng := outbound.New(outbound.Config{Store: st, Hostname: "tandem.bench", MaxConcurrency: conns,
		Smarthosts:  map[string]outbound.Smarthost{"": {Host: host, Port: p, TLS: outbound.TLSNone}},
		Transcripts: counts, Logger: slog.New(slog.DiscardHandler)})

	// Fill the queue first, as Postfix's is filled with delivery deferred.
	ctx := context.Background()
	body := message(size)
	fillStart := time.Now()
	for i := 0; i < messages; i++ {
		b, err := st.PutBlob(strings.NewReader(fmt.Sprintf("Message-ID: <%d.%d@bench>\r\n%s", conns, i, body)))
		if err != nil {
			return err
		}
		env := &filter.Envelope{ID: fmt.Sprintf("B%dx%06d", conns, i), From: "bench@src.test"}
		err = eng.Enqueue(ctx, env, []string{fmt.Sprintf("user%d@sink.test", i%100)}, b)
		b.Release()
		if err != nil {
			return err
		}
	}
	fill := time.Since(fillStart)

	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	start := time.Now()
	go func() { eng.Run(rctx); close(done) }()
	deadline := start.Add(timeout)
	for counts.delivered.Load()+counts.other.Load() < int64(messages) || !st.QueueNextDue().IsZero() {
		if time.Now().After(deadline) {
			cancel()
			<-done
			return fmt.Errorf("conns=%d: timed out with %d delivered", conns, counts.delivered.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	<-done
	eng.Close()
	fmt.Printf("RESULT mode=outbound name=tandem conns=%d messages=%d size=%d delivered=%d other=%d secs=%.3f msg_per_sec=%.1f fill_secs=%.3f\n",
		conns, messages, size, counts.delivered.Load(), counts.other.Load(), elapsed.Seconds(),
		float64(messages)/elapsed.Seconds(), fill.Seconds())
	return nil
}

// message is a header and a body of about size bytes.
func message(size int) string {
	var b strings.Builder
	b.WriteString("From: bench@src.test\r\nTo: sink@sink.test\r\nSubject: outbound bench\r\n\r\n")
	line := strings.Repeat("0123456789", 7) + "abcd\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.String()
}

// openStore starts a single-node store (as the node does, without peers).
func openStore(dir string) (*storage.Store, func(), error) {
	log := slog.New(slog.DiscardHandler)
	fsm, err := storage.OpenFSM(filepath.Join(dir, "state.db"), log)
	if err != nil {
		return nil, nil, err
	}
	blobs, err := storage.OpenBlobStore(filepath.Join(dir, "blobs"), log)
	if err != nil {
		return nil, nil, err
	}
	node, err := cluster.Open(cluster.Config{NodeID: "bench", Dir: filepath.Join(dir, "raft"), Logger: log,
		Secret: []byte("outbound-bench-secret-0123456789")}, fsm)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := node.WaitLeader(ctx); err != nil {
		return nil, nil, err
	}
	for !node.IsLeader() {
		time.Sleep(10 * time.Millisecond)
	}
	st := storage.NewStore(storage.StoreConfig{FSM: fsm, Blobs: blobs, Raft: node, Logger: log})
	return st, func() { st.Close(); node.Close(); fsm.Close() }, nil
}
