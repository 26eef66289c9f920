package spam

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
)

// Verdict is the classifier's judgement of one message. Score is the
// combined spam probability in [0, 1]; Spam means Score ≥ SpamCutoff,
// Unsure that it lies between HamCutoff and SpamCutoff. Reasons lists the
// strongest tokens with their probabilities, most telling first.
type Verdict struct {
	Spam    bool
	Unsure  bool
	Score   float64
	Reasons []string
}

func (v Verdict) String() string {
	w := "ham"
	switch {
	case v.Spam:
		w = "spam"
	case v.Unsure:
		w = "unsure"
	}
	return w + " " + strconv.FormatFloat(v.Score, 'f', 4, 64)
}

// Config tunes a Classifier. Zero fields take DefaultConfig's values.
type Config struct {
	Limits Limits

	SpamCutoff float64 // Score at or above: spam
	HamCutoff  float64 // Score below: ham; between the two: unsure

	// Robinson's f(w) = (S·X + n·p(w)) / (S + n): S is the strength of the
	// prior X for a token seen in n trained messages.
	S, X float64
	// MinDev ignores tokens whose f(w) is within MinDev of 0.5. A small
	// cut-off (0.05) keeps the many mildly hammy words of legitimate mail
	// in the chi-square combination; 0.1 lost more spam at equal false
	// positives in cross-validation.
	MinDev float64
	// HamBias multiplies a token's ham frequency (Graham's "count good
	// tokens twice"): above 1 it trades missed spam for fewer false
	// positives.
	HamBias float64
	// MaxClues caps the tokens combined, most extreme first (0: all).
	MaxClues int
	Reasons  int // tokens listed in Verdict.Reasons

	// AutoSpam and AutoHam are the scores beyond which AutoLearn trains a
	// verdict as spam or ham; AutoSpam > 1 and AutoHam < 0 turn each off.
	AutoSpam, AutoHam float64

	// Train on or near error: Training counts a message ErrorBoost extra
	// times when, before training, it was ham scoring above BoostHam or
	// spam scoring below BoostSpam. ErrorBoost < 0 turns this off.
	ErrorBoost          int
	BoostHam, BoostSpam float64
}

