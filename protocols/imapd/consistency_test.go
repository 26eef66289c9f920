package imapd

import (
	"bufio"
	"context"
	"fmt"
	"math/rand"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConsistencyRandomClients (RELIABILITY #44, imaptest-style): several
// sessions run random APPEND, STORE, EXPUNGE, MOVE, COPY, FETCH, NOOP and
// IDLE on one mailbox while SMTP-style deliveries arrive. Each client keeps
// its own seq→UID model built only from the untagged responses it
// receives (EXISTS, EXPUNGE, FETCH UID) and checks every response against
// it: EXPUNGE and FETCH numbers in range, EXISTS never shrinking the view,
// a sequence number never changing its UID, UIDs ascending. At the end each
// model must equal the stored mailbox, flags included.
func TestConsistencyRandomClients(t *testing.T) {
	e := newEnv(t)
	for i := 0; i < 5; i++ {
		e.deliver(fmt.Sprintf("Subject: seed %d\r\n\r\nbody\r\n", i))
	}
	const clients = 5
	dur := 3 * time.Second
	if testing.Short() {
		dur = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()

	var wg sync.WaitGroup
	models := make([]*modelClient, clients)
	for i := range models {
		models[i] = dialModel(t, e, int64(i))
	}
	for _, m := range models {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.run(ctx)
		}()
	}
	wg.Add(1)
	go func() { // deliveries, as the SMTP server makes them
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			e.deliver(fmt.Sprintf("Subject: delivered %d\r\n\r\nbody\r\n", i))
			time.Sleep(50 * time.Millisecond)
		}
	}()
	wg.Wait()
	for _, m := range models {
		if m.err != nil {
			t.Fatalf("client %d: %v", m.id, m.err)
		}
	}

	stored, err := e.store.Messages(inboxID(t, e))
	if err != nil {
		t.Fatal(err)
	}
	var wantUIDs []uint32
	wantFlags := map[uint32]string{}
	for _, m := range stored {
		wantUIDs = append(wantUIDs, m.UID)
		wantFlags[m.UID] = strings.Join(m.Flags, " ")
	}
	for _, m := range models {
		m.cmd("N NOOP")
		if m.err == nil {
			m.cmd("F FETCH 1:* (UID FLAGS)")
		}
		if m.err != nil {
			t.Fatalf("client %d: final sync: %v", m.id, m.err)
		}
		if !slices.Equal(m.uids, wantUIDs) {
			t.Errorf("client %d after %d commands: view %v, stored %v", m.id, m.ops, m.uids, wantUIDs)
		}
		for uid, f := range m.flags {
			if want, ok := wantFlags[uid]; ok && sortedFlags(f) != sortedFlags(want) {
				t.Errorf("client %d: UID %d flags %q, stored %q", m.id, uid, f, want)
			}
		}
		t.Logf("client %d: %d commands, %d messages in view", m.id, m.ops, len(m.uids))
	}
}

func sortedFlags(s string) string {
	f := strings.Fields(s)
	slices.Sort(f)
	return strings.Join(f, " ")
}

func inboxID(t *testing.T, e *env) uint64 {
	t.Helper()
	mb, err := e.store.Mailbox(e.acct.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return mb.ID
}

// modelClient is a line-level IMAP client that tracks its view.
type modelClient struct {
	id    int64
	c     net.Conn
	br    *bufio.Reader
	rnd   *rand.Rand
	uids  []uint32          // the client's view: uids[seq-1]; 0 = not yet known
	flags map[uint32]string // last FLAGS seen per UID
	ops   int
	err   error
}

func dialModel(t *testing.T, e *env, id int64) *modelClient {
	t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m := &modelClient{id: id, c: c, br: bufio.NewReader(c), rnd: rand.New(rand.NewSource(id + 1)),
		flags: map[uint32]string{}}
	m.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := m.br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	m.cmd("L LOGIN " + testUser + " " + testPass)
	m.cmd("S SELECT INBOX")
	m.cmd("U FETCH 1:* (UID FLAGS)")
	if m.err != nil {
		t.Fatal(m.err)
	}
	return m
}

func (m *modelClient) fail(format string, args ...any) {
	if m.err == nil {
		m.err = fmt.Errorf(format, args...)
	}
}

var (
	reExists  = regexp.MustCompile(`^\* (\d+) EXISTS$`)
	reExpunge = regexp.MustCompile(`^\* (\d+) EXPUNGE$`)
	reFetch   = regexp.MustCompile(`^\* (\d+) FETCH \((.*)\)$`)
	reUID     = regexp.MustCompile(`UID (\d+)`)
	reFlags   = regexp.MustCompile(`FLAGS \(([^)]*)\)`)
)

// cmd sends one command (the tag is its first word) and applies every
// response until the tagged one, which must be OK.
func (m *modelClient) cmd(line string) {
	if m.err != nil {
		return
	}
	tag, _, _ := strings.Cut(line, " ")
	m.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := m.c.Write([]byte(line + "\r\n")); err != nil {
		m.fail("write %q: %v", line, err)
		return
	}
	m.readUntil(tag, line)
}

func (m *modelClient) readUntil(tag, what string) {
	for m.err == nil {
		l, err := m.br.ReadString('\n')
		if err != nil {
			m.fail("%q: read: %v", what, err)
			return
		}
		l = strings.TrimRight(l, "\r\n")
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				m.fail("%q: %s", what, l)
			}
			return
		}
		m.apply(l, what)
	}
}

