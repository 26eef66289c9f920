package storage

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
)

// nextUIDValidity hands out UIDVALIDITY values that never repeat on this
// system (RFC 9051 §2.3.1.1): at least the command's time in seconds, and
// always above the last one given out, so a deleted and re-created mailbox
// gets a new value.
func (a applier) nextUIDValidity(now int64) (uint32, error) {
	meta := a.b(bktMeta)
	last := uint32(getU64(meta, keyUIDValidity))
	v := last + 1
	if secs := uint32(now / 1e9); secs > v {
		v = secs
	}
	return v, putU64(meta, keyUIDValidity, uint64(v))
}

// newMailbox creates one mailbox; with parents, also its missing ancestors.
func (a applier) newMailbox(accountID uint64, name, use string, now int64, parents bool) (mailboxRec, error) {
	if parents {
		parts := strings.Split(name, "/")
		for i := 1; i < len(parts); i++ {
			parent := strings.Join(parts[:i], "/")
			if a.b(bktMailboxNames).Get(mailboxNameKey(accountID, parent)) == nil {
				if _, err := a.newMailbox(accountID, parent, "", now, false); err != nil {
					return mailboxRec{}, err
				}
			}
		}
	}
	meta := a.b(bktMeta)
	id := getU64(meta, keyNextMailbox) + 1
	if err := putU64(meta, keyNextMailbox, id); err != nil {
		return mailboxRec{}, err
	}
	uv, err := a.nextUIDValidity(now)
	if err != nil {
		return mailboxRec{}, err
	}
	rec := mailboxRec{ID: id, AccountID: accountID, Name: name, UIDValidity: uv, UIDNext: 1,
		HighestModSeq: 1, SpecialUse: use, Subscribed: true}
	if err := putJSON(a.b(bktMailboxes), u64(id), rec); err != nil {
		return rec, err
	}
	if err := a.b(bktMailboxNames).Put(mailboxNameKey(accountID, name), u64(id)); err != nil {
		return rec, err
	}
	a.ch.touch(accountID, id)
	return rec, nil
}

func (a applier) mailboxByName(accountID uint64, name string) (mailboxRec, error) {
	id := a.b(bktMailboxNames).Get(mailboxNameKey(accountID, name))
	if id == nil {
		return mailboxRec{}, fmt.Errorf("mailbox %q: %w", name, ErrNoMailbox)
	}
	var rec mailboxRec
	ok, err := getJSON(a.b(bktMailboxes), id, &rec)
	if err != nil {
		return rec, err
	}
	if !ok {
		return rec, fmt.Errorf("mailbox %q: index without record: %w", name, ErrNoMailbox)
	}
	return rec, nil
}

func (a applier) mailboxByID(id uint64) (mailboxRec, error) {
	var rec mailboxRec
	ok, err := getJSON(a.b(bktMailboxes), u64(id), &rec)
	if err != nil {
		return rec, err
	}
	if !ok {
		return rec, fmt.Errorf("mailbox #%d: %w", id, ErrNoMailbox)
	}
	return rec, nil
}

func (a applier) putMailbox(rec mailboxRec) error {
	a.ch.touch(rec.AccountID, rec.ID)
	return putJSON(a.b(bktMailboxes), u64(rec.ID), rec)
}

// mailboxesOf lists an account's mailboxes in name order.
func (a applier) mailboxesOf(accountID uint64) []mailboxRec {
	var out []mailboxRec
	prefix := u64(accountID)
	cur := a.b(bktMailboxNames).Cursor()
	for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
		var rec mailboxRec
		if ok, err := getJSON(a.b(bktMailboxes), v, &rec); err == nil && ok {
			out = append(out, rec)
		}
	}
	return out
}

func (a applier) createMailbox(c createMailboxCmd) any {
	if err := CheckMailboxName(c.Name); err != nil {
		return err
	}
	if _, err := a.accountByID(c.AccountID); err != nil {
		return err
	}
	if a.b(bktMailboxNames).Get(mailboxNameKey(c.AccountID, c.Name)) != nil {
		return fmt.Errorf("mailbox %q: %w", c.Name, ErrMailboxExists)
	}
	rec, err := a.newMailbox(c.AccountID, c.Name, c.SpecialUse, c.Now, true)
	if err != nil {
		return err
	}
	return mailboxFromRec(rec)
}

// dropMailbox removes a mailbox and its messages.
func (a applier) dropMailbox(mb mailboxRec) error {
	uids, recs := a.messagesOf(mb.ID)
	var freed int64
	for i, uid := range uids {
		if err := a.b(bktMessages).Delete(messageKey(mb.ID, uid)); err != nil {
			return err
		}
		if err := a.blobUnref(recs[i].Blob); err != nil {
			return err
		}
		freed += recs[i].Size
	}
	if err := a.addUsed(mb.AccountID, -freed); err != nil {
		return err
	}
	if err := a.b(bktMailboxNames).Delete(mailboxNameKey(mb.AccountID, mb.Name)); err != nil {
		return err
	}
	a.ch.touch(mb.AccountID, mb.ID)
	return a.b(bktMailboxes).Delete(u64(mb.ID))
}

