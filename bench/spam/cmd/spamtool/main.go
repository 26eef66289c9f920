// Command spamtool drives Tandem's spam classifier (filter/spam) from the
// command line, for bench/spam/run.sh and /work/shared/bench/spam-eval.py:
//
//	spamtool train -model M spam|ham DIR...   add every file under DIR to the training set
//	spamtool classify -model M < msg           print "spam|unsure|ham SCORE"
//	spamtool eval -corpus C [-validate]        train and test in one process
//	spamtool bench -model M [-procs 1] DIR...  classification throughput
//	spamtool explain -model M < msg            verdict, reasons and tokens
//
// The model file is a filter/spam snapshot, written atomically; the
// training set's tokens are kept beside it in MODEL.tokens.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/tandemmail/tandem/filter/spam"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx := context.Background()
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "train":
		err = train(ctx, args)
	case "classify":
		err = classify(ctx, args, false)
	case "explain":
		err = classify(ctx, args, true)
	case "eval":
		err = eval(ctx, args)
	case "bench":
		err = bench(ctx, args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "spamtool "+cmd+":", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: spamtool train|classify|explain|eval|bench [flags] (see the package comment)")
	os.Exit(2)
}

// configFlags registers the classifier's tunables on fs.
func configFlags(fs *flag.FlagSet) *spam.Config {
	c := spam.DefaultConfig()
	fs.Float64Var(&c.SpamCutoff, "spam-cutoff", c.SpamCutoff, "score at or above: spam")
	fs.Float64Var(&c.HamCutoff, "ham-cutoff", c.HamCutoff, "score below: ham")
	fs.Float64Var(&c.S, "s", c.S, "Robinson's strength of the prior")
	fs.Float64Var(&c.X, "x", c.X, "Robinson's prior for rare tokens")
	fs.Float64Var(&c.MinDev, "min-dev", c.MinDev, "ignore tokens this close to 0.5")
	fs.Float64Var(&c.HamBias, "ham-bias", c.HamBias, "weight of ham counts")
	fs.IntVar(&c.MaxClues, "max-clues", c.MaxClues, "tokens combined, most extreme first (-1: all)")
	fs.IntVar(&c.ErrorBoost, "error-boost", c.ErrorBoost, "extra counts for a misjudged training message (-1: none)")
	return &c
}

