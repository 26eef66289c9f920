package storage

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

func decodeMessage(raw []byte, rec *messageRec) error { return json.Unmarshal(raw, rec) }

func hasFlag(flags []string, f string) bool { return slices.Contains(flags, f) }

func (a applier) blobRef(sha string, n uint64) error {
	b := a.b(bktBlobs)
	have := getU64(b, []byte(sha))
	if have == 0 {
		a.ch.ref = append(a.ch.ref, sha)
	}
	return putU64(b, []byte(sha), have+n)
}

func (a applier) blobUnref(sha string) error {
	b := a.b(bktBlobs)
	n := getU64(b, []byte(sha))
	if n <= 1 {
		a.ch.unref = append(a.ch.unref, sha)
		return b.Delete([]byte(sha))
	}
	return putU64(b, []byte(sha), n-1)
}

func (a applier) addUsed(accountID uint64, delta int64) error {
	if delta == 0 {
		return nil
	}
	rec, err := a.accountByID(accountID)
	if err != nil {
		return nil // account being deleted
	}
	rec.Used += delta
	if rec.Used < 0 {
		rec.Used = 0
	}
	return putJSON(a.b(bktAccounts), []byte(rec.Address), rec)
}

// addMessage appends one message at the mailbox's UIDNEXT. UIDs and MODSEQs
// are only ever assigned here, inside Apply, so no leader can reuse one.
func (a applier) addMessage(mb *mailboxRec, m messageRec) (messageRec, error) {
	m.UID = mb.UIDNext
	mb.UIDNext++
	mb.HighestModSeq++
	m.ModSeq = mb.HighestModSeq
	raw, err := json.Marshal(m)
	if err != nil {
		return m, err
	}
	if err := a.b(bktMessages).Put(messageKey(mb.ID, m.UID), raw); err != nil {
		return m, err
	}
	mb.Messages++
	mb.Size += m.Size
	if !hasFlag(m.Flags, `\Seen`) {
		mb.Unseen++
	}
	return m, a.blobRef(m.Blob, 1)
}

func (a applier) deliver(c deliverCmd) any {
	// Resolve every target first; nothing is written until all are valid.
	var boxes []mailboxRec
	seen := map[uint64]bool{}
	for _, t := range c.Targets {
		var mb mailboxRec
		var err error
		if t.MailboxID != 0 {
			mb, err = a.mailboxByID(t.MailboxID)
		} else {
			mb, err = a.mailboxByName(t.AccountID, "INBOX")
		}
		if err != nil {
			return err
		}
		if seen[mb.ID] {
			continue
		}
		seen[mb.ID] = true
		if c.EnforceQuota {
			acct, err := a.accountByID(mb.AccountID)
			if err != nil {
				return err
			}
			if acct.Quota > 0 && acct.Used+c.Size > acct.Quota {
				return fmt.Errorf("account %s: %w", acct.Address, ErrOverQuota)
			}
		}
		boxes = append(boxes, mb)
	}
	out := make([]Message, 0, len(boxes))
	for i := range boxes {
		mb := &boxes[i]
		m, err := a.addMessage(mb, messageRec{Blob: c.Blob, Size: c.Size, Date: c.Date, Flags: c.Flags})
		if err != nil {
			return err
		}
		if err := a.putMailbox(*mb); err != nil {
			return err
		}
		if err := a.addUsed(mb.AccountID, c.Size); err != nil {
			return err
		}
		out = append(out, messageFromRec(mb.ID, m))
	}
	return deliverResult{Messages: out, UIDValidity: uidValidities(boxes)}
}

type deliverResult struct {
	Messages    []Message
	UIDValidity []uint32
}

func uidValidities(boxes []mailboxRec) []uint32 {
	out := make([]uint32, len(boxes))
	for i, b := range boxes {
		out[i] = b.UIDValidity
	}
	return out
}

