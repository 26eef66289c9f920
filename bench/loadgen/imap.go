package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// imapOps are the measured operations, each run as its own timed phase.
var imapOps = map[string]func(*imapWorker) (msgs, bytes, hits int, err error){
	// FETCH n (UID BODY.PEEK[]): one whole message (RFC 3501 section 6.4.5).
	"fetch-body": (*imapWorker).fetchBody,
	// FETCH a:a+49 (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (...)]): a
	// mail client listing a page of its message list.
	"fetch-headers": (*imapWorker).fetchHeaders,
	// SEARCH SUBJECT subjNN: header search, 1 in 50 messages match.
	"search-subject": (*imapWorker).searchSubject,
	// SEARCH BODY zqNNq: body text search, 1 in 32 messages match.
	"search-body": (*imapWorker).searchBody,
}

const defaultIMAPOps = "fetch-body,fetch-headers,search-subject,search-body"

type imapConfig struct {
	name, addr, imapTLS string
	userFmt, password   string
	ops                 []string
	conns, users        int
	maxOps              int
	page                int
	duration            time.Duration
}

func parseIMAPFlags(args []string, stderr io.Writer) (*imapConfig, error) {
	c := &imapConfig{}
	var ops string
	fs := flag.NewFlagSet("imap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.name, "name", "server", "name printed in RESULT lines")
	fs.StringVar(&c.addr, "addr", "127.0.0.1:143", "IMAP address (loopback only)")
	fs.StringVar(&c.imapTLS, "imap-tls", "auto", "TLS: auto, none or starttls")
	fs.StringVar(&c.userFmt, "user-fmt", "user%d@example.test", "login format")
	fs.StringVar(&c.password, "password", "pw", "password of every user")
	fs.StringVar(&ops, "ops", defaultIMAPOps, "comma-separated operations")
	fs.IntVar(&c.conns, "conns", 10, "concurrent IMAP sessions")
	fs.IntVar(&c.users, "users", 10, "session i logs in as user(i mod N)+1")
	fs.IntVar(&c.maxOps, "max-ops", 200000, "upper bound of operations per phase")
	fs.IntVar(&c.page, "page", 50, "messages per fetch-headers command")
	fs.DurationVar(&c.duration, "duration", 15*time.Second, "length of each phase")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case c.conns < 1 || c.conns > 500:
		return nil, errors.New("-conns must be 1..500")
	case c.users < 1:
		return nil, errors.New("-users must be >= 1")
	case c.duration <= 0 || c.duration > 10*time.Minute:
		return nil, errors.New("-duration must be in (0, 10m]")
	case c.page < 1:
		return nil, errors.New("-page must be >= 1")
	}
	for _, op := range strings.Split(ops, ",") {
		if _, ok := imapOps[op]; !ok {
			return nil, fmt.Errorf("unknown op %q (known: %s)", op, defaultIMAPOps)
		}
		c.ops = append(c.ops, op)
	}
	return c, checkLoopback(c.addr)
}

// imapWorker is one logged-in session with INBOX selected.
type imapWorker struct {
	c    *imapclient.Client
	dead bool   // a command failed; the session is not used again
	n    uint32 // messages in INBOX
	page uint32
	rnd  *rand.Rand
}

func (w *imapWorker) fetchBody() (int, int, int, error) {
	seq := uint32(w.rnd.IntN(int(w.n))) + 1
	bufs, err := w.c.Fetch(imap.SeqSetNum(seq), &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		return 0, 0, 0, err
	}
	if len(bufs) != 1 || len(bufs[0].BodySection) != 1 || len(bufs[0].BodySection[0].Bytes) == 0 {
		return 0, 0, 0, fmt.Errorf("fetch %d BODY.PEEK[]: no body returned", seq)
	}
	return 1, len(bufs[0].BodySection[0].Bytes), 0, nil
}

func (w *imapWorker) fetchHeaders() (int, int, int, error) {
	page := min(w.page, w.n)
	first := uint32(w.rnd.IntN(int(w.n-page+1))) + 1
	var set imap.SeqSet
	set.AddRange(first, first+page-1)
	bufs, err := w.c.Fetch(set, &imap.FetchOptions{
		UID: true, Flags: true, RFC822Size: true,
		BodySection: []*imap.FetchItemBodySection{{
			Specifier: imap.PartSpecifierHeader, Peek: true,
			HeaderFields: []string{"From", "To", "Subject", "Date", "Message-ID"},
		}},
	}).Collect()
	if err != nil {
		return 0, 0, 0, err
	}
	if len(bufs) != int(page) {
		return 0, 0, 0, fmt.Errorf("fetch %d:%d: %d of %d messages returned", first, first+page-1, len(bufs), page)
	}
	size := 0
	for _, b := range bufs {
		for _, s := range b.BodySection {
			size += len(s.Bytes)
		}
	}
	return len(bufs), size, 0, nil
}

