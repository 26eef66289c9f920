package hatest

import (
	"strings"
	"testing"
	"time"
)

// `tandem cluster drill` on a live cluster: a clean leadership transfer,
// then a kill, each with its report.
func TestDrillCommand(t *testing.T) {
	c := threeNodes(t)
	out, err := c.cli("n2", "cluster", "drill")
	t.Logf("transfer drill:\n%s", out)
	if err != nil || !strings.Contains(out, "PASSED") || !strings.Contains(out, "0 lost") {
		t.Fatalf("transfer drill: %v", err)
	}
	waitFor(t, "one VIP holder after the transfer", 10*time.Second, func() bool { return len(c.vipHolders()) == 1 })
	runOn := "n2"
	if h := c.vipHolders(); h[0] == "n2" {
		runOn = "n3"
	}
	out, err = c.cli(runOn, "cluster", "drill", "--kill")
	t.Logf("kill drill:\n%s", out)
	if err != nil || !strings.Contains(out, "PASSED") || !strings.Contains(out, "VIP moved after") {
		t.Fatalf("kill drill: %v", err)
	}
}
