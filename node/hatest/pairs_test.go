package hatest

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// Two data nodes and a witness: either data node can die and the other
// takes over (DESIGN §5).
func TestPairWithWitness(t *testing.T) {
	c := newCluster(t, "n1", "n2", "w")
	c.start("n1", false)
	c.start("n2", false)
	c.start("w", true)
	if out, err := c.cli("n1", "account", "add", "ha@example.test", "--password", "pw"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	waitFor(t, "n1 holds the VIP", 15*time.Second, func() bool { h := c.vipHolders(); return len(h) == 1 && h[0] == "n1" })
	acked := map[string]bool{}
	send := func(n int) {
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("<w-%d@client.test>", time.Now().UnixNano())
			if err := c.send(net.JoinHostPort(vip4, "25"), "ha@example.test", id); err != nil {
				t.Fatalf("send: %v", err)
			}
			acked[id] = true
		}
	}
	send(10)
	for _, victim := range []string{"n1", "n2"} {
		c.nodes[victim].kill()
		other := map[string]string{"n1": "n2", "n2": "n1"}[victim]
		took := waitFor(t, other+" takes over", 15*time.Second, func() bool {
			h := c.vipHolders()
			return len(h) == 1 && h[0] == other && c.send(net.JoinHostPort(vip4, "25"), "ha@example.test", "<probe@client.test>") == nil
		})
		acked["<probe@client.test>"] = false
		delete(acked, "<probe@client.test>")
		t.Logf("%s killed: %s serves on the VIP after %v", victim, other, took)
		send(5)
		c.start(victim, false)
		time.Sleep(2 * time.Second)
	}
	found, err := c.messageIDs(net.JoinHostPort(vip4, "995"), "ha@example.test", "pw")
	if err != nil {
		t.Fatal(err)
	}
	for id := range acked {
		if found[id] != 1 {
			t.Errorf("%s found %d times", id, found[id])
		}
	}
}

// Two nodes without a witness: the survivor does not serve until an
// operator promotes it, and then does.
func TestPairWithoutWitnessNeedsPromotion(t *testing.T) {
	c := newCluster(t, "n1", "n2")
	c.start("n1", false)
	c.start("n2", false)
	if out, err := c.cli("n1", "account", "add", "ha@example.test", "--password", "pw"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	waitFor(t, "n1 holds the VIP", 15*time.Second, func() bool { h := c.vipHolders(); return len(h) == 1 && h[0] == "n1" })
	if err := c.send(net.JoinHostPort(vip4, "25"), "ha@example.test", "<before@client.test>"); err != nil {
		t.Fatal(err)
	}
	c.nodes["n1"].kill()
	time.Sleep(4 * time.Second)
	if h := c.vipHolders(); len(h) != 0 {
		t.Fatalf("VIP held by %v without a quorum", h)
	}
	n2 := net.JoinHostPort(c.net.Hosts["n2"].V4, "25")
	if err := c.send(n2, "ha@example.test", "<lonely@client.test>"); err == nil {
		t.Fatal("the lone survivor acknowledged mail without a quorum")
	}
	if out, err := c.cli("n2", "cluster", "promote"); err == nil || !strings.Contains(out, "i-understand-split-brain") {
		t.Fatalf("promote without confirmation: %v\n%s", err, out)
	}
	if out, err := c.cli("n2", "cluster", "promote", "--i-understand-split-brain", "n1 is dead"); err != nil {
		t.Fatalf("promote: %v\n%s", err, out)
	}
	waitFor(t, "the promoted survivor takes the VIP and serves", 15*time.Second, func() bool {
		h := c.vipHolders()
		return len(h) == 1 && h[0] == "n2" && c.send(net.JoinHostPort(vip4, "25"), "ha@example.test", "<after@client.test>") == nil
	})
	out, _ := c.cli("n2", "cluster", "status")
	if !strings.Contains(out, "promote") {
		t.Errorf("status does not show the promotion:\n%s", out)
	}
	found, err := c.messageIDs(net.JoinHostPort(vip4, "995"), "ha@example.test", "pw")
	if err != nil || found["<before@client.test>"] != 1 || found["<after@client.test>"] != 1 {
		t.Fatalf("mailbox after promotion: %v %v", found, err)
	}
}

// Rolling restart of all three nodes one by one under load.
func TestRollingRestart(t *testing.T) {
	c := threeNodes(t)
	l := c.startLoad(3, "ha@example.test")
	for _, h := range []string{"n3", "n2", "n1"} {
		time.Sleep(2 * time.Second)
		c.nodes[h].stop()
		time.Sleep(time.Second)
		c.start(h, false)
		waitFor(t, "three members again", 20*time.Second, func() bool {
			out, err := c.cli(h, "cluster", "status", "--json")
			return err == nil && strings.Count(out, `"health": "ok"`) == 3 && strings.Contains(out, `"role": "Leader"`)
		})
	}
	time.Sleep(2 * time.Second)
	c.checkAcked(t, l.stop())
}
