package spamstage

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/filter/spam"
	"github.com/tandemmail/tandem/storage/storetest"
)

// TestStageCorpus is the spam stage's benchmark on the SpamAssassin corpus
// built by bench/spam (TANDEM_SPAM_CORPUS=bench/out/spamcorpus; skipped
// otherwise). It trains the train split through the replicated KV store,
// as `tandem filter train` does, then runs the pipeline stage (the
// classifier plus policy lookups and header building) over the test split
// in one goroutine, and prints RESULT lines. bench/spam/stage.sh runs it
// on one core beside bogofilter.
func TestStageCorpus(t *testing.T) {
	dir := os.Getenv("TANDEM_SPAM_CORPUS")
	if dir == "" {
		t.Skip("set TANDEM_SPAM_CORPUS to the corpus of bench/spam (bench/spam/stage.sh does)")
	}
	load := func(split, class string) [][]byte {
		files, err := filepath.Glob(filepath.Join(dir, split, class, "*"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s/%s: %v", split, class, err)
		}
		out := make([][]byte, 0, len(files))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
		return out
	}
	trainSpam, trainHam := load("train", "spam"), load("train", "ham")
	testSpam, testHam := load("test", "spam"), load("test", "ham")
	e, err := New(storetest.New(t), Config{NoAutoLearn: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Interleaved in proportion and in batches of 50, like the CLI.
	var spamItems, hamItems []Item
	for _, m := range trainSpam {
		spamItems = append(spamItems, Item{Message: m, Class: spam.Spam})
	}
	for _, m := range trainHam {
		hamItems = append(hamItems, Item{Message: m, Class: spam.Ham})
	}
	items := Interleave(spamItems, hamItems)
	start := time.Now()
	for i := 0; i < len(items); i += 50 {
		if _, err := e.Train(ctx, items[i:min(i+50, len(items))]); err != nil {
			t.Fatal(err)
		}
	}
	trainTime := time.Since(start)
	// A reload from the KV store must give the same model.
	before := e.Stats()
	start = time.Now()
	e.cur.Store(e.newLearned(spam.NewMemStore(), 0))
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	reloadTime := time.Since(start)
	if got := e.Stats(); got.Tokens != before.Tokens || got.Spam != before.Spam || got.Ham != before.Ham {
		t.Fatalf("reload: %+v, trained %+v", got, before)
	}
	st := e.Stage()
	env := &filter.Envelope{ID: "bench", AuthAccountID: 1}
	var fp, fn int
	n := 0
	var cpu0 = cpuTime()
	start = time.Now()
	for _, set := range []struct {
		msgs [][]byte
		spam bool
	}{{testHam, false}, {testSpam, true}} {
		for _, m := range set.msgs {
			v := st.CheckMessage(ctx, env, nil, bytes.NewReader(m), int64(len(m)))
			isSpam := v.Action == filter.ActionTag
			switch {
			case isSpam && !set.spam:
				fp++
			case !isSpam && set.spam:
				fn++
			}
			n++
		}
	}
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	acc := 100 * float64(n-fp-fn) / float64(n)
	fmt.Printf("RESULT stage_train_msgs=%d train_s=%.1f train_msgs_per_s=%.0f tokens=%d reload_ms=%d\n",
		len(items), trainTime.Seconds(), float64(len(items))/trainTime.Seconds(), before.Tokens, reloadTime.Milliseconds())
	fmt.Printf("RESULT stage_test_msgs=%d accuracy=%.2f%% fp=%.2f%% (%d of %d) fn=%.2f%% (%d of %d) gomaxprocs=%d\n",
		n, acc, 100*float64(fp)/float64(len(testHam)), fp, len(testHam), 100*float64(fn)/float64(len(testSpam)), fn, len(testSpam), runtime.GOMAXPROCS(0))
	fmt.Printf("RESULT stage_msgs_per_s=%.0f stage_msgs_per_cpu_s=%s\n", float64(n)/wall.Seconds(), perCPU(n, cpu))
}

func perCPU(n int, cpu time.Duration) string {
	if cpu <= 0 {
		return "n/a"
	}
	return strconv.FormatFloat(float64(n)/cpu.Seconds(), 'f', 0, 64)
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