func (w *imapWorker) search(crit *imap.SearchCriteria) (int, int, int, error) {
	data, err := w.c.Search(crit, nil).Wait()
	if err != nil {
		return 0, 0, 0, err
	}
	return 0, 0, len(data.AllSeqNums()), nil
}

func (w *imapWorker) searchSubject() (int, int, int, error) {
	key := fmt.Sprintf("subj%02d", w.rnd.IntN(subjectKeys))
	return w.search(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: key}}})
}

func (w *imapWorker) searchBody() (int, int, int, error) {
	return w.search(&imap.SearchCriteria{Body: []string{fmt.Sprintf("zq%02dq", w.rnd.IntN(bodyPool))}})
}

// phaseStats accumulates one phase over all workers.
type phaseStats struct {
	mu                     sync.Mutex
	started                atomic.Int64 // operations begun, for -max-ops
	ops, msgs, bytes, hits int
	errs                   int
	firstErr               error
	lat                    []time.Duration
}

func runIMAP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseIMAPFlags(args, stderr)
	if err != nil {
		return err
	}
	bound := time.Duration(len(c.ops))*(c.duration+30*time.Second) + 2*time.Minute
	wd := watchdog(bound, stdout, fmt.Sprintf("mode=imap name=%s", c.name))
	defer wd.Stop()
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()

	d := imapDialer{Addr: c.addr, TLS: c.imapTLS, Password: c.password, Timeout: 30 * time.Second}
	workers := make([]*imapWorker, c.conns)
	defer func() {
		for _, w := range workers {
			if w != nil {
				_ = w.c.Logout().Wait()
				w.c.Close()
			}
		}
	}()
	total := 0
	for i := range workers {
		cl, err := d.login(fmt.Sprintf(c.userFmt, i%c.users+1))
		if err != nil {
			return err
		}
		sel, err := cl.Select("INBOX", nil).Wait()
		if err != nil {
			cl.Close()
			return fmt.Errorf("select INBOX: %w", err)
		}
		if sel.NumMessages == 0 {
			cl.Close()
			return fmt.Errorf("user%d: INBOX is empty; fill it first (loadgen smtp)", i%c.users+1)
		}
		workers[i] = &imapWorker{c: cl, n: sel.NumMessages, page: uint32(c.page), rnd: rand.New(rand.NewPCG(uint64(i), 7))}
		if i < c.users {
			total += int(sel.NumMessages)
		}
	}
	for _, op := range c.ops {
		st := runPhase(ctx, c, workers, imapOps[op])
		secs := c.duration.Seconds()
		res := newResult().set("mode", "imap").set("name", c.name).set("op", op).
			set("conns", c.conns).set("users", c.users).set("mailbox_msgs", total).
			set("ops", st.ops).set("ops_rate", float64(st.ops)/secs).
			set("msgs_rate", float64(st.msgs)/secs).set("mb_rate", float64(st.bytes)/secs/1e6)
		if st.ops > 0 {
			res.set("avg_hits", float64(st.hits)/float64(st.ops))
		}
		res.set("lat_p50_ms", ms(percentile(st.lat, 50))).set("lat_p99_ms", ms(percentile(st.lat, 99))).
			set("errors", st.errs)
		status := "ok"
		if st.errs > 0 {
			status = "errors"
			fmt.Fprintf(stderr, "loadgen imap %s %s: %d errors, first: %v\n", c.name, op, st.errs, st.firstErr)
		}
		fmt.Fprintln(stdout, res.set("status", status))
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// runPhase runs op on every worker until c.duration has passed or c.maxOps
// operations were done. A session whose command fails is not reused.
func runPhase(ctx context.Context, c *imapConfig, workers []*imapWorker,
	op func(*imapWorker) (int, int, int, error)) *phaseStats {
	st := &phaseStats{}
	end := time.Now().Add(c.duration)
	var wg sync.WaitGroup
	for _, w := range workers {
		if w.dead {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			ops, msgs, bytes, hits := 0, 0, 0, 0
			for time.Now().Before(end) && ctx.Err() == nil {
				if st.started.Add(1) > int64(c.maxOps) {
					break
				}
				t0 := time.Now()
				m, b, h, err := op(w)
				if err != nil {
					w.dead = true
					st.mu.Lock()
					st.errs++
					if st.firstErr == nil {
						st.firstErr = err
					}
					st.mu.Unlock()
					break
				}
				lat = append(lat, time.Since(t0))
				ops, msgs, bytes, hits = ops+1, msgs+m, bytes+b, hits+h
			}
			st.mu.Lock()
			st.ops, st.msgs, st.bytes, st.hits = st.ops+ops, st.msgs+msgs, st.bytes+bytes, st.hits+hits
			st.lat = append(st.lat, lat...)
			st.mu.Unlock()
		}()
	}
	wg.Wait()
	return st
}
