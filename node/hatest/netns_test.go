package hatest

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

func TestNetworkBetweenNamespaces(t *testing.T) {
	n := New(t, "a", "b")
	srv := n.Command("a", "python3", "-c", `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.1", 7999)); s.listen(1)
c, _ = s.accept(); c.sendall(b"hello from a\n"); c.close()
`)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	var got string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := n.Dial(ctx, "b", "10.77.0.1:7999")
		cancel()
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(c)
		c.Close()
		got = string(b)
		break
	}
	if !strings.Contains(got, "hello from a") {
		t.Fatalf("got %q", got)
	}
	if mac := n.Neighbour("b", "10.77.0.1"); mac == "" || mac != n.MAC("a") {
		t.Errorf("b's neighbour entry for a: %q, a's MAC %q", mac, n.MAC("a"))
	}
	n.LinkDown("a")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if c, err := n.Dial(ctx, "b", "10.77.0.1:7999"); err == nil {
		c.Close()
		t.Fatal("dial through a downed link succeeded")
	}
}
