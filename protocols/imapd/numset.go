package imapd

import (
	"slices"
	"sort"

	"github.com/emersion/go-imap/v2"
	"github.com/tandemmail/tandem/storage"
)

// target is a message a command addresses: its sequence number in the
// client's view and its stored state.
type target struct {
	seq uint32
	msg storage.Message
}

type interval struct{ lo, hi int } // indexes into the view, inclusive

// resolve maps a sequence or UID set, as the client sees the mailbox, to
// the messages still stored, in sequence order. "*" is the client's last
// message (RFC 9051 §6.4.8); numbers past the end are ignored, and
// messages expunged by others but not yet reported are skipped. Work is
// O(ranges·log ranges + result·log n), whatever the set's shape
// (RELIABILITY #26: a huge sequence set).
func (v *mailboxView) resolve(set imap.NumSet) []target {
	var ivs []interval
	switch set := set.(type) {
	case imap.SeqSet:
		ivs = v.seqIntervals(set)
	case imap.UIDSet:
		if imap.IsSearchRes(set) {
			return nil // SEARCHRES is not offered
		}
		ivs = v.uidIntervals(set)
	}
	return v.targets(ivs)
}

func (v *mailboxView) seqIntervals(set imap.SeqSet) []interval {
	n := uint32(len(v.uids))
	if n == 0 {
		return nil
	}
	ivs := make([]interval, 0, len(set))
	for _, r := range set {
		lo, hi := r.Start, r.Stop
		if lo == 0 {
			lo = n
		}
		if hi == 0 {
			hi = n
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		if lo > n {
			continue
		}
		hi = min(hi, n)
		ivs = append(ivs, interval{int(lo) - 1, int(hi) - 1})
	}
	return mergeIntervals(ivs)
}

func (v *mailboxView) uidIntervals(set imap.UIDSet) []interval {
	if len(v.uids) == 0 {
		return nil
	}
	maxUID := v.uids[len(v.uids)-1]
	ivs := make([]interval, 0, len(set))
	for _, r := range set {
		lo, hi := uint32(r.Start), uint32(r.Stop)
		if lo == 0 {
			lo = maxUID
		}
		if hi == 0 {
			hi = maxUID
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		i := sort.Search(len(v.uids), func(i int) bool { return v.uids[i] >= lo })
		j := sort.Search(len(v.uids), func(i int) bool { return v.uids[i] > hi })
		if i < j {
			ivs = append(ivs, interval{i, j - 1})
		}
	}
	return mergeIntervals(ivs)
}

func mergeIntervals(ivs []interval) []interval {
	if len(ivs) < 2 {
		return ivs
	}
	slices.SortFunc(ivs, func(a, b interval) int { return a.lo - b.lo })
	out := ivs[:1]
	for _, iv := range ivs[1:] {
		last := &out[len(out)-1]
		if iv.lo <= last.hi+1 {
			last.hi = max(last.hi, iv.hi)
			continue
		}
		out = append(out, iv)
	}
	return out
}

// targets looks the view's indexes up in the shared, stored state.
func (v *mailboxView) targets(ivs []interval) []target {
	box := v.box
	box.mu.Lock()
	defer box.mu.Unlock()
	var out []target
	for _, iv := range ivs {
		for i := iv.lo; i <= iv.hi; i++ {
			if j, ok := box.indexOf(v.uids[i]); ok {
				out = append(out, target{seq: uint32(i + 1), msg: box.msgs[j]})
			}
		}
	}
	return out
}

// all is every message of the client's view that is still stored.
func (v *mailboxView) all() []target {
	if len(v.uids) == 0 {
		return nil
	}
	return v.targets([]interval{{0, len(v.uids) - 1}})
}

// seqOf is the client's sequence number of a UID, or 0.
func (v *mailboxView) seqOf(uid uint32) uint32 {
	i, ok := slices.BinarySearch(v.uids, uid)
	if !ok {
		return 0
	}
	return uint32(i + 1)
}
