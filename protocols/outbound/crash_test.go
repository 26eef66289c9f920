package outbound

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/tandemmail/tandem/storage"
	"github.com/tandemmail/tandem/storage/storetest"
)

// crashEnv is a store that can be stopped and reopened like a node that
// crashed, with the DNS and the remote MX outliving it.
type crashEnv struct {
	*testEnv
	dir string
	env *storetest.Env
}

func newCrashEnv(t *testing.T) *crashEnv {
	dir := t.TempDir()
	env := storetest.Open(t, dir)
	te := &testEnv{t: t, st: env.Store, dns: newTestDNS(t), sink: &MemorySink{}}
	te.alice = storetest.AddAccount(t, env.Store, "alice@here.test", "alice-pw")
	ce := &crashEnv{testEnv: te, dir: dir, env: env}
	t.Cleanup(func() { ce.env.Close() })
	return ce
}

// restart stops the store and opens it again from its files.
func (ce *crashEnv) restart() {
	ce.env.Close()
	ce.env = storetest.Open(ce.t, ce.dir)
	ce.st = ce.env.Store
}

// RELIABILITY #6: the engine dies while it streams DATA; after a restart
// of the store and a new engine the message is delivered, exactly once
// since the remote never saw the end of the first DATA.
func TestCrashWhileStreamingData(t *testing.T) {
	t.Parallel()
	ce := newCrashEnv(t)
	port, ls := listenSame(t, "127.0.0.2")
	// The remote must not have the whole message in kernel buffers when
	// the engine dies (a closed socket still sends what it buffered): its
	// receive buffer is pinned small, and the body is larger than the
	// biggest send buffer Linux grows to (net.ipv4.tcp_wmem, 4 MiB).
	for i := range ls {
		ls[i] = smallRcvBuf{ls[i].(*net.TCPListener)}
	}
	mx := newMXServer(t, nil, ls...)
	var phase atomic.Int32
	streaming := make(chan struct{})
	release := make(chan struct{})
	mx.readHook = func(r io.Reader) ([]byte, error) {
		if phase.Load() == 0 {
			buf := make([]byte, 64<<10)
			io.ReadFull(r, buf)
			close(streaming)
			<-release // the sender is now blocked writing the rest
		}
		return io.ReadAll(r)
	}
	ce.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	body := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 76)+"\r\n", 12<<20/78)
	e1, stop1 := ce.start(ce.config(port))
	id := ce.submit(e1, "alice@here.test", []string{"bob@far.test"}, body)
	select {
	case <-streaming:
	case <-time.After(10 * time.Second):
		t.Fatal("DATA never started")
	}
	stop1() // the crash: the connection dies mid-DATA
	phase.Store(1)
	close(release)
	qe, ok := ce.entry(id)
	if !ok || qe.Rcpts[0].Attempts != 0 {
		t.Fatalf("an interrupted attempt was recorded: %+v", qe)
	}
	ce.restart()
	ce.start(ce.config(port))
	ce.waitQueueEmpty(20 * time.Second)
	got := mx.received()
	if len(got) != 1 || len(got[0].Data) != len(body) {
		t.Fatalf("received %d copies", len(got))
	}
	if len(ce.inbox(ce.alice)) != 0 {
		t.Fatal("DSN for a delivered message")
	}
}

// The remote accepted the data but the engine died before it read "250"
// and recorded it: the message is sent again (at-least-once, RFC 5321
// §6.1 accepts the duplicate), never lost.
func TestCrashBeforeRecording(t *testing.T) {
	t.Parallel()
	ce := newCrashEnv(t)
	port, ls := listenSame(t, "127.0.0.2")
	mx := newMXServer(t, nil, ls...)
	var phase atomic.Int32
	accepted := make(chan struct{})
	release := make(chan struct{})
	mx.dataHook = func([]byte) error {
		if phase.Load() == 0 {
			close(accepted)
			<-release
		}
		return nil
	}
	ce.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	e1, stop1 := ce.start(ce.config(port))
	ce.submit(e1, "alice@here.test", []string{"bob@far.test"}, testBody)
	<-accepted
	stop1()
	phase.Store(1)
	close(release)
	ce.restart()
	ce.start(ce.config(port))
	ce.waitQueueEmpty(10 * time.Second)
	if n := len(mx.received()); n != 2 {
		t.Fatalf("%d copies, want the original and one duplicate", n)
	}
}