func (a applier) deleteMailbox(c deleteMailboxCmd) any {
	if c.Name == "INBOX" {
		return fmt.Errorf("mailbox INBOX: %w", ErrCannotDelete)
	}
	mb, err := a.mailboxByName(c.AccountID, c.Name)
	if err != nil {
		return err
	}
	return a.dropMailbox(mb)
}

func (a applier) renameMailbox(c renameMailboxCmd) any {
	if err := CheckMailboxName(c.New); err != nil {
		return err
	}
	if c.Old == c.New {
		return fmt.Errorf("rename %q to itself: %w", c.Old, ErrMailboxExists)
	}
	if strings.HasPrefix(c.New, c.Old+"/") {
		return fmt.Errorf("rename %q into its own child %q: %w", c.Old, c.New, ErrBadMailboxName)
	}
	old, err := a.mailboxByName(c.AccountID, c.Old)
	if err != nil {
		return err
	}
	if a.b(bktMailboxNames).Get(mailboxNameKey(c.AccountID, c.New)) != nil {
		return fmt.Errorf("mailbox %q: %w", c.New, ErrMailboxExists)
	}
	if c.Old == "INBOX" {
		// RFC 3501 §6.3.5: renaming INBOX moves its messages to a new
		// mailbox and leaves INBOX in place, empty. Children of INBOX stay.
		dst, err := a.newMailbox(c.AccountID, c.New, "", c.Now, true)
		if err != nil {
			return err
		}
		uids, _ := a.messagesOf(old.ID)
		if e, ok := a.copy(copyCmd{Src: old.ID, UIDs: uids, Dst: dst.ID, Move: true}).(error); ok {
			return e
		}
		return nil
	}
	// Collect the mailbox and its children before changing any key.
	all := a.mailboxesOf(c.AccountID)
	var moving []mailboxRec
	for _, mb := range all {
		if mb.Name == c.Old || strings.HasPrefix(mb.Name, c.Old+"/") {
			moving = append(moving, mb)
		}
	}
	for _, mb := range moving {
		newName := c.New + strings.TrimPrefix(mb.Name, c.Old)
		if a.b(bktMailboxNames).Get(mailboxNameKey(c.AccountID, newName)) != nil {
			return fmt.Errorf("mailbox %q: %w", newName, ErrMailboxExists)
		}
	}
	// Parents of the new name (e.g. RENAME a TO x/y/a creates x and x/y).
	parts := strings.Split(c.New, "/")
	for i := 1; i < len(parts); i++ {
		parent := strings.Join(parts[:i], "/")
		if parent == c.Old || strings.HasPrefix(parent, c.Old+"/") {
			continue
		}
		if a.b(bktMailboxNames).Get(mailboxNameKey(c.AccountID, parent)) == nil {
			if _, err := a.newMailbox(c.AccountID, parent, "", c.Now, false); err != nil {
				return err
			}
		}
	}
	names := a.b(bktMailboxNames)
	for _, mb := range moving {
		if err := names.Delete(mailboxNameKey(c.AccountID, mb.Name)); err != nil {
			return err
		}
	}
	for _, mb := range moving {
		mb.Name = c.New + strings.TrimPrefix(mb.Name, c.Old)
		if err := names.Put(mailboxNameKey(c.AccountID, mb.Name), u64(mb.ID)); err != nil {
			return err
		}
		if err := a.putMailbox(mb); err != nil {
			return err
		}
	}
	return nil
}

func (a applier) subscribe(c subscribeCmd) any {
	mb, err := a.mailboxByName(c.AccountID, c.Name)
	if err != nil {
		return err
	}
	mb.Subscribed = c.On
	return a.putMailbox(mb)
}

// messagesOf returns a mailbox's messages in UID order.
func (a applier) messagesOf(mailboxID uint64) ([]uint32, []messageRec) {
	var uids []uint32
	var recs []messageRec
	prefix := u64(mailboxID)
	cur := a.b(bktMessages).Cursor()
	for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
		var rec messageRec
		if err := decodeMessage(v, &rec); err != nil {
			continue
		}
		uids = append(uids, rec.UID)
		recs = append(recs, rec)
	}
	return uids, recs
}

func sortUIDs(u []uint32) []uint32 {
	out := append([]uint32(nil), u...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	// Drop duplicates: a client may name a UID twice in a set.
	n := 0
	for i, v := range out {
		if i == 0 || v != out[n-1] {
			out[n] = v
			n++
		}
	}
	return out[:n]
}