// DefaultConfig returns the defaults, tuned on a validation part of the
// SpamAssassin public corpus's training split (bench/spam/README.md).
func DefaultConfig() Config {
	return Config{
		Limits:     DefaultLimits(),
		SpamCutoff: 0.96,
		HamCutoff:  0.5,
		S:          0.45,
		X:          0.5,
		MinDev:     0.05,
		HamBias:    1,
		MaxClues:   150,
		Reasons:    10,
		AutoSpam:   0.999,
		AutoHam:    0.001,
		ErrorBoost: 4,
		BoostHam:   0.2,
		BoostSpam:  0.99,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	d.Limits = c.Limits.withDefaults()
	set := func(dst *float64, v float64) {
		if v > 0 {
			*dst = v
		}
	}
	set(&d.SpamCutoff, c.SpamCutoff)
	set(&d.HamCutoff, c.HamCutoff)
	set(&d.S, c.S)
	set(&d.X, c.X)
	set(&d.MinDev, c.MinDev)
	set(&d.HamBias, c.HamBias)
	if c.AutoSpam != 0 {
		d.AutoSpam = c.AutoSpam
	}
	if c.AutoHam != 0 {
		d.AutoHam = c.AutoHam
	}
	if c.ErrorBoost != 0 {
		d.ErrorBoost = max(c.ErrorBoost, 0)
	}
	set(&d.BoostHam, c.BoostHam)
	set(&d.BoostSpam, c.BoostSpam)
	if c.MaxClues != 0 {
		d.MaxClues = max(c.MaxClues, 0)
	}
	if c.Reasons > 0 {
		d.Reasons = c.Reasons
	}
	return d
}

// Classifier scores messages against a TokenStore. It never changes the
// store: learning returns a Delta for the caller to replicate and apply.
type Classifier struct {
	cfg   Config
	store TokenStore
}

// NewClassifier returns a classifier reading store.
func NewClassifier(store TokenStore, cfg Config) *Classifier {
	return &Classifier{cfg: cfg.withDefaults(), store: store}
}

// Tokenize reads a message and returns its tokens under the classifier's
// limits.
func (c *Classifier) Tokenize(ctx context.Context, msg io.Reader) ([]string, error) {
	return Tokenize(ctx, msg, c.cfg.Limits)
}

// Classify tokenizes and scores a message. Errors come only from reading msg
// or from ctx; a malformed message still gets a verdict.
func (c *Classifier) Classify(ctx context.Context, msg io.Reader) (Verdict, []string, error) {
	toks, err := c.Tokenize(ctx, msg)
	if err != nil {
		return Verdict{}, nil, fmt.Errorf("classify: %w", err)
	}
	return c.Score(toks), toks, nil
}

type clue struct {
	f   float64
	tok int
}

// Score combines the tokens' evidence with Fisher's method as Robinson
// proposed ("A Statistical Approach to the Spam Problem", 2003): the
// chi-square probabilities of the spam and ham hypotheses, S and H, give
// Score = (1 + S - H) / 2.
func (c *Classifier) Score(tokens []string) Verdict {
	ids := make([]TokenID, len(tokens))
	for i, tok := range tokens {
		ids[i] = ID(tok)
	}
	sc := make([]uint32, 2*len(ids))
	spam, ham := sc[:len(ids)], sc[len(ids):]
	nSpam, nHam := c.store.Counts(ids, spam, ham)
	clues := make([]clue, 0, len(ids))
	for i := range ids {
		f, ok := c.tokenProb(spam[i], ham[i], nSpam, nHam)
		if ok && math.Abs(f-0.5) >= c.cfg.MinDev {
			clues = append(clues, clue{f, i})
		}
	}
	// Most extreme first; ties broken by token text so the result does not
	// depend on map order anywhere upstream.
	slices.SortFunc(clues, func(a, b clue) int {
		da, db := math.Abs(a.f-0.5), math.Abs(b.f-0.5)
		switch {
		case da > db:
			return -1
		case da < db:
			return 1
		}
		if tokens[a.tok] < tokens[b.tok] {
			return -1
		}
		if tokens[a.tok] > tokens[b.tok] {
			return 1
		}
		return 0
	})
	if c.cfg.MaxClues > 0 && len(clues) > c.cfg.MaxClues {
		clues = clues[:c.cfg.MaxClues]
	}
	score := 0.5
	if len(clues) > 0 {
		var lnF, lnNotF float64
		for _, cl := range clues {
			lnF += math.Log(cl.f)
			lnNotF += math.Log1p(-cl.f)
		}
		n := len(clues)
		s := 1 - chi2Q(-2*lnNotF, 2*n) // evidence for spam
		h := 1 - chi2Q(-2*lnF, 2*n)    // evidence for ham
		score = (1 + s - h) / 2
	}
	v := Verdict{Score: score}
	switch {
	case score >= c.cfg.SpamCutoff:
		v.Spam = true
	case score >= c.cfg.HamCutoff:
		v.Unsure = true
	}
	for _, cl := range clues[:min(len(clues), c.cfg.Reasons)] {
		v.Reasons = append(v.Reasons, tokens[cl.tok]+" "+strconv.FormatFloat(cl.f, 'f', 3, 64))
	}
	return v
}

// tokenProb is Robinson's f(w) for a token seen in spam of nSpam trained spam
// and ham of nHam trained ham. ok is false for a token never seen.
func (c *Classifier) tokenProb(spam, ham, nSpam, nHam uint32) (f float64, ok bool) {
	if spam == 0 && ham == 0 {
		return 0, false
	}
	sr := float64(spam) / float64(max(nSpam, 1))
	hr := c.cfg.HamBias * float64(ham) / float64(max(nHam, 1))
	p := sr / (sr + hr)
	n := float64(spam) + float64(ham)
	f = (c.cfg.S*c.cfg.X + n*p) / (c.cfg.S + n)
	// Keep f inside (0, 1): a log of 0 would let one token decide alone.
	return min(max(f, 1e-6), 1-1e-6), true
}

// chi2Q returns the probability that a chi-square variable with v (even)
// degrees of freedom exceeds x2, summing the series in the log domain so
// thousands of clues neither underflow nor overflow.
func chi2Q(x2 float64, v int) float64 {
	m := x2 / 2
	if m <= 0 {
		return 1
	}
	lnTerm := -m
	lnSum := lnTerm
	for i := 1; i < v/2; i++ {
		lnTerm += math.Log(m / float64(i))
		// lnSum = ln(e^lnSum + e^lnTerm)
		if lnTerm > lnSum {
			lnSum = lnTerm + math.Log1p(math.Exp(lnSum-lnTerm))
		} else {
			lnSum += math.Log1p(math.Exp(lnTerm - lnSum))
		}
	}
	return min(math.Exp(lnSum), 1)
}
