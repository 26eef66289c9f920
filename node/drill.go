package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"github.com/tandemmail/tandem/storage"
)

// DrillOptions configure a failover drill (SPEC H4).
type DrillOptions struct {
	// Kill stops the leader's process as a crash would; otherwise
	// leadership is handed over cleanly.
	Kill bool `json:"kill"`
	// Target is the host clients use (the VIP); default: the VIP if set,
	// else this node's own listeners (which relay to the leader).
	Target      string        `json:"target,omitempty"`
	Connections int           `json:"connections,omitempty"` // parallel SMTP senders, default 4
	Settle      time.Duration `json:"settle,omitempty"`      // load after recovery, default 3 s
	Timeout     time.Duration `json:"timeout,omitempty"`     // give up after, default 60 s
}

// DrillReport is what the drill prints.
type DrillReport struct {
	Mode       string    `json:"mode"`
	Started    time.Time `json:"started"`
	OldLeader  string    `json:"old_leader"`
	NewLeader  string    `json:"new_leader"`
	Target     string    `json:"target"`
	LeaderMs   int64     `json:"new_leader_after_ms"`
	VIPMs      int64     `json:"vip_moved_after_ms,omitempty"`
	SMTPMs     int64     `json:"smtp_answered_after_ms"`
	IMAPMs     int64     `json:"imap_answered_after_ms"`
	Sent       int       `json:"sent"`
	Acked      int       `json:"acked"`
	Refused    int       `json:"refused"`
	InFlight   int       `json:"in_flight_at_failover"`
	Found      int       `json:"found_after"`
	Lost       int       `json:"lost"`
	Duplicates int       `json:"duplicates"`
	Passed     bool      `json:"passed"`
	Notes      []string  `json:"notes,omitempty"`
}

// Text renders the report for a terminal.
func (r DrillReport) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Failover drill (%s) at %s\n", r.Mode, r.Started.Local().Format(time.DateTime))
	fmt.Fprintf(&b, "  leader:               %s → %s\n", r.OldLeader, dash0(r.NewLeader))
	fmt.Fprintf(&b, "  clients used:         %s\n", r.Target)
	fmt.Fprintf(&b, "  new leader after:     %d ms\n", r.LeaderMs)
	if r.VIPMs > 0 {
		fmt.Fprintf(&b, "  VIP moved after:      %d ms\n", r.VIPMs)
	}
	fmt.Fprintf(&b, "  SMTP 250 again after: %d ms\n", r.SMTPMs)
	fmt.Fprintf(&b, "  IMAP answered after:  %d ms\n", r.IMAPMs)
	fmt.Fprintf(&b, "  messages: %d sent, %d acknowledged, %d refused (temporary), %d in flight at failover\n", r.Sent, r.Acked, r.Refused, r.InFlight)
	fmt.Fprintf(&b, "  after failover: %d of %d acknowledged found, %d lost, %d duplicated\n", r.Found, r.Acked, r.Lost, r.Duplicates)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	if r.Passed {
		b.WriteString("PASSED: nothing acknowledged was lost\n")
	} else {
		b.WriteString("FAILED\n")
	}
	return b.String()
}

