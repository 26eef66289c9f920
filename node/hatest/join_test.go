package hatest

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A fourth node joins a cluster holding 10,000 messages: it catches up
// (Raft state and every blob) and the status shows its lag going to zero.
func TestFourthNodeCatchesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("slow drill")
	}
	total := 10000
	if s := os.Getenv("TANDEM_JOIN_MESSAGES"); s != "" {
		fmt.Sscan(s, &total)
	}
	c := newCluster(t, "n1", "n2", "n3", "n4")
	c.start("n1", false)
	c.start("n2", false)
	c.start("n3", false)
	if out, err := c.cli("n1", "account", "add", "ha@example.test", "--password", "pw"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	waitFor(t, "n1 holds the VIP", 15*time.Second, func() bool { return len(c.vipHolders()) == 1 })
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(total) {
					return
				}
				for c.send(net.JoinHostPort(vip4, "25"), "ha@example.test", fmt.Sprintf("<bulk-%d@client.test>", i)) != nil {
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d messages through the VIP in %v (%.0f msg/s, 3 replicated nodes)", total, time.Since(start).Round(time.Millisecond),
		float64(total)/time.Since(start).Seconds())
	joinStart := time.Now()
	c.start("n4", false)
	type member struct {
		ID  string `json:"id"`
		Lag uint64 `json:"lag"`
	}
	var lags []uint64
	waitFor(t, "n4's lag reaches zero on the status page", 180*time.Second, func() bool {
		out, err := c.cli("n1", "cluster", "status", "--json")
		if err != nil {
			return false
		}
		var st struct {
			Members []member `json:"members"`
		}
		if json.Unmarshal([]byte(out), &st) != nil {
			return false
		}
		for _, m := range st.Members {
			if m.ID == "n4" {
				lags = append(lags, m.Lag)
				return m.Lag == 0 && len(st.Members) == 4
			}
		}
		return false
	})
	want := blobSet(t, c.nodes["n1"].data)
	if len(want) < total {
		t.Fatalf("n1 holds %d blobs for %d messages", len(want), total)
	}
	waitFor(t, "n4 holds every blob", 180*time.Second, func() bool {
		got := blobSet(t, c.nodes["n4"].data)
		for b := range want {
			if !got[b] {
				return false
			}
		}
		return true
	})
	t.Logf("n4 caught up %d blobs in %v; lag seen: first %d, last %d", len(want), time.Since(joinStart).Round(time.Millisecond), lags[0], lags[len(lags)-1])
}
