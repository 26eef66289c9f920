package imapd

import (
	"sort"

	"github.com/emersion/go-imap/v2"
	"github.com/tandemmail/tandem/storage"
)

// listEntry is one LIST response line.
type listEntry struct {
	name            string
	box             *storage.Mailbox // nil: only a parent of mailboxes
	attrs           []imap.MailboxAttr
	childSubscribed bool // CHILDINFO ("SUBSCRIBED"), RFC 5258 §3.5
}

// listEntries selects the mailboxes a LIST or LSUB returns. A parent that
// is not itself a mailbox (its children outlived a DELETE, RFC 9051
// §6.3.5) is listed \Noselect when the pattern matches it, so "%" still
// reveals the hierarchy. Work is linear in the number of mailboxes times
// the pattern cost.
func listEntries(boxes []storage.Mailbox, matchers []*listMatcher, opts *imap.ListOptions) []listEntry {
	exists := make(map[string]bool, len(boxes))
	hasChildren := map[string]bool{}
	subscribedBelow := map[string]bool{}
	for _, b := range boxes {
		exists[b.Name] = true
		for _, p := range parentNames(b.Name) {
			hasChildren[p] = true
			if b.Subscribed {
				subscribedBelow[p] = true
			}
		}
	}
	matches := func(name string) bool {
		for _, m := range matchers {
			if m.match(name) {
				return true
			}
		}
		return false
	}
	children := func(name string) imap.MailboxAttr {
		if hasChildren[name] {
			return imap.MailboxAttrHasChildren
		}
		return imap.MailboxAttrHasNoChildren
	}
	seen := map[string]bool{}
	var out []listEntry
	for i := range boxes {
		b := &boxes[i]
		if !seen[b.Name] && matches(b.Name) {
			e := listEntry{name: b.Name, box: b, attrs: []imap.MailboxAttr{children(b.Name)}}
			keep := true
			if opts.SelectSubscribed && !b.Subscribed {
				keep = opts.SelectRecursiveMatch && subscribedBelow[b.Name]
				e.childSubscribed = keep
			}
			if opts.SelectSpecialUse && b.SpecialUse == "" {
				keep = false
			}
			if b.SpecialUse != "" {
				e.attrs = append(e.attrs, imap.MailboxAttr(b.SpecialUse))
			}
			if b.Subscribed && (opts.SelectSubscribed || opts.ReturnSubscribed) {
				e.attrs = append(e.attrs, imap.MailboxAttrSubscribed)
			}
			if keep {
				seen[b.Name] = true
				out = append(out, e)
			}
		}
		if opts.SelectSpecialUse || opts.SelectSubscribed && !opts.SelectRecursiveMatch {
			continue
		}
		for _, p := range parentNames(b.Name) {
			if exists[p] || seen[p] || !matches(p) {
				continue
			}
			if opts.SelectSubscribed && !subscribedBelow[p] {
				continue
			}
			seen[p] = true
			out = append(out, listEntry{name: p, childSubscribed: opts.SelectSubscribed,
				attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect, imap.MailboxAttrHasChildren}})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
