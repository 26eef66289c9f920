package imapd

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/mail"
)

// Bounds on a SEARCH (RELIABILITY #26). go-imap's parser already limits a
// command to 50 KiB, but NOT/OR nest without bound; evaluation is
// iterative in the message list and recursive only in the criteria tree.
const (
	maxSearchDepth = 64
	maxSearchNodes = 2000
)

func errSearchTooComplex(why string) error {
	return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeLimit,
		Text: "search too complex: " + why}
}

// criterion is a compiled imap.SearchCriteria: sets resolved against the
// client's view, strings lower-cased, dates reduced to days.
type criterion struct {
	seqs       [][]interval // each: indexes into the view that match
	since      time.Time
	before     time.Time
	sentSince  time.Time
	sentBefore time.Time
	headers    []headerTerm
	body, text []string
	flags      []string
	notFlags   []string
	larger     int64
	smaller    int64
	modSeq     uint64
	not        []*criterion
	or         [][2]*criterion
}

type headerTerm struct{ key, value string }

// compileSearch checks the bounds and compiles the criteria.
func compileSearch(v *mailboxView, c *imap.SearchCriteria) (*criterion, error) {
	nodes := 0
	return compileNode(v, c, 0, &nodes)
}

func compileNode(v *mailboxView, c *imap.SearchCriteria, depth int, nodes *int) (*criterion, error) {
	if depth > maxSearchDepth {
		return nil, errSearchTooComplex(fmt.Sprintf("nesting deeper than %d", maxSearchDepth))
	}
	*nodes++
	if *nodes > maxSearchNodes {
		return nil, errSearchTooComplex(fmt.Sprintf("more than %d terms", maxSearchNodes))
	}
	k := &criterion{
		since: day(c.Since), before: day(c.Before), sentSince: day(c.SentSince), sentBefore: day(c.SentBefore),
		larger: c.Larger, smaller: c.Smaller,
	}
	for _, s := range c.SeqNum {
		k.seqs = append(k.seqs, v.seqIntervals(s))
	}
	for _, s := range c.UID {
		if imap.IsSearchRes(s) {
			k.seqs = append(k.seqs, nil)
			continue
		}
		k.seqs = append(k.seqs, v.uidIntervals(s))
	}
	for _, h := range c.Header {
		k.headers = append(k.headers, headerTerm{key: h.Key, value: strings.ToLower(h.Value)})
	}
	for _, b := range c.Body {
		k.body = append(k.body, strings.ToLower(b))
	}
	for _, t := range c.Text {
		k.text = append(k.text, strings.ToLower(t))
	}
	for _, f := range c.Flag {
		k.flags = append(k.flags, string(f))
	}
	for _, f := range c.NotFlag {
		k.notFlags = append(k.notFlags, string(f))
	}
	if c.ModSeq != nil {
		k.modSeq = max(c.ModSeq.ModSeq, 1)
	}
	*nodes += len(k.seqs) + len(k.headers) + len(k.body) + len(k.text) + len(k.flags) + len(k.notFlags)
	for i := range c.Not {
		n, err := compileNode(v, &c.Not[i], depth+1, nodes)
		if err != nil {
			return nil, err
		}
		k.not = append(k.not, n)
	}
	for i := range c.Or {
		a, err := compileNode(v, &c.Or[i][0], depth+1, nodes)
		if err != nil {
			return nil, err
		}
		b, err := compileNode(v, &c.Or[i][1], depth+1, nodes)
		if err != nil {
			return nil, err
		}
		k.or = append(k.or, [2]*criterion{a, b})
	}
	return k, nil
}

