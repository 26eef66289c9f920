package imapd

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/tandemmail/tandem/storage"
)

// specialUses maps RFC 6154 attributes to storage's special-use values.
var specialUses = map[imap.MailboxAttr]string{
	imap.MailboxAttrSent: `\Sent`, imap.MailboxAttrDrafts: `\Drafts`, imap.MailboxAttrTrash: `\Trash`,
	imap.MailboxAttrJunk: `\Junk`, imap.MailboxAttrArchive: `\Archive`, imap.MailboxAttrAll: `\All`,
	imap.MailboxAttrFlagged: `\Flagged`,
}

// Create makes a mailbox and any missing parents (RFC 9051 §6.3.4), with
// an optional special use (RFC 6154 §3).
func (s *session) Create(raw string, options *imap.CreateOptions) error {
	// RFC 3501 §6.3.3: a trailing separator only declares the intent to
	// create children; the name without it is created.
	trimmed := strings.TrimSuffix(raw, string(delim))
	name, err := mailboxName(trimmed)
	if err != nil {
		return badNameError(raw, err, true)
	}
	var use string
	if options != nil && len(options.SpecialUse) > 0 {
		if len(options.SpecialUse) > 1 {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: codeUseAttr,
				Text: "one special use per mailbox"}
		}
		var ok bool
		if use, ok = specialUses[options.SpecialUse[0]]; !ok {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: codeUseAttr,
				Text: "unsupported special-use attribute"}
		}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.srv.cfg.Store.CreateMailbox(ctx, s.account.ID, name, use); err != nil {
		return s.storageError("create", err)
	}
	return nil
}

// Delete removes a mailbox and its messages; children stay (RFC 9051
// §6.3.5). Sessions that have it selected see every message expunged.
func (s *session) Delete(raw string) error {
	name, err := mailboxName(raw)
	if err != nil {
		return badNameError(raw, err, false)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.srv.cfg.Store.DeleteMailbox(ctx, s.account.ID, name); err != nil {
		return s.storageError("delete", err)
	}
	return nil
}

// Rename renames a mailbox with its children (RFC 9051 §6.3.6); renaming
// INBOX moves its messages into the new mailbox.
func (s *session) Rename(rawOld, rawNew string, _ *imap.RenameOptions) error {
	oldName, err := mailboxName(rawOld)
	if err != nil {
		return badNameError(rawOld, err, false)
	}
	newName, err := mailboxName(rawNew)
	if err != nil {
		return badNameError(rawNew, err, true)
	}
	if strings.HasPrefix(newName, oldName+string(delim)) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
			Text: "cannot rename a mailbox into itself"}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.srv.cfg.Store.RenameMailbox(ctx, s.account.ID, oldName, newName); err != nil {
		return s.storageError("rename", err)
	}
	if isInbox(oldName) {
		s.srv.reg.refreshOpen(s.account.ID)
	}
	return nil
}

func (s *session) Subscribe(raw string) error   { return s.subscribe(raw, true) }
func (s *session) Unsubscribe(raw string) error { return s.subscribe(raw, false) }

func (s *session) subscribe(raw string, on bool) error {
	name, err := mailboxName(raw)
	if err != nil {
		return badNameError(raw, err, false)
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.srv.cfg.Store.SetSubscribed(ctx, s.account.ID, name, on); err != nil {
		return s.storageError("subscribe", err)
	}
	return nil
}

// Status answers STATUS (RFC 9051 §6.3.11).
func (s *session) Status(raw string, options *imap.StatusOptions) (*imap.StatusData, error) {
	mb, err := s.lookup(raw)
	if err != nil {
		return nil, err
	}
	return s.statusData(mb, options)
}

func (s *session) statusData(mb storage.Mailbox, options *imap.StatusOptions) (*imap.StatusData, error) {
	data := &imap.StatusData{Mailbox: mb.Name, UIDNext: imap.UID(mb.UIDNext), UIDValidity: mb.UIDValidity,
		HighestModSeq: mb.HighestModSeq}
	if options.NumMessages {
		data.NumMessages = ptr(mb.Messages)
	}
	if options.NumUnseen {
		data.NumUnseen = ptr(mb.Unseen)
	}
	if options.Size {
		data.Size = ptr(mb.Size)
	}
	if options.NumRecent {
		data.NumRecent = ptr(uint32(0)) // \Recent is not kept (RFC 9051 drops it)
	}
	if options.AppendLimit {
		data.AppendLimit = ptr(s.srv.cfg.AppendLimit)
	}
	if options.NumDeleted || options.DeletedStorage {
		msgs, err := s.srv.cfg.Store.Messages(mb.ID)
		if err != nil {
			return nil, s.storageError("status", err)
		}
		var n uint32
		var size int64
		for _, m := range msgs {
			if hasFlag(m.Flags, imap.FlagDeleted) {
				n++
				size += m.Size
			}
		}
		data.NumDeleted, data.DeletedStorage = ptr(n), ptr(size)
	}
	return data, nil
}

func ptr[T any](v T) *T { return &v }

// Append stores a message (RFC 9051 §6.3.12) and answers APPENDUID
// (RFC 4315). go-imap has already refused literals over AppendLimit.
func (s *session) Append(raw string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	name, err := mailboxName(raw)
	if err != nil {
		return nil, badNameError(raw, err, false)
	}
	mb, err := s.srv.cfg.Store.Mailbox(s.account.ID, name)
	if errors.Is(err, storage.ErrNoMailbox) {
		return nil, tryCreate()
	} else if err != nil {
		return nil, s.storageError("append", err)
	}
	var flags []string
	for _, f := range options.Flags {
		flags = append(flags, string(f))
	}
	date := options.Time
	if date.IsZero() {
		date = time.Now()
	}
	ctx, cancel := s.ctx()
	defer cancel()
	msg, uidValidity, err := s.srv.cfg.Store.Append(ctx, s.account.ID, mb.Name, r, flags, date)
	if errors.Is(err, storage.ErrNoMailbox) {
		return nil, tryCreate()
	} else if err != nil {
		return nil, s.storageError("append", err)
	}
	s.srv.reg.refreshID(mb.ID)
	return &imap.AppendData{UID: imap.UID(msg.UID), UIDValidity: uidValidity}, nil
}

// List answers LIST and LSUB with LIST-EXTENDED selection and return
// options (RFC 5258), SPECIAL-USE (RFC 6154) and LIST-STATUS (RFC 5819).
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter and root (RFC 9051 §6.3.9).
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	matchers := make([]*listMatcher, 0, len(patterns))
	for _, p := range patterns {
		m, err := newListMatcher(ref, p)
		if err != nil {
			return err
		}
		matchers = append(matchers, m)
	}
	boxes, err := s.srv.cfg.Store.Mailboxes(s.account.ID)
	if err != nil {
		return s.storageError("list", err)
	}
	boxes = slices.DeleteFunc(boxes, func(b storage.Mailbox) bool { return storage.ReservedMailbox(b.Name) })
	for _, e := range listEntries(boxes, matchers, options) {
		data := &imap.ListData{Attrs: e.attrs, Delim: delim, Mailbox: e.name}
		if e.childSubscribed {
			data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		}
		if options.ReturnStatus != nil && e.box != nil {
			if data.Status, err = s.statusData(*e.box, options.ReturnStatus); err != nil {
				return err
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// codeUseAttr refuses an unsupported special-use attribute (RFC 6154 §3).
const codeUseAttr imap.ResponseCode = "USEATTR"
