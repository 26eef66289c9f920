package spamstage

import "github.com/tandemmail/tandem/filter/spam"

// overlay is the learned state plus the training batch not yet stored: a
// batch is written as one KV batch, but each of its messages must be judged
// ("was the model wrong about it?", spam.Classifier.Training) against the
// model that already holds the messages before it, as a message-by-message
// learner would; otherwise the first messages of a large training run all
// look like errors and are over-weighted.
type overlay struct {
	base        spam.TokenStore
	tokens      map[spam.TokenID][2]int64
	nSpam, nHam int64
}

func newOverlay(base spam.TokenStore) *overlay {
	return &overlay{base: base, tokens: map[spam.TokenID][2]int64{}}
}

// add records a training step of the batch.
func (o *overlay) add(d spam.Delta) {
	o.nSpam += int64(d.Spam)
	o.nHam += int64(d.Ham)
	for _, t := range d.Tokens {
		c := o.tokens[t.ID]
		c[0] += int64(t.Spam)
		c[1] += int64(t.Ham)
		o.tokens[t.ID] = c
	}
}

// Counts implements spam.TokenStore: the base counts plus the batch's,
// never below zero (as MemStore.Apply saturates).
func (o *overlay) Counts(ids []spam.TokenID, sp, hm []uint32) (nSpam, nHam uint32) {
	bs, bh := o.base.Counts(ids, sp, hm)
	for i, id := range ids {
		if c, ok := o.tokens[id]; ok {
			sp[i] = clampCount(int64(sp[i]) + c[0])
			hm[i] = clampCount(int64(hm[i]) + c[1])
		}
	}
	return clampCount(int64(bs) + o.nSpam), clampCount(int64(bh) + o.nHam)
}

func clampCount(v int64) uint32 {
	switch {
	case v < 0:
		return 0
	case v > 1<<32-1:
		return 1<<32 - 1
	}
	return uint32(v)
}