// A crash mid-DATA, then a permanent failure: the DSN is issued exactly
// once, also across further restarts.
func TestCrashThenBounceOnce(t *testing.T) {
	t.Parallel()
	ce := newCrashEnv(t)
	port, ls := listenSame(t, "127.0.0.2")
	mx := newMXServer(t, nil, ls...)
	var phase atomic.Int32
	inData := make(chan struct{})
	release := make(chan struct{})
	mx.dataHook = func([]byte) error {
		if phase.Load() == 0 {
			close(inData)
			<-release
		}
		return smtpErr(554, smtp.EnhancedCode{5, 7, 1}, "rejected by content filter")
	}
	ce.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	e1, stop1 := ce.start(ce.config(port))
	ce.submit(e1, "alice@here.test", []string{"bob@far.test"}, testBody)
	<-inData
	stop1()
	phase.Store(1)
	close(release)
	ce.restart()
	_, stop2 := ce.start(ce.config(port))
	ce.waitQueueEmpty(10 * time.Second)
	waitFor(t, "the DSN", 5*time.Second, func() bool { return len(ce.inbox(ce.alice)) == 1 })
	stop2()
	ce.restart()
	ce.start(ce.config(port))
	time.Sleep(700 * time.Millisecond)
	in := ce.inbox(ce.alice)
	if len(in) != 1 {
		t.Fatalf("%d DSNs", len(in))
	}
	if d := parseDSN(t, in[0]); d.recipients["bob@far.test"].Status != "5.7.1" {
		t.Fatalf("DSN %+v", d.recipients)
	}
	if q, _ := ce.st.Queue(); len(q) != 0 {
		t.Fatalf("queue %+v", q)
	}
}

// failingStore refuses to record attempts while fail is set.
type failingStore struct {
	Store
	fail  atomic.Bool
	tries atomic.Int32
}

func (f *failingStore) QueueAttempt(ctx context.Context, id string, results []storage.RcptResult, next time.Time, warned bool, dsn *storage.QueueEntry, remove bool) error {
	f.tries.Add(1)
	if f.fail.Load() {
		return errors.New("injected: cannot commit")
	}
	return f.Store.QueueAttempt(ctx, id, results, next, warned, dsn, remove)
}

// An outcome that cannot be committed leaves the entry due; the engine
// holds it for the back-off instead of re-sending in a loop, and delivers
// it (again: at-least-once) once commits work.
func TestRecordFailureDoesNotLoop(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.2")
	mx := newMXServer(t, nil, ls...)
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	fs := &failingStore{Store: te.st}
	fs.fail.Store(true)
	cfg := te.config(port)
	cfg.Store = fs
	cfg.Backoff = []time.Duration{400 * time.Millisecond}
	e, _ := te.start(cfg)
	te.submit(e, "alice@here.test", []string{"bob@far.test"}, testBody)
	time.Sleep(time.Second)
	if n := len(mx.received()); n < 1 || n > 4 {
		t.Fatalf("%d copies in 1 s with a 400 ms hold", n)
	}
	fs.fail.Store(false)
	te.waitQueueEmpty(10 * time.Second)
}

// blockingStore holds the first QueueAttempt until release is closed.
type blockingStore struct {
	Store
	first   atomic.Bool
	holding chan struct{}
	release chan struct{}
}

func (b *blockingStore) QueueAttempt(ctx context.Context, id string, results []storage.RcptResult, next time.Time, warned bool, dsn *storage.QueueEntry, remove bool) error {
	if b.first.CompareAndSwap(false, true) {
		close(b.holding)
		<-b.release
	}
	return b.Store.QueueAttempt(ctx, id, results, next, warned, dsn, remove)
}

// A connection carries its next transaction only once the outcome of its
// last one is committed: a crash during that commit can then re-send at
// most one message per connection. The next message meanwhile goes out
// on a new connection (the slot is free), so commits still overlap.
func TestConnectionReusedOnlyAfterCommit(t *testing.T) {
	t.Parallel()
	te := newEnv(t)
	port, ls := listenSame(t, "127.0.0.2")
	mx := newMXServer(t, nil, ls...)
	te.dns.add(t, "far.test. MX 10 mx1.far.test.", "mx1.far.test. A 127.0.0.2")
	bs := &blockingStore{Store: te.st, holding: make(chan struct{}), release: make(chan struct{})}
	cfg := te.config(port)
	cfg.Store = bs
	cfg.MaxConcurrency = 1
	cfg.ConnReuseIdle = 5 * time.Second
	e, _ := te.start(cfg)
	te.submit(e, "alice@here.test", []string{"bob@far.test"}, testBody)
	<-bs.holding // delivered, outcome not yet committed
	if n := e.cache.idleCount("far.test"); n != 0 {
		t.Fatalf("%d connections cached before the commit", n)
	}
	te.submit(e, "alice@here.test", []string{"carl@far.test"}, testBody)
	waitFor(t, "the second message", 10*time.Second, func() bool { return len(mx.received()) == 2 })
	if n := mx.tcpCount(); n != 2 {
		t.Fatalf("%d connections: the second message used the first's connection before its commit", n)
	}
	close(bs.release)
	te.waitQueueEmpty(10 * time.Second)
	waitFor(t, "the first connection cached after its commit", 5*time.Second, func() bool { return e.cache.idleCount("far.test") >= 1 })
}

// smallRcvBuf accepts connections with a fixed 64 KiB receive buffer
// (which also turns off the kernel's receive-buffer autotuning).
type smallRcvBuf struct{ *net.TCPListener }

func (l smallRcvBuf) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	c.SetReadBuffer(64 << 10)
	return c, nil
}