func dash0(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// drillTarget picks the host and ports clients use during the drill.
func (n *Node) drillTarget(o DrillOptions) (smtpAddr, imapAddr string, err error) {
	ls := n.Listeners()
	sa, ia := ls["smtp"], ls["imap"]
	if sa == "" || ia == "" {
		return "", "", errors.New("drill: this node needs its SMTP and IMAP listeners on")
	}
	_, sp, _ := net.SplitHostPort(sa)
	_, ip, _ := net.SplitHostPort(ia)
	host := o.Target
	if host == "" && n.cfg.VIP4 != "" {
		host, _, _ = strings.Cut(n.cfg.VIP4, "/")
	}
	if host == "" {
		host, _, _ = net.SplitHostPort(sa)
		if h := net.ParseIP(host); h == nil || h.IsUnspecified() {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, sp), net.JoinHostPort(host, ip), nil
}

// Drill rehearses a failover on the live cluster and reports what happened
// and how long it took.
func (n *Node) Drill(ctx context.Context, o DrillOptions) (DrillReport, error) {
	rep := DrillReport{Mode: "transfer leadership", Started: time.Now()}
	if o.Kill {
		rep.Mode = "kill the leader"
	}
	if o.Connections <= 0 {
		o.Connections = 4
	}
	if o.Settle <= 0 {
		o.Settle = 3 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if n.raft.Mux() == nil {
		return rep, errors.New("drill: this node is not part of a cluster")
	}
	st := n.raft.Status()
	rep.OldLeader = st.LeaderID
	if st.LeaderID == "" {
		return rep, errors.New("drill: the cluster has no leader now")
	}
	if o.Kill && n.raft.IsLeader() {
		return rep, errors.New("drill --kill: run it on a follower; this node leads and would stop itself")
	}
	voters := 1
	for _, p := range n.raft.Peers() {
		if p.Voter {
			voters++
		}
	}
	if voters < 3 {
		return rep, fmt.Errorf("drill: %d voters cannot lose one and keep a quorum; add a node or a witness", voters)
	}
	smtpAddr, imapAddr, err := n.drillTarget(o)
	if err != nil {
		return rep, err
	}
	rep.Target = smtpAddr + " / " + imapAddr

	// A throw-away account receives the drill's mail.
	ds, err := n.store.Domains()
	if err != nil || len(ds) == 0 {
		return rep, errors.New("drill: no domain to send to")
	}
	addr := fmt.Sprintf("drill-%d@%s", time.Now().Unix(), ds[0].Name)
	pw := randomPassword()
	if _, err := n.store.AddAccount(ctx, storage.NewAccount{Address: addr, Password: pw, DisplayName: "failover drill"}); err != nil {
		return rep, fmt.Errorf("drill: create %s: %w", addr, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i := 0; i < 60; i++ {
			if err := n.store.DeleteAccount(dctx, addr); err == nil || errors.Is(err, storage.ErrNoAccount) {
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()

	// Load: senders over the target, recording every acknowledged Message-ID.
	var (
		mu       sync.Mutex
		acked    = map[string]bool{}
		sent     atomic.Int64
		refused  atomic.Int64
		inflight atomic.Int64
		firstOK  atomic.Int64 // unix ns of the first 250 after the failover began
	)
	var t0 atomic.Int64
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for c := 0; c < o.Connections; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; loadCtx.Err() == nil; i++ {
				id := fmt.Sprintf("<drill-%d-%d-%d@tandem>", rep.Started.UnixNano(), c, i)
				sent.Add(1)
				inflight.Add(1)
				err := sendOne(smtpAddr, addr, id)
				inflight.Add(-1)
				if err != nil {
					refused.Add(1)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
				if s := t0.Load(); s != 0 && firstOK.Load() == 0 && n.raft.LeaderAddr() != "" {
					if cur := n.raft.Status().LeaderID; cur != "" && cur != rep.OldLeader {
						firstOK.CompareAndSwap(0, time.Now().UnixNano())
					}
				}
			}
		}(c)
	}
	time.Sleep(time.Second) // steady state before the failover

	start := time.Now()
	t0.Store(start.UnixNano())
	rep.InFlight = int(inflight.Load())
	if o.Kill {
		var leaderAddr string
		for _, p := range n.raft.Peers() {
			if p.ID == rep.OldLeader {
				leaderAddr = p.Addr
			}
		}
		if err := n.raft.AskStop(ctx, leaderAddr); err != nil {
			stopLoad()
			wg.Wait()
			return rep, fmt.Errorf("drill: stop the leader: %w", err)
		}
	} else if err := n.raft.AskTransfer(ctx, ""); err != nil {
		stopLoad()
		wg.Wait()
		return rep, fmt.Errorf("drill: transfer leadership: %w", err)
	}

	deadline := start.Add(o.Timeout)
	vipDone := make(chan int64, 1)
	if n.cfg.VIP4 != "" || n.cfg.VIP6 != "" {
		go func() {
			for time.Now().Before(deadline) {
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				cs := n.ClusterStatus(cctx)
				cancel()
				if cs.VIPHeld != "" && cs.VIPHeld != rep.OldLeader && !strings.Contains(cs.VIPHeld, ",") {
					vipDone <- time.Since(start).Milliseconds()
					return
				}
				time.Sleep(25 * time.Millisecond)
			}
			vipDone <- 0
		}()
	} else {
		vipDone <- 0
	}
	for time.Now().Before(deadline) {
		if cur := n.raft.Status().LeaderID; cur != "" && cur != rep.OldLeader {
			rep.NewLeader = cur
			rep.LeaderMs = time.Since(start).Milliseconds()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if rep.NewLeader == "" {
		rep.Notes = append(rep.Notes, "no new leader within the timeout")
	}
	// IMAP answers on the target (login works).
	for time.Now().Before(deadline) {
		if err := imapCheck(imapAddr, addr, pw); err == nil {
			rep.IMAPMs = time.Since(start).Milliseconds()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for time.Now().Before(deadline) && firstOK.Load() == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if f := firstOK.Load(); f != 0 {
		rep.SMTPMs = time.Duration(f - start.UnixNano()).Milliseconds()
	} else {
		rep.Notes = append(rep.Notes, "SMTP did not answer 250 through the new leader within the timeout")
	}
	rep.VIPMs = <-vipDone
	if rep.VIPMs == 0 && (n.cfg.VIP4 != "" || n.cfg.VIP6 != "") {
		rep.Notes = append(rep.Notes, "the virtual IP did not settle on one new node within the timeout")
	}
	time.Sleep(o.Settle)
	stopLoad()
	wg.Wait()
	rep.Sent, rep.Refused = int(sent.Load()), int(refused.Load())
	mu.Lock()
	rep.Acked = len(acked)
	mu.Unlock()

	// Every acknowledged message must be there exactly once.
	var found map[string]int
	for i := 0; i < 40; i++ {
		found, err = imapMessageIDs(imapAddr, addr, pw)
		if err == nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		rep.Notes = append(rep.Notes, "could not read the drill mailbox: "+err.Error())
	}
	for id := range acked {
		switch found[id] {
		case 0:
			rep.Lost++
		case 1:
			rep.Found++
		default:
			rep.Found++
			rep.Duplicates += found[id] - 1
		}
	}
	rep.Passed = err == nil && rep.Lost == 0 && rep.NewLeader != "" && rep.SMTPMs > 0 &&
		(rep.VIPMs > 0 || (n.cfg.VIP4 == "" && n.cfg.VIP6 == ""))
	return rep, nil
}

func sendOne(addr, rcpt, id string) error {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("drill.tandem"); err != nil {
		return err
	}
	body := fmt.Sprintf("From: drill@tandem\r\nTo: %s\r\nSubject: failover drill\r\nMessage-ID: %s\r\n\r\nA message sent while a failover was rehearsed.\r\n", rcpt, id)
	if err := c.SendMail("drill@tandem.invalid", []string{rcpt}, strings.NewReader(body)); err != nil {
		return err
	}
	return c.Quit()
}

func imapDial(addr, user, pw string) (*imapclient.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c, err := imapclient.NewStartTLS(conn, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.Login(user, pw).Wait(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func imapCheck(addr, user, pw string) error {
	c, err := imapDial(addr, user, pw)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	return err
}

func imapMessageIDs(addr, user, pw string) (map[string]int, error) {
	c, err := imapDial(addr, user, pw)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	if sel.NumMessages == 0 {
		return out, nil
	}
	var ss imap.SeqSet
	ss.AddRange(1, sel.NumMessages)
	msgs, err := c.Fetch(ss, &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		out["<"+m.Envelope.MessageID+">"]++
	}
	return out, nil
}

// stopNow ends the process as a crash would (drill --kill).
func stopNow() { syscall.Kill(os.Getpid(), syscall.SIGKILL) }
