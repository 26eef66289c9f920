package node

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// A resolver that never answers trips the breaker: after three timeouts
// the next question fails at once instead of waiting.
func TestSystemResolverBreaker(t *testing.T) {
	sink, err := net.ListenPacket("udp", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", sink.LocalAddr().String())
	}}
	s := &systemResolver{r: r, timeout: 100 * time.Millisecond}
	for i := 0; i < sysDNSTrip; i++ {
		if _, err := s.LookupTXT(context.Background(), "x.test"); err == nil {
			t.Fatal("answer from a silent resolver")
		}
	}
	start := time.Now()
	_, err = s.LookupTXT(context.Background(), "y.test")
	if err == nil || !strings.Contains(err.Error(), "not answering") || time.Since(start) > 50*time.Millisecond {
		t.Fatalf("breaker not open: %v after %v", err, time.Since(start))
	}
	// A working resolver keeps it closed.
	ok := &systemResolver{r: &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Err: errRefused{}}
	}}, timeout: 100 * time.Millisecond}
	for i := 0; i < 5; i++ {
		ok.LookupTXT(context.Background(), "z.test")
	}
	if ok.openTill.Load() != 0 {
		t.Error("breaker opened on non-timeout errors")
	}
}

type errRefused struct{}

func (errRefused) Error() string { return "connection refused" }
