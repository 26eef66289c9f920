package spam

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

func snapshotBytes(t testing.TB, st *MemStore) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := st.Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func randomDeltas(seed uint64, n int) []Delta {
	r := rand.New(rand.NewPCG(seed, 1))
	var out []Delta
	for range n {
		toks := make([]string, r.IntN(30))
		for i := range toks {
			toks[i] = string(rune('a'+r.IntN(26))) + string(rune('a'+r.IntN(26)))
		}
		from, to := Class(r.IntN(3)), Class(r.IntN(3))
		out = append(out, Learn(toks, from, to))
	}
	return out
}

func TestMemStoreDeterministic(t *testing.T) {
	deltas := randomDeltas(7, 500)
	a, b := NewMemStore(), NewMemStore()
	for _, d := range deltas {
		a.Apply(d)
	}
	// b gets the same commands through their wire form, as a follower would.
	for _, d := range deltas {
		raw, err := d.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Delta
		if err := got.UnmarshalBinary(raw); err != nil {
			t.Fatal(err)
		}
		b.Apply(got)
	}
	if !bytes.Equal(snapshotBytes(t, a), snapshotBytes(t, b)) {
		t.Fatal("same deltas in the same order gave different states")
	}
}

func TestDeltaWire(t *testing.T) {
	d := Delta{Spam: -1, Ham: 1, Tokens: []TokenDelta{{1, -1, 1}, {2, 0, 7}, {math.MaxUint64, math.MinInt32, math.MaxInt32}}}
	raw, err := d.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Delta
	if err := got.UnmarshalBinary(raw); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, d) {
		t.Fatalf("round trip: got %+v, want %+v", got, d)
	}
	bad := map[string][]byte{
		"empty":      nil,
		"version":    append([]byte{9}, raw[1:]...),
		"truncated":  raw[:len(raw)-1],
		"trailing":   append(append([]byte(nil), raw...), 0),
		"huge count": {1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
	}
	unsorted := Delta{Tokens: []TokenDelta{{2, 1, 0}, {1, 1, 0}}}
	bad["unsorted"], _ = unsorted.MarshalBinary()
	for name, b := range bad {
		var d Delta
		if err := d.UnmarshalBinary(b); !errors.Is(err, errDelta) {
			t.Errorf("%s: err = %v, want errDelta", name, err)
		}
	}
}

func TestDeltaMerge(t *testing.T) {
	deltas := randomDeltas(3, 50)
	one, many := NewMemStore(), NewMemStore()
	var sum Delta
	for _, d := range deltas {
		sum = sum.Merge(d)
		many.Apply(d)
	}
	// Counts only saturate when a step goes below zero; start both from a
	// state high enough that none does.
	base := Delta{Spam: 100, Ham: 100}
	for _, id := range allIDs(deltas) {
		base.Tokens = append(base.Tokens, TokenDelta{id, 100, 100})
	}
	one.Apply(base)
	one.Apply(sum)
	many2 := NewMemStore()
	many2.Apply(base)
	for _, d := range deltas {
		many2.Apply(d)
	}
	_ = many
	if !bytes.Equal(snapshotBytes(t, one), snapshotBytes(t, many2)) {
		t.Fatal("applying the merged delta differs from applying each")
	}
}