// messageFiles lists the regular files under dirs, sorted.
func messageFiles(dirs []string) ([]string, error) {
	var files []string
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.Type().IsRegular() {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(files)
	return files, nil
}

func loadStore(path string) (*spam.MemStore, error) {
	st := spam.NewMemStore()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := st.Restore(f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

func saveStore(st *spam.MemStore, path string) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := st.Snapshot(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func tokenizeFile(ctx context.Context, c *spam.Classifier, path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return c.Tokenize(ctx, f)
}

// train adds the messages under DIR to the training set kept beside the
// model (MODEL.tokens: each message's label and tokens) and rebuilds the
// model from the whole set with buildStore, so the result does not depend on
// spam-eval.py training all spam before all ham.
func train(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("train", flag.ExitOnError)
	model := fs.String("model", "spam.model", "model file")
	cfg := configFlags(fs)
	fs.Parse(args)
	if fs.NArg() < 2 {
		return fmt.Errorf("want spam|ham DIR...")
	}
	class := spam.Ham
	switch fs.Arg(0) {
	case "spam":
		class = spam.Spam
	case "ham":
	default:
		return fmt.Errorf("label %q: want spam or ham", fs.Arg(0))
	}
	set, err := loadSamplesFile(*model + ".tokens")
	if err != nil {
		return err
	}
	files, err := messageFiles(fs.Args()[1:])
	if err != nil {
		return err
	}
	tok := spam.NewClassifier(spam.NewMemStore(), *cfg)
	for _, p := range files {
		toks, err := tokenizeFile(ctx, tok, p)
		if err != nil {
			return err
		}
		set = append(set, sample{Path: p, Class: class, Toks: toks})
	}
	st := buildStore(set, *cfg)
	if err := saveSamplesFile(*model+".tokens", set); err != nil {
		return err
	}
	if err := saveStore(st, *model); err != nil {
		return err
	}
	s := st.Stats()
	fmt.Fprintf(os.Stderr, "trained %d %s; model: %d messages, %d spam and %d ham counts (with boosts), %d tokens, %d bytes\n",
		len(files), class, len(set), s.Spam, s.Ham, s.Tokens, s.SnapshotLen)
	return nil
}

// The training set file: per message a line "spam|ham<TAB>path", then its
// tokens, one per line, then an empty line. Tokens never hold a newline
// (the tokenizer splits on whitespace).
func loadSamplesFile(path string) ([]sample, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var set []sample
	for _, block := range strings.Split(string(b), "\n\n") {
		lines := strings.Split(block, "\n")
		label, p, ok := strings.Cut(lines[0], "\t")
		if !ok {
			continue
		}
		s := sample{Path: p, Class: spam.Ham, Toks: lines[1:]}
		if label == "spam" {
			s.Class = spam.Spam
		}
		set = append(set, s)
	}
	return set, nil
}

func saveSamplesFile(path string, set []sample) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, s := range set {
		fmt.Fprintf(w, "%s\t%s\n", s.Class, s.Path)
		for _, t := range s.Toks {
			if !strings.ContainsRune(t, '\n') && t != "" {
				w.WriteString(t + "\n")
			}
		}
		w.WriteString("\n")
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// openModel maps the model file into a read-only view: no copy and no map
// to build, so a process per message starts fast.
func openModel(path string) (*spam.SnapshotView, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() == 0 || fi.Size() > 1<<31 {
		return nil, fmt.Errorf("%s: size %d", path, fi.Size())
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	// The mapping lives until the process exits.
	return spam.OpenSnapshot(b)
}

func classify(ctx context.Context, args []string, explain bool) error {
	fs := flag.NewFlagSet("classify", flag.ExitOnError)
	model := fs.String("model", "spam.model", "model file")
	cfg := configFlags(fs)
	fs.Parse(args)
	// One message per process: garbage collection would only cost time.
	debug.SetGCPercent(-1)
	view, err := openModel(*model)
	if err != nil {
		return err
	}
	c := spam.NewClassifier(view, *cfg)
	var in io.Reader = os.Stdin
	if fs.NArg() > 0 {
		f, err := os.Open(fs.Arg(0))
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	v, toks, err := c.Classify(ctx, in)
	if err != nil {
		return err
	}
	fmt.Println(v)
	if explain {
		for _, r := range v.Reasons {
			fmt.Println("  reason", r)
		}
		fmt.Println("  tokens", len(toks))
		for _, t := range toks {
			fmt.Printf("    %q\n", t)
		}
	}
	return nil
}

func bench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	model := fs.String("model", "spam.model", "model file")
	procs := fs.Int("procs", 1, "GOMAXPROCS")
	cfg := configFlags(fs)
	fs.Parse(args)
	runtime.GOMAXPROCS(*procs)
	st, err := loadStore(*model)
	if err != nil {
		return err
	}
	files, err := messageFiles(fs.Args())
	if err != nil {
		return err
	}
	c := spam.NewClassifier(st, *cfg)
	var spamN, bytes int64
	t0 := time.Now()
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		bytes += int64(len(b))
		v, _, err := c.Classify(ctx, bytesReader(b))
		if err != nil {
			return err
		}
		if v.Spam {
			spamN++
		}
	}
	dt := time.Since(t0)
	fmt.Printf("RESULT tandem_msgs=%d spam=%d seconds=%.3f msgs_per_s=%.0f mb_per_s=%.1f procs=%d\n",
		len(files), spamN, dt.Seconds(), float64(len(files))/dt.Seconds(), float64(bytes)/1e6/dt.Seconds(), *procs)
	return nil
}
