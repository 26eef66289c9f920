package hatest

import (
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// These measure, they do not test: bench/ha.sh runs them with
// TANDEM_BENCH=1 and puts the figures in docs/benchmarks.md.

func benchOnly(t *testing.T) {
	if os.Getenv("TANDEM_BENCH") == "" {
		t.Skip("benchmark: set TANDEM_BENCH=1 (bench/ha.sh)")
	}
}

// TestBenchFailover: time from the leader's SIGKILL to the first "250" on
// the VIP, over many drills (target: median under 2 s, worst under 4 s).
func TestBenchFailover(t *testing.T) {
	benchOnly(t)
	runs := 20
	if s := os.Getenv("TANDEM_FAILOVER_RUNS"); s != "" {
		fmt.Sscan(s, &runs)
	}
	c := threeNodes(t)
	var times []time.Duration
	for i := 0; i < runs; i++ {
		leader := c.vipHolders()
		if len(leader) != 1 {
			t.Fatalf("run %d: VIP holders %v", i, leader)
		}
		// Keep mail flowing during the drill, as a real office would.
		l := c.startLoad(2, "ha@example.test")
		time.Sleep(500 * time.Millisecond)
		killed := time.Now()
		c.nodes[leader[0]].kill()
		vipMoved := make(chan time.Duration, 1)
		go func() {
			for time.Since(killed) < 20*time.Second {
				if h := c.vipHolders(); len(h) == 1 && h[0] != leader[0] {
					vipMoved <- time.Since(killed)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
			vipMoved <- 0
		}()
		var took time.Duration
		waitFor(t, "first 250 on the VIP", 20*time.Second, func() bool {
			t0 := time.Now()
			err := c.send(net.JoinHostPort(vip4, "25"), "ha@example.test", fmt.Sprintf("<fo-%d-%d@client.test>", i, time.Now().UnixNano()))
			if err == nil {
				took = time.Since(killed)
				return true
			}
			if os.Getenv("TANDEM_BENCH_DEBUG") != "" {
				t.Logf("  probe at %v took %v: %v", t0.Sub(killed).Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), err)
			}
			return false
		})
		l.stop()
		times = append(times, took)
		t.Logf("run %d: %s killed, VIP moved after %v, first 250 on the VIP after %v", i+1, leader[0],
			(<-vipMoved).Round(time.Millisecond), took.Round(time.Millisecond))
		c.start(leader[0], false)
		waitFor(t, "three healthy members", 30*time.Second, func() bool {
			out, err := c.cli(leader[0], "cluster", "status", "--json")
			return err == nil && strings.Count(out, `"health": "ok"`) == 3 && len(c.vipHolders()) == 1
		})
		time.Sleep(time.Second)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	fmt.Printf("RESULT failover runs=%d median_ms=%d worst_ms=%d best_ms=%d\n", len(times),
		times[len(times)/2].Milliseconds(), times[len(times)-1].Milliseconds(), times[0].Milliseconds())
}

// TestBenchReplication: durable intake of one node against three
// replicated nodes, same client load, same run (target ratio ≥ 0.7).
func TestBenchReplication(t *testing.T) {
	benchOnly(t)
	msgs := 3000
	if s := os.Getenv("TANDEM_REPL_MESSAGES"); s != "" {
		fmt.Sscan(s, &msgs)
	}
	rate := func(c *cluster, addr string) float64 {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1); i <= int64(msgs); i = next.Add(1) {
					for c.send(addr, "ha@example.test", fmt.Sprintf("<r-%d-%d@client.test>", time.Now().UnixNano(), i)) != nil {
						time.Sleep(50 * time.Millisecond)
					}
				}
			}()
		}
		wg.Wait()
		return float64(msgs) / time.Since(start).Seconds()
	}
	// One node, in the same kind of namespace, reached on its own address.
	single := newCluster(t, "s1")
	p := single.start("s1", false)
	if out, err := single.cli("s1", "account", "add", "ha@example.test", "--password", "pw"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	waitFor(t, "single node holds the VIP", 15*time.Second, func() bool { return len(single.vipHolders()) == 1 })
	one := rate(single, net.JoinHostPort(vip4, "25"))
	p.stop()
	single.net.destroy()
	three := threeNodes(t)
	r3 := rate(three, net.JoinHostPort(vip4, "25"))
	fmt.Printf("RESULT replication messages=%d single_msgs_per_s=%.0f three_nodes_msgs_per_s=%.0f ratio=%.2f\n", msgs, one, r3, r3/one)
}