func allIDs(deltas []Delta) []TokenID {
	seen := map[TokenID]bool{}
	var out []TokenID
	for _, d := range deltas {
		for _, td := range d.Tokens {
			if !seen[td.ID] {
				seen[td.ID] = true
				out = append(out, td.ID)
			}
		}
	}
	// Merge needs sorted input.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func TestApplySaturates(t *testing.T) {
	st := NewMemStore()
	st.Apply(Learn([]string{"x"}, Spam, None)) // untrain what was never trained
	if s := st.Stats(); s.Spam != 0 || s.Tokens != 0 {
		t.Fatalf("stats %+v, want empty", s)
	}
	st.Apply(Delta{Spam: 1, Tokens: []TokenDelta{{ID("x"), math.MaxInt32, 0}}})
	st.Apply(Delta{Tokens: []TokenDelta{{ID("x"), math.MaxInt32, 0}}})
	st.Apply(Delta{Tokens: []TokenDelta{{ID("x"), math.MaxInt32, 0}}})
	sp, hm := make([]uint32, 1), make([]uint32, 1)
	st.Counts([]TokenID{ID("x")}, sp, hm)
	if sp[0] != math.MaxUint32 {
		t.Fatalf("count %d, want saturation at MaxUint32", sp[0])
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	st := NewMemStore()
	for _, d := range randomDeltas(11, 300) {
		st.Apply(d)
	}
	snap := snapshotBytes(t, st)
	if int64(len(snap)) != st.Stats().SnapshotLen {
		t.Errorf("snapshot %d bytes, Stats says %d", len(snap), st.Stats().SnapshotLen)
	}
	restored := NewMemStore()
	if err := restored.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotBytes(t, restored), snap) {
		t.Fatal("restore then snapshot changed the bytes")
	}
	view, err := OpenSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	ids := []TokenID{ID("aa"), ID("zz"), ID("qq"), ID("not a token"), 0, math.MaxUint64}
	s1, h1 := make([]uint32, len(ids)), make([]uint32, len(ids))
	s2, h2 := make([]uint32, len(ids)), make([]uint32, len(ids))
	n1, m1 := st.Counts(ids, s1, h1)
	n2, m2 := view.Counts(ids, s2, h2)
	if n1 != n2 || m1 != m2 || !reflect.DeepEqual(s1, s2) || !reflect.DeepEqual(h1, h2) {
		t.Fatalf("view counts differ: %v %v %v %v / %v %v %v %v", n1, m1, s1, h1, n2, m2, s2, h2)
	}
	if view.Len() != st.Stats().Tokens {
		t.Errorf("view has %d tokens, store %d", view.Len(), st.Stats().Tokens)
	}
}

func TestSnapshotCorrupt(t *testing.T) {
	st := NewMemStore()
	for _, d := range randomDeltas(5, 50) {
		st.Apply(d)
	}
	snap := snapshotBytes(t, st)
	flipped := append([]byte(nil), snap...)
	flipped[len(flipped)/2] ^= 1
	badVersion := append([]byte(nil), snap...)
	badVersion[7] = 99
	cases := map[string][]byte{
		"empty": nil, "truncated": snap[:len(snap)-5], "flipped bit": flipped,
		"version": badVersion, "magic": append([]byte("NOTSPAM"), snap[7:]...),
	}
	for name, b := range cases {
		if _, err := OpenSnapshot(b); !errors.Is(err, ErrSnapshot) {
			t.Errorf("OpenSnapshot(%s): err = %v", name, err)
		}
		fresh := NewMemStore()
		fresh.Apply(Learn([]string{"keep"}, None, Ham))
		before := snapshotBytes(t, fresh)
		if err := fresh.Restore(bytes.NewReader(b)); !errors.Is(err, ErrSnapshot) {
			t.Errorf("Restore(%s): err = %v", name, err)
		}
		if !bytes.Equal(snapshotBytes(t, fresh), before) {
			t.Errorf("Restore(%s) changed the store on error", name)
		}
	}
}

func FuzzDeltaUnmarshal(f *testing.F) {
	for _, d := range randomDeltas(1, 5) {
		raw, _ := d.MarshalBinary()
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Delta
		if d.UnmarshalBinary(b) != nil {
			return
		}
		raw, err := d.MarshalBinary()
		if err != nil || !bytes.Equal(raw, b) {
			// Varints have one canonical form; anything else must not decode
			// to something that re-encodes differently... unless non-canonical.
			var again Delta
			if again.UnmarshalBinary(raw) != nil || !reflect.DeepEqual(again, d) {
				t.Fatalf("re-encoding %x does not round-trip", b)
			}
		}
	})
}
