package spamstage

// Interleave merges two training sets so that each stays spread evenly over
// the whole run, in proportion to its size: a run of 1,000 spam and 3,000
// ham trains one spam after about every three ham, from start to end. Error-
// driven training (spam.Classifier.Training) depends on the order: when one
// class runs out early and the rest is all the other class, the model's
// mistakes — and so the extra weight — pile up on one side. This is the
// order mail arrives in, and the one the classifier was tuned with.
func Interleave[T any](a, b []T) []T {
	out := make([]T, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		// Take from a while its share so far is behind its share overall:
		// i/len(a) <= j/len(b), compared without division.
		if j == len(b) || i < len(a) && i*len(b) <= j*len(a) {
			out = append(out, a[i])
			i++
		} else {
			out = append(out, b[j])
			j++
		}
	}
	return out
}
