package spam

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

type labelled struct {
	name  string
	class Class
	toks  []string
}

// loadCorpus tokenizes testdata/corpus/{ham,spam}: short hand-written
// messages in English and Chinese (GB2312, Big5 and UTF-8; base64, QP, 8bit).
func loadCorpus(t testing.TB) []labelled {
	t.Helper()
	var out []labelled
	for _, class := range []Class{Ham, Spam} {
		files, err := filepath.Glob(filepath.Join("testdata", "corpus", class.String(), "*.eml"))
		if err != nil || len(files) == 0 {
			t.Fatalf("corpus %s: %v (%d files)", class, err, len(files))
		}
		sort.Strings(files)
		for _, p := range files {
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			toks, err := Tokenize(context.Background(), f, Limits{})
			f.Close()
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			out = append(out, labelled{filepath.Base(p), class, toks})
		}
	}
	return out
}

// trainedStore is a store trained on the whole test corpus.
func trainedStore(t testing.TB) *MemStore {
	st := NewMemStore()
	for _, m := range loadCorpus(t) {
		st.Apply(Learn(m.toks, None, m.class))
	}
	return st
}

// TestCorpusRegression classifies each corpus message by a model trained on
// all the others (leave-one-out, done by untraining the message, so it also
// exercises Learn's inverse). The corpus is tiny, so besides the verdicts at
// the default cutoffs it checks the ranking (how often a spam outscores a
// ham) and the Chinese messages on their own, which guard CJK segmentation
// and charset decoding: without them those messages score 0.5.
func TestCorpusRegression(t *testing.T) {
	corpus := loadCorpus(t)
	st := NewMemStore()
	for _, m := range corpus {
		st.Apply(Learn(m.toks, None, m.class))
	}
	// The corpus is too small for word probabilities to reach the production
	// spam cutoff: judge it at 0.9.
	c := NewClassifier(st, Config{SpamCutoff: 0.9})
	var fp []string
	caught := 0
	var hamScores, spamScores []float64
	for _, m := range corpus {
		st.Apply(Learn(m.toks, m.class, None))
		v := c.Score(m.toks)
		st.Apply(Learn(m.toks, None, m.class))
		t.Logf("%s %s: %v %v", m.class, m.name, v, v.Reasons[:min(3, len(v.Reasons))])
		chinese := m.name >= "ham-13" && m.class == Ham || m.name >= "spam-12" && m.class == Spam
		switch {
		case m.class == Ham && v.Spam:
			fp = append(fp, m.name)
		case m.class == Spam && v.Spam:
			caught++
		}
		if m.class == Ham {
			hamScores = append(hamScores, v.Score)
			if chinese && v.Score > 0.5 {
				t.Errorf("Chinese ham %s scored %.3f", m.name, v.Score)
			}
		} else {
			spamScores = append(spamScores, v.Score)
			if chinese && v.Score < 0.65 {
				t.Errorf("Chinese spam %s scored %.3f", m.name, v.Score)
			}
		}
	}
	if len(fp) > 0 {
		t.Errorf("false positives: %v", fp)
	}
	if caught < 14 {
		t.Errorf("caught %d of %d spam, want at least 14", caught, len(spamScores))
	}
	ordered := 0
	for _, s := range spamScores {
		for _, h := range hamScores {
			if s > h {
				ordered++
			}
		}
	}
	if auc := float64(ordered) / float64(len(spamScores)*len(hamScores)); auc < 0.98 {
		t.Errorf("a spam outscores a ham in %.3f of pairs, want at least 0.98", auc)
	}
}

func TestLearnRoundTrip(t *testing.T) {
	corpus := loadCorpus(t)
	st := NewMemStore()
	empty := snapshotBytes(t, st)
	for _, m := range corpus {
		st.Apply(Learn(m.toks, None, m.class))
	}
	trained := snapshotBytes(t, st)
	// A user moves every message to the other class and back.
	for _, m := range corpus {
		other := Ham
		if m.class == Ham {
			other = Spam
		}
		st.Apply(Learn(m.toks, m.class, other))
		st.Apply(Learn(m.toks, other, m.class))
	}
	if got := snapshotBytes(t, st); string(got) != string(trained) {
		t.Fatal("moving messages away and back changed the state")
	}
	for _, m := range corpus {
		st.Apply(Learn(m.toks, m.class, None))
	}
	if got := snapshotBytes(t, st); string(got) != string(empty) {
		t.Fatalf("untraining everything left %+v", st.Stats())
	}
}

func TestLearnDelta(t *testing.T) {
	d := Learn([]string{"b", "a", "b"}, Ham, Spam)
	if d.Spam != 1 || d.Ham != -1 || len(d.Tokens) != 2 {
		t.Fatalf("delta %+v", d)
	}
	for _, td := range d.Tokens {
		if td.Spam != 1 || td.Ham != -1 {
			t.Errorf("token delta %+v", td)
		}
	}
	if d.Tokens[0].ID >= d.Tokens[1].ID {
		t.Error("tokens not sorted")
	}
	if !Learn([]string{"a"}, Spam, Spam).IsZero() {
		t.Error("same class should give an empty delta")
	}
}

