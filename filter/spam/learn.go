package spam

import "slices"

// Class is what a message was trained as.
type Class uint8

const (
	None Class = iota // not trained
	Ham
	Spam
)

func (c Class) String() string {
	switch c {
	case Ham:
		return "ham"
	case Spam:
		return "spam"
	}
	return "none"
}

// Trained is how a message's tokens are counted in the learned state: as
// Class, Weight times. The zero value is "not trained". The storage layer
// keeps it beside each trained message so it can be undone exactly.
type Trained struct {
	Class  Class
	Weight int32
}

// As is a message trained once as class c.
func As(c Class) Trained {
	if c == None {
		return Trained{}
	}
	return Trained{Class: c, Weight: 1}
}

// Learn returns the Delta that moves a message with these tokens from class
// from to class to, each counted once: None→Spam trains, Spam→None untrains
// (the exact inverse, for the same tokens), Ham→Spam does both in one step
// (a user moving mail into Junk). The caller remembers each message's class
// to pass as from.
func Learn(tokens []string, from, to Class) Delta {
	return Retrain(tokens, As(from), As(to))
}

// Retrain is Learn for weighted training (see Classifier.Training).
func Retrain(tokens []string, from, to Trained) Delta {
	if from.Class == None {
		from.Weight = 0
	}
	if to.Class == None {
		to.Weight = 0
	}
	if from == to {
		return Delta{}
	}
	var ds, dh int32
	switch from.Class {
	case Spam:
		ds -= from.Weight
	case Ham:
		dh -= from.Weight
	}
	switch to.Class {
	case Spam:
		ds += to.Weight
	case Ham:
		dh += to.Weight
	}
	if ds == 0 && dh == 0 {
		return Delta{}
	}
	ids := make([]TokenID, len(tokens))
	for i, tok := range tokens {
		ids[i] = ID(tok)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids) // a message counts once per token
	d := Delta{Spam: ds, Ham: dh, Tokens: make([]TokenDelta, len(ids))}
	for i, id := range ids {
		d.Tokens[i] = TokenDelta{ID: id, Spam: ds, Ham: dh}
	}
	return d
}

// Training returns how to train a message of class cl whose verdict before
// this training was v (for a user's correction: the verdict it was delivered
// with). Messages the classifier misjudged, or judged without confidence,
// count 1+ErrorBoost times, as train-on-or-near-error filters do (DSPAM's
// TOE, CRM114's thick threshold); in cross-validation on the training split
// (bench/spam/README.md) counting them 5 times (ErrorBoost 4) rather than 3
// cut missed spam further at the same false-positive count. Training order
// matters for this, so bulk imports should interleave ham and spam.
func (c *Classifier) Training(cl Class, v Verdict) Trained {
	t := As(cl)
	// Until both classes have some examples every verdict is a guess, and
	// boosting guesses would only amplify the order of the first messages.
	if nSpam, nHam := c.store.Counts(nil, nil, nil); nSpam < minBoostTrained || nHam < minBoostTrained {
		return t
	}
	if cl == Ham && v.Score > c.cfg.BoostHam || cl == Spam && v.Score < c.cfg.BoostSpam {
		t.Weight += int32(c.cfg.ErrorBoost)
	}
	return t
}

// minBoostTrained is how many spam and ham must be trained before Training
// boosts misjudged messages.
const minBoostTrained = 50

// AutoLearn decides whether a verdict is confident enough to train on
// (SpamAssassin's auto-learn, bogofilter's -u): it returns the class to
// train the message as, or None. Train it with As(class).
func (c *Classifier) AutoLearn(v Verdict) Class {
	switch {
	case v.Score >= c.cfg.AutoSpam:
		return Spam
	case v.Score <= c.cfg.AutoHam:
		return Ham
	}
	return None
}
