package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

type smtpConfig struct {
	name, addr, imapAddr string
	conns, messages      int
	size, users, perConn int
	userFmt, password    string
	from, imapTLS        string
	runID, holdDir       string
	timeout, poll        time.Duration
	seed                 uint64
}

func parseSMTPFlags(args []string, stderr io.Writer) (*smtpConfig, error) {
	c := &smtpConfig{}
	fs := flag.NewFlagSet("smtp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.name, "name", "server", "name printed in RESULT lines")
	fs.StringVar(&c.addr, "addr", "127.0.0.1:25", "SMTP address (loopback only)")
	fs.StringVar(&c.imapAddr, "imap-addr", "", "IMAP address for the end-to-end count (empty: accept rate only)")
	fs.StringVar(&c.imapTLS, "imap-tls", "auto", "IMAP TLS: auto, none or starttls")
	fs.IntVar(&c.conns, "conns", 10, "concurrent SMTP connections")
	fs.IntVar(&c.messages, "messages", 1000, "messages to send (1..1000000)")
	fs.IntVar(&c.size, "size", 10240, "approximate message size in bytes")
	fs.IntVar(&c.users, "users", 100, "recipients are user1..userN, round robin")
	fs.IntVar(&c.perConn, "per-conn", 1, "messages per SMTP connection (1: new connection per message, like MX intake)")
	fs.StringVar(&c.userFmt, "user-fmt", "user%d@example.test", "recipient/login format")
	fs.StringVar(&c.password, "password", "pw", "IMAP password of every user")
	fs.StringVar(&c.from, "from", "bench@loadgen.example.org", "envelope and header sender")
	fs.StringVar(&c.runID, "run-id", "", "tag in Subject and Message-ID (default: derived from the clock)")
	fs.StringVar(&c.holdDir, "hold-dir", "", "if set: create DIR/ready and wait for DIR/go before sending, "+
		"create DIR/delivered and wait for DIR/release before logging out (for fsync tracing)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "bound for sending plus delivery")
	fs.DurationVar(&c.poll, "poll", 200*time.Millisecond, "delivery poll interval")
	fs.Uint64Var(&c.seed, "seed", 1, "seed for message bodies")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case c.conns < 1 || c.conns > 1000:
		return nil, errors.New("-conns must be 1..1000")
	case c.messages < 1 || c.messages > 1000000:
		return nil, errors.New("-messages must be 1..1000000")
	case c.size < 100 || c.size > 50<<20:
		return nil, errors.New("-size must be 100..52428800")
	case c.users < 1 || c.users > 100000:
		return nil, errors.New("-users must be 1..100000")
	case c.perConn < 1:
		return nil, errors.New("-per-conn must be >= 1")
	case c.timeout <= 0 || c.timeout > 2*time.Hour:
		return nil, errors.New("-timeout must be in (0, 2h]")
	}
	if err := checkLoopback(c.addr); err != nil {
		return nil, err
	}
	if c.imapAddr != "" {
		if err := checkLoopback(c.imapAddr); err != nil {
			return nil, err
		}
	}
	if c.runID == "" {
		c.runID = fmt.Sprintf("r%d", time.Now().UnixNano()%1e9)
	}
	return c, nil
}

func (c *smtpConfig) user(i int) string { return fmt.Sprintf(c.userFmt, i%c.users+1) }

// sendStats is what the senders found.
type sendStats struct {
	accepted, failed atomic.Int64
	mu               sync.Mutex
	lat              []time.Duration
	errs             []string
}

func (s *sendStats) fail(err error) {
	s.failed.Add(1)
	s.mu.Lock()
	if len(s.errs) < 5 {
		s.errs = append(s.errs, err.Error())
	}
	s.mu.Unlock()
}

func runSMTP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseSMTPFlags(args, stderr)
	if err != nil {
		return err
	}
	res := newResult().set("mode", "smtp").set("name", c.name).set("size", c.size).
		set("conns", c.conns).set("messages", c.messages)
	holdBound := 0 * time.Second
	if c.holdDir != "" {
		holdBound = 4 * time.Minute
	}
	wd := watchdog(c.timeout+holdBound+time.Minute, stdout, res.String()[len("RESULT "):])
	defer wd.Stop()
	ctx, cancel := context.WithTimeout(ctx, c.timeout+holdBound)
	defer cancel()

	var counter *inboxCounter
	base := 0
	if c.imapAddr != "" {
		users := make([]string, c.users)
		for i := range users {
			users[i] = c.user(i)
		}
		d := imapDialer{Addr: c.imapAddr, TLS: c.imapTLS, Password: c.password, Timeout: 30 * time.Second}
		if counter, err = openCounter(ctx, d, users); err != nil {
			return fmt.Errorf("open delivery counter: %w", err)
		}
		defer counter.Close()
		if base, err = counter.Count(ctx); err != nil {
			return fmt.Errorf("baseline count: %w", err)
		}
	}
	msgs := newMessageSet(c.size, c.runID, c.from, c.seed)
	if err := hold(ctx, c.holdDir, "ready", "go"); err != nil {
		return err
	}

	st := &sendStats{}
	start := time.Now()
	sendAll(ctx, c, msgs, st)
	acceptDur := time.Since(start)
	accepted := int(st.accepted.Load())
	res.set("accepted", accepted).set("failed", st.failed.Load()).
		set("accept_s", acceptDur).set("accept_rate", float64(accepted)/acceptDur.Seconds()).
		set("lat_p50_ms", ms(percentile(st.lat, 50))).set("lat_p99_ms", ms(percentile(st.lat, 99)))
	for _, e := range st.errs {
		fmt.Fprintf(stderr, "loadgen smtp %s: %s\n", c.name, e)
	}

	status := "ok"
	if counter != nil && accepted == 0 {
		res.set("delivered", 0).set("e2e_s", "NA").set("e2e_rate", "NA")
	} else if counter != nil {
		delivered, e2e, err := waitDelivered(ctx, counter, base, accepted, c.poll)
		res.set("delivered", delivered)
		switch {
		case err != nil:
			status = "delivery-timeout"
			fmt.Fprintf(stderr, "loadgen smtp %s: waiting for delivery: %v\n", c.name, err)
			res.set("e2e_s", "NA").set("e2e_rate", "NA")
		default:
			e2e += acceptDur
			res.set("e2e_s", e2e).set("e2e_rate", float64(accepted)/e2e.Seconds())
		}
	}
	if st.failed.Load() > 0 && status == "ok" {
		status = "send-errors"
	}
	res.set("status", status)
	fmt.Fprintln(stdout, res)
	return hold(ctx, c.holdDir, "delivered", "release")
}