// day drops time and zone: SEARCH compares dates only (RFC 9051 §6.4.4).
func day(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// Search answers SEARCH and UID SEARCH, with ESEARCH return options (RFC
// 4731) formatted by go-imap.
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	v, err := s.selected()
	if err != nil {
		return nil, err
	}
	crit, err := compileSearch(v, criteria)
	if err != nil {
		return nil, err
	}
	var (
		seqs    imap.SeqSet
		uids    imap.UIDSet
		data    imap.SearchData
		readErr error
	)
	needles := crit.needles(nil)
	for _, t := range v.all() {
		m := &searchMessage{t: t, store: s.srv.cfg.Store, needles: needles}
		ok := crit.matches(m)
		m.close()
		if m.err != nil && readErr == nil {
			readErr = m.err
		}
		if !ok {
			continue
		}
		num := t.seq
		if kind == imapserver.NumKindUID {
			num = t.msg.UID
			uids.AddNum(imap.UID(num))
		} else {
			seqs.AddNum(num)
		}
		if data.Min == 0 {
			data.Min = num
		}
		data.Max = num
		data.Count++
		if criteria.ModSeq != nil {
			data.ModSeq = max(data.ModSeq, t.msg.ModSeq)
		}
	}
	if readErr != nil {
		s.log.Error("imap: search read message", "err", readErr)
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
			Text: "some messages could not be read"}
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	return &data, nil
}

// matches evaluates cheap terms first, then those that read the header,
// then the body.
func (k *criterion) matches(m *searchMessage) bool {
	idx := int(m.t.seq) - 1
	for _, ivs := range k.seqs {
		if !inIntervals(ivs, idx) {
			return false
		}
	}
	msg := m.t.msg
	for _, f := range k.flags {
		if !hasFlagFold(msg.Flags, f) {
			return false
		}
	}
	for _, f := range k.notFlags {
		if hasFlagFold(msg.Flags, f) {
			return false
		}
	}
	if k.larger > 0 && msg.Size <= k.larger || k.smaller > 0 && msg.Size >= k.smaller {
		return false
	}
	if k.modSeq > 0 && msg.ModSeq < k.modSeq {
		return false
	}
	if !k.since.IsZero() || !k.before.IsZero() {
		d := day(msg.InternalDate)
		if !k.since.IsZero() && d.Before(k.since) || !k.before.IsZero() && !d.Before(k.before) {
			return false
		}
	}
	if !k.sentSince.IsZero() || !k.sentBefore.IsZero() {
		d := day(m.sentDate())
		if !k.sentSince.IsZero() && d.Before(k.sentSince) || !k.sentBefore.IsZero() && !d.Before(k.sentBefore) {
			return false
		}
	}
	for _, h := range k.headers {
		if !m.headerContains(h.key, h.value) {
			return false
		}
	}
	for _, b := range k.body {
		if !m.bodyContains(b) {
			return false
		}
	}
	for _, t := range k.text {
		if !m.headerTextContains(t) && !m.bodyContains(t) {
			return false
		}
	}
	for _, n := range k.not {
		if n.matches(m) {
			return false
		}
	}
	for _, o := range k.or {
		if !o[0].matches(m) && !o[1].matches(m) {
			return false
		}
	}
	return true
}

// needles lists the BODY and TEXT strings of the whole tree, once each.
func (k *criterion) needles(acc []string) []string {
	for _, l := range [][]string{k.body, k.text} {
		for _, n := range l {
			if !containsString(acc, n) {
				acc = append(acc, n)
			}
		}
	}
	for _, n := range k.not {
		acc = n.needles(acc)
	}
	for _, o := range k.or {
		acc = o[1].needles(o[0].needles(acc))
	}
	return acc
}

func inIntervals(ivs []interval, idx int) bool {
	i := sort.Search(len(ivs), func(i int) bool { return ivs[i].hi >= idx })
	return i < len(ivs) && ivs[i].lo <= idx
}

// hasFlagFold compares flags case-insensitively (RFC 9051 §2.3.2). No
// message is \Recent: RFC 9051 drops it, and go-imap maps NEW/OLD/RECENT
// onto it.
func hasFlagFold(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// sentDate is the Date header's time, or the internal date when the
// header is missing or unparseable.
func (m *searchMessage) sentDate() time.Time {
	if root := m.header(); root != nil {
		h := mail.Header{Header: root.contentHeader()}
		if t, err := h.Date(); err == nil && !t.IsZero() {
			return t
		}
	}
	return m.t.msg.InternalDate
}