func TestChi2Q(t *testing.T) {
	tests := []struct {
		x2   float64
		v    int
		want float64
	}{
		{0, 2, 1},
		{2, 2, math.Exp(-1)},
		{4, 4, math.Exp(-2) * (1 + 2)},
		{10, 6, math.Exp(-5) * (1 + 5 + 12.5)},
	}
	for _, tt := range tests {
		if got := chi2Q(tt.x2, tt.v); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("chi2Q(%v, %d) = %v, want %v", tt.x2, tt.v, got, tt.want)
		}
	}
	// Thousands of clues must neither underflow to 0 nor go NaN.
	if q := chi2Q(4000, 4000); math.IsNaN(q) || q <= 0.1 || q >= 0.9 {
		t.Errorf("chi2Q(4000, 4000) = %v, want about 0.5", q)
	}
	if q := chi2Q(1e6, 10); q != 0 && q > 1e-300 {
		t.Errorf("chi2Q(1e6, 10) = %v, want ~0", q)
	}
}

func TestScoreUnknownAndCutoffs(t *testing.T) {
	st := NewMemStore()
	c := NewClassifier(st, Config{})
	v := c.Score([]string{"never", "seen"})
	if v.Score != 0.5 || v.Spam || !v.Unsure || len(v.Reasons) != 0 {
		t.Errorf("unknown tokens: %+v, want unsure 0.5", v)
	}
	for range 50 {
		st.Apply(Learn([]string{"cheap", "pills", "shared"}, None, Spam))
		st.Apply(Learn([]string{"meeting", "notes", "shared"}, None, Ham))
	}
	if v := c.Score([]string{"cheap", "pills"}); !v.Spam || v.Score < 0.99 {
		t.Errorf("spam tokens: %+v", v)
	}
	if v := c.Score([]string{"meeting", "notes"}); v.Spam || v.Unsure || v.Score > 0.01 {
		t.Errorf("ham tokens: %+v", v)
	}
	if v := c.Score([]string{"cheap", "pills"}); !strings.HasPrefix(v.Reasons[0], "cheap ") && !strings.HasPrefix(v.Reasons[0], "pills ") {
		t.Errorf("reasons %q", v.Reasons)
	}
	if got := c.AutoLearn(c.Score([]string{"cheap", "pills"})); got != Spam {
		t.Errorf("AutoLearn(spam) = %v", got)
	}
	if got := c.AutoLearn(Verdict{Score: 0.5}); got != None {
		t.Errorf("AutoLearn(0.5) = %v", got)
	}
	off := NewClassifier(st, Config{AutoSpam: 2, AutoHam: -1})
	if got := off.AutoLearn(Verdict{Score: 1}); got != None {
		t.Errorf("AutoLearn with auto-learning off = %v", got)
	}
}

// TestConcurrentClassifyAndApply runs under -race in CI: readers score while
// the Raft apply loop changes the store.
func TestConcurrentClassifyAndApply(t *testing.T) {
	corpus := loadCorpus(t)
	st := NewMemStore()
	c := NewClassifier(st, Config{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				c.Score(corpus[(i+j)%len(corpus)].toks)
			}
		}()
	}
	for _, m := range corpus {
		st.Apply(Learn(m.toks, None, m.class))
	}
	wg.Wait()
}

func TestRetrainWeights(t *testing.T) {
	toks := []string{"a", "b"}
	d := Retrain(toks, Trained{}, Trained{Spam, 3})
	if d.Spam != 3 || d.Tokens[0].Spam != 3 {
		t.Fatalf("weight 3: %+v", d)
	}
	st := NewMemStore()
	empty := snapshotBytes(t, st)
	st.Apply(d)
	// A user moves it to ham, then the message is deleted (untrained).
	st.Apply(Retrain(toks, Trained{Spam, 3}, As(Ham)))
	if s := st.Stats(); s.Spam != 0 || s.Ham != 1 {
		t.Fatalf("after move: %+v", s)
	}
	st.Apply(Retrain(toks, As(Ham), Trained{}))
	if !bytes.Equal(snapshotBytes(t, st), empty) {
		t.Fatalf("not back to empty: %+v", st.Stats())
	}
	if !Retrain(toks, Trained{None, 5}, Trained{}).IsZero() {
		t.Error("weight of None must not count")
	}
}

func TestTraining(t *testing.T) {
	st := NewMemStore()
	c := NewClassifier(st, Config{})
	// Too little trained: never boosted.
	if got := c.Training(Ham, Verdict{Score: 1}); got != As(Ham) {
		t.Errorf("cold store: %+v", got)
	}
	st.Apply(Delta{Spam: 60, Ham: 60})
	tests := []struct {
		class Class
		score float64
		want  int32
	}{
		{Ham, 0.01, 1}, {Ham, 0.5, 5}, {Spam, 0.999, 1}, {Spam, 0.9, 5}, {None, 0.5, 0},
	}
	for _, tt := range tests {
		if got := c.Training(tt.class, Verdict{Score: tt.score}); got.Weight != tt.want || got.Class != tt.class {
			t.Errorf("Training(%v, %v) = %+v, want weight %d", tt.class, tt.score, got, tt.want)
		}
	}
	off := NewClassifier(st, Config{ErrorBoost: -1})
	if got := off.Training(Ham, Verdict{Score: 1}); got.Weight != 1 {
		t.Errorf("boost off: %+v", got)
	}
}
