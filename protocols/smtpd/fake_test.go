package smtpd

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemmail/tandem/filter"
)

// fakeDeliverer keeps messages in memory: recipients starting with "bad"
// are unknown, "panic@…" panics.
type fakeDeliverer struct {
	mu   sync.Mutex
	msgs []fakeMsg
}

type fakeMsg struct {
	env   filter.Envelope
	rcpts []string
	body  string
}

func (f *fakeDeliverer) Begin(_ context.Context, env *filter.Envelope) (filter.Transaction, error) {
	return &fakeTx{f: f, env: env}, nil
}

func (f *fakeDeliverer) messages() []fakeMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeMsg(nil), f.msgs...)
}

type fakeTx struct {
	f     *fakeDeliverer
	env   *filter.Envelope
	rcpts []string
}

func (t *fakeTx) AddRcpt(_ context.Context, addr string) error {
	if strings.HasPrefix(addr, "panic@") {
		panic("test panic in AddRcpt")
	}
	if strings.HasPrefix(addr, "bad") {
		return &filter.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Msg: "No such user here"}
	}
	t.rcpts = append(t.rcpts, addr)
	return nil
}

func (t *fakeTx) Body(_ context.Context, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	t.f.mu.Lock()
	t.f.msgs = append(t.f.msgs, fakeMsg{env: *t.env, rcpts: t.rcpts, body: string(b)})
	t.f.mu.Unlock()
	return nil
}

func (t *fakeTx) Abort() {}

// startFake serves one mode with a fake deliverer; it returns the server,
// its address and a channel closed when Serve returned.
func startFake(t testing.TB, cfg Config) (*Server, string, *fakeDeliverer, <-chan error) {
	t.Helper()
	fd := &fakeDeliverer{}
	if cfg.Deliverer == nil {
		cfg.Deliverer = fd
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "mx.example.org"
	}
	s := New(cfg)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		if cfg.Mode == ModeSubmissions {
			done <- s.ServeTLS(l)
		} else {
			done <- s.Serve(l)
		}
	}()
	t.Cleanup(func() {
		s.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return s, l.Addr().String(), fd, done
}

// serveOn starts s on a fresh loopback listener.
func serveOn(t testing.TB, s *Server, implicitTLS bool) (net.Listener, string, <-chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		if implicitTLS {
			done <- s.ServeTLS(l)
		} else {
			done <- s.Serve(l)
		}
	}()
	return l, l.Addr().String(), done
}

func isClosedErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "connection reset")
}