func applyFlagOp(have []string, op FlagOp, flags []string) []string {
	var out []string
	switch op {
	case FlagsSet:
		out = append(out, flags...)
	case FlagsAdd:
		out = append(append(out, have...), flags...)
	case FlagsRemove:
		for _, f := range have {
			if !slices.Contains(flags, f) {
				out = append(out, f)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (a applier) storeFlags(c storeFlagsCmd) any {
	mb, err := a.mailboxByID(c.MailboxID)
	if err != nil {
		return err
	}
	msgs := a.b(bktMessages)
	res := storeResult{}
	for _, uid := range sortUIDs(c.UIDs) {
		var rec messageRec
		raw := msgs.Get(messageKey(mb.ID, uid))
		if raw == nil {
			continue // expunged meanwhile: RFC 9051 §6.4.6 ignores it
		}
		if err := decodeMessage(raw, &rec); err != nil {
			return err
		}
		// RFC 7162 §3.1.3: UNCHANGEDSINCE fails messages modified later.
		if c.UnchangedSince > 0 && rec.ModSeq > c.UnchangedSince {
			res.Failed = append(res.Failed, uid)
			continue
		}
		nf := applyFlagOp(rec.Flags, c.Op, c.Flags)
		if slices.Equal(nf, rec.Flags) {
			res.Changed = append(res.Changed, messageFromRec(mb.ID, rec))
			continue
		}
		wasSeen, isSeen := hasFlag(rec.Flags, `\Seen`), hasFlag(nf, `\Seen`)
		if wasSeen && !isSeen {
			mb.Unseen++
		} else if !wasSeen && isSeen {
			mb.Unseen--
		}
		rec.Flags = nf
		mb.HighestModSeq++
		rec.ModSeq = mb.HighestModSeq
		if err := putJSON(msgs, messageKey(mb.ID, uid), rec); err != nil {
			return err
		}
		res.Changed = append(res.Changed, messageFromRec(mb.ID, rec))
	}
	if err := a.putMailbox(mb); err != nil {
		return err
	}
	return res
}

type storeResult struct {
	Changed []Message
	Failed  []uint32
}

type copyResult struct {
	Src, Dst    []uint32
	UIDValidity uint32
}

func (a applier) copy(c copyCmd) any {
	src, err := a.mailboxByID(c.Src)
	if err != nil {
		return err
	}
	dst, err := a.mailboxByID(c.Dst)
	if err != nil {
		return err
	}
	if src.AccountID != dst.AccountID {
		return fmt.Errorf("copy between accounts: %w", ErrNoMailbox)
	}
	msgs := a.b(bktMessages)
	var recs []messageRec
	var total int64
	for _, uid := range sortUIDs(c.UIDs) {
		raw := msgs.Get(messageKey(src.ID, uid))
		if raw == nil {
			continue
		}
		var rec messageRec
		if err := decodeMessage(raw, &rec); err != nil {
			return err
		}
		recs = append(recs, rec)
		total += rec.Size
	}
	if !c.Move && total > 0 {
		acct, err := a.accountByID(dst.AccountID)
		if err != nil {
			return err
		}
		if acct.Quota > 0 && acct.Used+total > acct.Quota {
			return fmt.Errorf("account %s: %w", acct.Address, ErrOverQuota)
		}
	}
	res := copyResult{UIDValidity: dst.UIDValidity}
	if src.ID == dst.ID && c.Move {
		return res // moving into the same mailbox changes nothing
	}
	for _, rec := range recs {
		res.Src = append(res.Src, rec.UID)
		added, err := a.addMessage(&dst, rec)
		if err != nil {
			return err
		}
		res.Dst = append(res.Dst, added.UID)
	}
	if c.Move {
		for _, rec := range recs {
			if err := a.removeMessage(&src, rec); err != nil {
				return err
			}
		}
		if err := a.putMailbox(src); err != nil {
			return err
		}
	} else if err := a.addUsed(dst.AccountID, total); err != nil {
		return err
	}
	if err := a.putMailbox(dst); err != nil {
		return err
	}
	return res
}

// removeMessage deletes one message record and its blob reference; the
// caller stores the mailbox record.
func (a applier) removeMessage(mb *mailboxRec, rec messageRec) error {
	if err := a.b(bktMessages).Delete(messageKey(mb.ID, rec.UID)); err != nil {
		return err
	}
	mb.Messages--
	mb.Size -= rec.Size
	if !hasFlag(rec.Flags, `\Seen`) && mb.Unseen > 0 {
		mb.Unseen--
	}
	// An expunge advances HIGHESTMODSEQ (RFC 7162 §3.2.10) so clients that
	// cache by MODSEQ notice it.
	mb.HighestModSeq++
	return a.blobUnref(rec.Blob)
}

func (a applier) expunge(c expungeCmd) any {
	mb, err := a.mailboxByID(c.MailboxID)
	if err != nil {
		return err
	}
	var recs []messageRec
	if c.UIDs == nil {
		_, recs = a.messagesOf(mb.ID)
	} else {
		msgs := a.b(bktMessages)
		for _, uid := range sortUIDs(c.UIDs) {
			raw := msgs.Get(messageKey(mb.ID, uid))
			if raw == nil {
				continue
			}
			var rec messageRec
			if err := decodeMessage(raw, &rec); err != nil {
				return err
			}
			recs = append(recs, rec)
		}
	}
	var out []uint32
	var freed int64
	for _, rec := range recs {
		if c.OnlyDeleted && !hasFlag(rec.Flags, `\Deleted`) {
			continue
		}
		if err := a.removeMessage(&mb, rec); err != nil {
			return err
		}
		out = append(out, rec.UID)
		freed += rec.Size
	}
	if len(out) > 0 {
		if err := a.putMailbox(mb); err != nil {
			return err
		}
		if err := a.addUsed(mb.AccountID, -freed); err != nil {
			return err
		}
	}
	return out
}

func messageFromRec(mailboxID uint64, r messageRec) Message {
	return Message{MailboxID: mailboxID, UID: r.UID, Blob: r.Blob, Size: r.Size,
		InternalDate: time.Unix(0, r.Date), Flags: append([]string(nil), r.Flags...), ModSeq: r.ModSeq}
}