// apply checks an untagged response against the view and updates it.
func (m *modelClient) apply(l, what string) {
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	switch {
	case reExists.MatchString(l):
		k := n(reExists.FindStringSubmatch(l)[1])
		if k < len(m.uids) {
			m.fail("%q: %s shrinks a view of %d", what, l, len(m.uids))
			return
		}
		for len(m.uids) < k {
			m.uids = append(m.uids, 0)
		}
	case reExpunge.MatchString(l):
		k := n(reExpunge.FindStringSubmatch(l)[1])
		if k < 1 || k > len(m.uids) {
			m.fail("%q: %s out of range (view %d)", what, l, len(m.uids))
			return
		}
		m.uids = slices.Delete(m.uids, k-1, k)
	case reFetch.MatchString(l):
		sm := reFetch.FindStringSubmatch(l)
		k := n(sm[1])
		if k < 1 || k > len(m.uids) {
			m.fail("%q: %s out of range (view %d)", what, l, len(m.uids))
			return
		}
		uid := m.uids[k-1]
		if u := reUID.FindStringSubmatch(sm[2]); u != nil {
			got := uint32(n(u[1]))
			if uid != 0 && uid != got {
				m.fail("%q: %s: seq %d was UID %d", what, l, k, uid)
				return
			}
			uid = got
			m.uids[k-1] = uid
			if k > 1 && m.uids[k-2] >= uid || k < len(m.uids) && m.uids[k] != 0 && m.uids[k] <= uid {
				m.fail("%q: %s: UIDs not ascending: %v", what, l, m.uids)
				return
			}
		}
		if f := reFlags.FindStringSubmatch(sm[2]); f != nil && uid != 0 {
			m.flags[uid] = f[1]
		}
	case strings.HasPrefix(l, "* OK") || strings.HasPrefix(l, "* SEARCH") || strings.HasPrefix(l, "* ESEARCH") ||
		strings.HasPrefix(l, "* FLAGS") || strings.HasPrefix(l, "* LIST") || strings.HasPrefix(l, "* STATUS") ||
		strings.HasPrefix(l, "* ") && strings.HasSuffix(l, "RECENT") || strings.HasPrefix(l, "+"):
	default:
		m.fail("%q: unexpected %q", what, l)
	}
}

// run issues random commands until ctx ends.
func (m *modelClient) run(ctx context.Context) {
	for ctx.Err() == nil && m.err == nil {
		m.ops++
		m.step()
		// Learn the UIDs of messages announced by EXISTS.
		for i, u := range m.uids {
			if u == 0 {
				m.cmd(fmt.Sprintf("K FETCH %d:* (UID FLAGS)", i+1))
				break
			}
		}
	}
}

func (m *modelClient) pickSeq() int { return 1 + m.rnd.Intn(len(m.uids)) }

func (m *modelClient) pickUID() uint32 {
	for range 3 {
		if u := m.uids[m.rnd.Intn(len(m.uids))]; u != 0 {
			return u
		}
	}
	return 1
}

func (m *modelClient) step() {
	flags := []string{`\Seen`, `\Flagged`, `\Answered`, `$Work`, `\Deleted`}
	empty := len(m.uids) == 0
	switch op := m.rnd.Intn(12); {
	case op == 0 || empty:
		msg := fmt.Sprintf("Subject: client %d op %d\r\n\r\nhello\r\n", m.id, m.ops)
		m.c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(m.c, "A APPEND INBOX (%s) {%d+}\r\n%s\r\n", flags[m.rnd.Intn(4)], len(msg), msg); err != nil {
			m.fail("append: %v", err)
			return
		}
		m.readUntil("A", "APPEND")
	case op == 1:
		m.cmd(fmt.Sprintf("B STORE %d +FLAGS (%s)", m.pickSeq(), flags[m.rnd.Intn(len(flags))]))
	case op == 2:
		m.cmd(fmt.Sprintf("C UID STORE %d -FLAGS (%s)", m.pickUID(), flags[m.rnd.Intn(len(flags))]))
	case op == 3:
		m.cmd("D EXPUNGE")
	case op == 4:
		m.cmd(fmt.Sprintf("E UID EXPUNGE %d:%d", m.pickUID(), m.pickUID()))
	case op == 5:
		m.cmd(fmt.Sprintf("F MOVE %d Archive", m.pickSeq()))
	case op == 6:
		m.cmd(fmt.Sprintf("G UID COPY %d INBOX", m.pickUID()))
	case op == 7:
		m.cmd("H FETCH 1:* (UID FLAGS)")
	case op == 8:
		m.cmd(fmt.Sprintf("I UID MOVE %d Trash", m.pickUID()))
	case op == 9:
		m.cmd("J SEARCH UNSEEN")
	case op == 10:
		m.idle()
	default:
		m.cmd("N NOOP")
	}
}

// idle waits in IDLE briefly, applying pushed updates.
func (m *modelClient) idle() {
	m.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := m.c.Write([]byte("X IDLE\r\n")); err != nil {
		m.fail("idle: %v", err)
		return
	}
	l, err := m.br.ReadString('\n')
	if err != nil || !strings.HasPrefix(l, "+") {
		m.fail("idle: %q %v", l, err)
		return
	}
	end := time.Now().Add(time.Duration(50+m.rnd.Intn(150)) * time.Millisecond)
	for {
		m.c.SetReadDeadline(end)
		l, err := m.br.ReadString('\n')
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() && l == "" {
				break
			}
			m.fail("idle read: %q %v", l, err)
			return
		}
		m.apply(strings.TrimRight(l, "\r\n"), "IDLE")
	}
	m.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := m.c.Write([]byte("DONE\r\n")); err != nil {
		m.fail("idle done: %v", err)
		return
	}
	m.readUntil("X", "IDLE DONE")
}
