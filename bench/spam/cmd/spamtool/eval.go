package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"sort"
	"time"

	"github.com/tandemmail/tandem/filter/spam"
)

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

type sample struct {
	Path  string
	Class spam.Class
	Toks  []string
}

// buildStore trains a store on samples as a running server would learn
// them: one at a time, ham and spam interleaved (in an order fixed by a hash
// of the file names), each scored first so Classifier.Training can count a
// misjudged message extra times.
func buildStore(samples []sample, cfg spam.Config) *spam.MemStore {
	order := append([]sample(nil), samples...)
	sort.SliceStable(order, func(i, j int) bool {
		return fold(order[i].Path, 1<<30) < fold(order[j].Path, 1<<30)
	})
	st := spam.NewMemStore()
	c := spam.NewClassifier(st, cfg)
	for _, s := range order {
		tr := c.Training(s.Class, c.Score(s.Toks))
		st.Apply(spam.Retrain(s.Toks, spam.Trained{}, tr))
	}
	return st
}

// loadSamples tokenizes every message of corpus/split/{spam,ham}.
func loadSamples(ctx context.Context, c *spam.Classifier, corpus, split string) ([]sample, error) {
	var out []sample
	for _, lab := range []spam.Class{spam.Spam, spam.Ham} {
		files, err := messageFiles([]string{filepath.Join(corpus, split, lab.String())})
		if err != nil {
			return nil, err
		}
		for _, p := range files {
			toks, err := tokenizeFile(ctx, c, p)
			if err != nil {
				return nil, err
			}
			out = append(out, sample{p, lab, toks})
		}
	}
	return out, nil
}

// fold assigns a message of the training split to one of n folds by a hash
// of its file name.
func fold(path string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(filepath.Base(path)))
	return int(h.Sum32() % uint32(n))
}

// eval trains and tests in one process. With -validate it never reads the
// test split: it trains on four fifths of the training split and tests on
// the rest, and may print the misclassified messages (-v).
func eval(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("eval", flag.ExitOnError)
	corpus := fs.String("corpus", "bench/out/spamcorpus", "corpus made by spam-corpus.sh")
	validate := fs.Bool("validate", false, "train and test on parts of the training split only")
	folds := fs.Int("folds", 5, "with -validate: cross-validation folds (all are tested)")
	verbose := fs.Bool("v", false, "with -validate: list misclassified messages")
	sweep := fs.Bool("sweep", false, "print error counts over a range of cutoffs")
	explain := fs.String("explain", "", "with -validate: print every clue of this file name")
	maxFP := fs.Float64("max-fp", 0.1, "with -sweep: the false-positive percentage the best cutoff must keep")
	cfg := configFlags(fs)
	fs.Parse(args)
	tok := spam.NewClassifier(spam.NewMemStore(), *cfg)
	t0 := time.Now()
	trainSet, err := loadSamples(ctx, tok, *corpus, "train")
	if err != nil {
		return err
	}
	type scored struct {
		sample
		v spam.Verdict
	}
	var res []scored
	var scoreTime time.Duration
	run := func(train, test []sample) {
		st := buildStore(train, *cfg)
		c := spam.NewClassifier(st, *cfg)
		if *explain != "" {
			ec := *cfg
			ec.Reasons = 1000
			c := spam.NewClassifier(st, ec)
			for _, s := range test {
				if filepath.Base(s.Path) == *explain {
					v := c.Score(s.Toks)
					fmt.Println(v, len(s.Toks), "tokens")
					for _, r := range v.Reasons {
						fmt.Println("  ", r)
					}
				}
			}
		}
		t1 := time.Now()
		for _, s := range test {
			res = append(res, scored{s, c.Score(s.Toks)})
		}
		scoreTime += time.Since(t1)
	}
	tokTime := time.Duration(0)
	trainN := len(trainSet)
	if *validate {
		tokTime = time.Since(t0)
		for k := 0; k < *folds; k++ {
			var fit, val []sample
			for _, s := range trainSet {
				if fold(s.Path, *folds) == k {
					val = append(val, s)
				} else {
					fit = append(fit, s)
				}
			}
			run(fit, val)
		}
		trainN = trainN * (*folds - 1) / *folds
	} else {
		testSet, err := loadSamples(ctx, tok, *corpus, "test")
		if err != nil {
			return err
		}
		tokTime = time.Since(t0)
		run(trainSet, testSet)
	}
	var tp, tn, fp, fn, unsure int
	for _, r := range res {
		if r.v.Unsure {
			unsure++
		}
		switch {
		case r.Class == spam.Spam && r.v.Spam:
			tp++
		case r.Class == spam.Spam:
			fn++
		case r.v.Spam:
			fp++
		default:
			tn++
		}
	}
	n := len(res)
	ham, sp := tn+fp, tp+fn
	part := "test"
	if *validate {
		part = fmt.Sprintf("validation (%d folds)", *folds)
	}
	fmt.Printf("train %d, %s %d (ham %d, spam %d); tokenize %v, score %v\n",
		trainN, part, n, ham, sp, tokTime.Round(time.Millisecond), scoreTime.Round(time.Millisecond))
	fmt.Printf("tandem: accuracy %.2f%% fp %.2f%% (%d) fn %.2f%% (%d) unsure %d\n",
		100*float64(tp+tn)/float64(n), 100*float64(fp)/float64(ham), fp, 100*float64(fn)/float64(sp), fn, unsure)
	if *sweep {
		scores := map[spam.Class][]float64{}
		for _, r := range res {
			scores[r.Class] = append(scores[r.Class], r.v.Score)
		}
		bestCut, bestErr := 0.0, n+1
		for _, cut := range []float64{0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 0.995, 0.999} {
			f, m := 0, 0
			for _, s := range scores[spam.Ham] {
				if s >= cut {
					f++
				}
			}
			for _, s := range scores[spam.Spam] {
				if s < cut {
					m++
				}
			}
			fmt.Printf("  cutoff %.3f: fp %d fn %d errors %d accuracy %.2f%%\n", cut, f, m, f+m, 100*float64(n-f-m)/float64(n))
			if float64(f) <= *maxFP/100*float64(ham) && f+m < bestErr {
				bestCut, bestErr = cut, f+m
			}
		}
		// Cutoff-free view: missed spam when the cutoff sits just above the
		// k-th highest ham score, i.e. with at most k false positives.
		hs := append([]float64(nil), scores[spam.Ham]...)
		sort.Sort(sort.Reverse(sort.Float64Slice(hs)))
		fmt.Printf("fn at fp<=k:")
		for _, k := range []int{0, 1, 2, 3, 4, 6, 10} {
			if k >= len(hs) {
				break
			}
			m := 0
			for _, s := range scores[spam.Spam] {
				if s <= hs[k] {
					m++
				}
			}
			fmt.Printf(" k=%d:%d(>%.4g)", k, m, hs[k])
		}
		fmt.Println()
		fmt.Printf("best cutoff with fp <= %.2f%%: %.3f, errors %d, accuracy %.2f%%\n", *maxFP, bestCut, bestErr, 100*float64(n-bestErr)/float64(n))
	}
	if *verbose && *validate {
		sort.Slice(res, func(i, j int) bool { return res[i].v.Score < res[j].v.Score })
		for _, r := range res {
			if (r.Class == spam.Spam) != r.v.Spam {
				fmt.Printf("  %s %s %.4f %v\n", r.Class, r.Path, r.v.Score, r.v.Reasons[:min(len(r.v.Reasons), 6)])
			}
		}
	}
	return nil
}
