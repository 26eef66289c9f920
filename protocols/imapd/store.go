package imapd

import (
	"context"
	"errors"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/tandemmail/tandem/storage"
)

// Store answers STORE and UID STORE (RFC 9051 §6.4.6). Other sessions get
// the new flags as unsolicited FETCH responses through the tracker.
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	v, err := s.selected()
	if err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	targets := v.resolve(numSet)
	if len(targets) == 0 {
		return nil
	}
	var op storage.FlagOp
	switch flags.Op {
	case imap.StoreFlagsSet:
		op = storage.FlagsSet
	case imap.StoreFlagsAdd:
		op = storage.FlagsAdd
	case imap.StoreFlagsDel:
		op = storage.FlagsRemove
	}
	names := make([]string, 0, len(flags.Flags))
	for _, f := range flags.Flags {
		names = append(names, string(f))
	}
	uids := make([]uint32, len(targets))
	for i, t := range targets {
		uids[i] = t.msg.UID
	}
	var unchangedSince uint64
	if options != nil {
		unchangedSince = options.UnchangedSince
	}
	ctx, cancel := s.ctx()
	defer cancel()
	s.srv.reg.beginOwn(v, uids)
	defer s.srv.reg.endOwn(v, uids)
	changed, failed, err := s.srv.cfg.Store.StoreFlags(ctx, v.box.id, uids, op, names, unchangedSince)
	if err != nil {
		return s.storageError("store", err)
	}
	s.srv.reg.applyChanged(v, changed)
	// RFC 7162 §3.2: with CONDSTORE enabled, every FETCH response carries
	// UID and MODSEQ, even for .SILENT.
	cond := condStoreEnabled(s.conn)
	if !flags.Silent || cond {
		_, isUID := numSet.(imap.UIDSet)
		for _, m := range changed {
			seq := v.seqOf(m.UID)
			if seq == 0 {
				continue
			}
			resp := w.CreateMessage(seq)
			if isUID || cond {
				resp.WriteUID(imap.UID(m.UID))
			}
			if !flags.Silent {
				resp.WriteFlags(imapFlags(m.Flags))
			}
			if cond {
				writeModSeq(resp, m.ModSeq)
			}
			if err := resp.Close(); err != nil {
				return err
			}
		}
	}
	if len(failed) > 0 {
		// RFC 7162 §3.1.3: OK [MODIFIED uids] for UNCHANGEDSINCE failures.
		var set imap.UIDSet
		for _, u := range failed {
			set.AddNum(imap.UID(u))
		}
		return &imap.Error{Type: imap.StatusResponseTypeOK, Code: imap.ResponseCode("MODIFIED " + set.String()),
			Text: "some messages were modified meanwhile"}
	}
	return nil
}

// destination finds the target mailbox of COPY or MOVE; a missing one is
// NO [TRYCREATE] (RFC 9051 §6.4.7).
func (s *session) destination(raw string) (storage.Mailbox, error) {
	name, err := mailboxName(raw)
	if err != nil {
		return storage.Mailbox{}, badNameError(raw, err, false)
	}
	mb, err := s.srv.cfg.Store.Mailbox(s.account.ID, name)
	if errors.Is(err, storage.ErrNoMailbox) {
		return storage.Mailbox{}, tryCreate()
	} else if err != nil {
		return storage.Mailbox{}, s.storageError("copy", err)
	}
	return mb, nil
}

// Copy answers COPY and UID COPY with COPYUID (RFC 4315 §3).
func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	v, err := s.selected()
	if err != nil {
		return nil, err
	}
	dst, err := s.destination(dest)
	if err != nil {
		return nil, err
	}
	targets := v.resolve(numSet)
	uids := targetUIDs(targets)
	if len(uids) == 0 {
		return nil, nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	src, dstUIDs, uidValidity, err := s.srv.cfg.Store.Copy(ctx, v.box.id, uids, dst.ID)
	if errors.Is(err, storage.ErrNoMailbox) {
		return nil, tryCreate()
	} else if err != nil {
		return nil, s.storageError("copy", err)
	}
	s.transferred(ctx, v.box.id, dst, targets)
	s.srv.reg.refreshID(dst.ID)
	return copyData(src, dstUIDs, uidValidity), nil
}

// Move answers MOVE and UID MOVE (RFC 6851): COPYUID first, then the
// EXPUNGE responses, which the poll after the command writes in order.
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	v, err := s.selected()
	if err != nil {
		return err
	}
	if err := s.checkWritable(); err != nil {
		return err
	}
	dst, err := s.destination(dest)
	if err != nil {
		return err
	}
	if dst.ID == v.box.id {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
			Text: "source and destination are the same mailbox"}
	}
	targets := v.resolve(numSet)
	uids := targetUIDs(targets)
	if len(uids) == 0 {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	src, dstUIDs, uidValidity, err := s.srv.cfg.Store.Move(ctx, v.box.id, uids, dst.ID)
	if errors.Is(err, storage.ErrNoMailbox) {
		return tryCreate()
	} else if err != nil {
		return s.storageError("move", err)
	}
	s.transferred(ctx, v.box.id, dst, targets)
	s.srv.reg.refreshID(dst.ID)
	if len(src) > 0 {
		if err := w.WriteCopyData(copyData(src, dstUIDs, uidValidity)); err != nil {
			return err
		}
	}
	s.srv.reg.refresh(v.box)
	return nil
}

// Expunge answers EXPUNGE, UID EXPUNGE (RFC 4315 §2.1) and the implicit
// expunge of CLOSE. The EXPUNGE responses come from the tracker in the
// poll after the command (CLOSE discards them with the view).
func (s *session) Expunge(_ *imapserver.ExpungeWriter, uidSet *imap.UIDSet) error {
	v, err := s.selected()
	if err != nil {
		return err
	}
	if v.readOnly {
		// RFC 9051 §6.4.1: CLOSE after EXAMINE removes nothing, silently.
		return nil
	}
	var uids []uint32
	if uidSet != nil {
		if uids = targetUIDs(v.resolve(*uidSet)); len(uids) == 0 {
			return nil
		}
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.srv.cfg.Store.Expunge(ctx, v.box.id, uids, true); err != nil {
		return s.storageError("expunge", err)
	}
	s.srv.reg.refresh(v.box)
	return nil
}

func targetUIDs(ts []target) []uint32 {
	out := make([]uint32, len(ts))
	for i, t := range ts {
		out[i] = t.msg.UID
	}
	return out
}

func copyData(src, dst []uint32, uidValidity uint32) *imap.CopyData {
	if len(src) == 0 {
		return nil
	}
	var s, d imap.UIDSet
	for _, u := range src {
		s.AddNum(imap.UID(u))
	}
	for _, u := range dst {
		d.AddNum(imap.UID(u))
	}
	return &imap.CopyData{UIDValidity: uidValidity, SourceUIDs: s, DestUIDs: d}
}

// transferred tells Config.Transferred about a COPY or MOVE.
func (s *session) transferred(ctx context.Context, srcID uint64, dst storage.Mailbox, ts []target) {
	if s.srv.cfg.Transferred == nil {
		return
	}
	src, err := s.srv.cfg.Store.MailboxByID(srcID)
	if err != nil {
		return // deleted meanwhile: nothing to learn from
	}
	msgs := make([]storage.Message, len(ts))
	for i, t := range ts {
		msgs[i] = t.msg
	}
	s.srv.cfg.Transferred(ctx, s.account.ID, src, dst, msgs)
}