// sendAll runs c.conns senders that share the message numbers 0..messages-1.
func sendAll(ctx context.Context, c *smtpConfig, msgs *messageSet, st *sendStats) {
	next := atomic.Int64{}
	take := func() (int, bool) {
		i := int(next.Add(1) - 1)
		return i, i < c.messages && ctx.Err() == nil
	}
	var wg sync.WaitGroup
	for w := 0; w < c.conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			for {
				i, ok := take()
				if !ok {
					break
				}
				lat = sendConn(ctx, c, msgs, st, i, take, lat)
			}
			st.mu.Lock()
			st.lat = append(st.lat, lat...)
			st.mu.Unlock()
		}()
	}
	wg.Wait()
}

// sendConn opens one SMTP session, sends message first and up to perConn-1
// more taken from take, and quits. A failed message is counted, not retried.
func sendConn(ctx context.Context, c *smtpConfig, msgs *messageSet, st *sendStats,
	first int, take func() (int, bool), lat []time.Duration) []time.Duration {
	t0 := time.Now()
	conn, err := (&net.Dialer{Timeout: 30 * time.Second}).DialContext(ctx, "tcp", c.addr)
	if err != nil {
		st.fail(fmt.Errorf("dial: %w", err))
		return lat
	}
	cl := smtp.NewClient(conn)
	defer cl.Close()
	cl.CommandTimeout = 60 * time.Second
	cl.SubmissionTimeout = 120 * time.Second
	if err := cl.Hello("loadgen.localdomain"); err != nil {
		st.fail(fmt.Errorf("ehlo: %w", err))
		return lat
	}
	i := first
	for n := 0; ; n++ {
		if n > 0 {
			t0 = time.Now()
		}
		rcpt := c.user(i)
		if err := cl.SendMail(c.from, []string{rcpt}, bytes.NewReader(msgs.message(i, rcpt))); err != nil {
			st.fail(fmt.Errorf("message %d to %s: %w", i, rcpt, err))
			return lat
		}
		st.accepted.Add(1)
		lat = append(lat, time.Since(t0))
		if n+1 >= c.perConn {
			break
		}
		var ok bool
		if i, ok = take(); !ok {
			break
		}
	}
	_ = cl.Quit()
	return lat
}

// waitDelivered polls the store until want messages more than base are there
// and returns how many were seen and how long the wait took.
func waitDelivered(ctx context.Context, counter *inboxCounter, base, want int, poll time.Duration) (int, time.Duration, error) {
	start := time.Now()
	seen := 0
	for {
		n, err := counter.Count(ctx)
		if err == nil {
			seen = n - base
			if seen >= want {
				return seen, time.Since(start), nil
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return seen, 0, fmt.Errorf("%d of %d delivered: %w", seen, want, err)
		case <-time.After(poll):
		}
	}
}

// hold creates dir/mark and waits for dir/gate (bounded by ctx and 4 minutes),
// so that a script can attach a tracer at exactly the right moment.
func hold(ctx context.Context, dir, mark, gate string) error {
	if dir == "" {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, mark), nil, 0o644); err != nil {
		return fmt.Errorf("hold: %w", err)
	}
	deadline := time.Now().Add(4 * time.Minute)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(dir, gate)); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("hold for %s: %w", gate, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("hold: %s did not appear within 4m", gate)
}
