package imapd

import (
	"bytes"
	"io"
	"os"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/tandemmail/tandem/storage"
)

// Fetch answers FETCH and UID FETCH (RFC 9051 §6.4.5). Message bytes are
// streamed from the stored blob: BODY[] and ranges of it are copied from
// the file; only filtered headers and decoded BINARY parts are built in
// memory.
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	v, err := s.selected()
	if err != nil {
		return err
	}
	targets := changedSince(v.resolve(numSet), options.ChangedSince)
	flagsChanged, err := s.markSeen(v, targets, options)
	if err != nil {
		return err
	}
	for _, t := range targets {
		if err := s.fetchOne(w, t, options, flagsChanged[t.msg.UID]); err != nil {
			return err
		}
	}
	return nil
}

// markSeen sets \Seen on messages whose body is fetched without .PEEK
// (RFC 9051 §6.4.5), except in a read-only (EXAMINE) mailbox. The FETCH
// responses then include FLAGS.
func (s *session) markSeen(v *mailboxView, targets []target, options *imap.FetchOptions) (map[uint32]bool, error) {
	if v.readOnly || !fetchSetsSeen(options) {
		return nil, nil
	}
	var uids []uint32
	for _, t := range targets {
		if !hasFlag(t.msg.Flags, imap.FlagSeen) {
			uids = append(uids, t.msg.UID)
		}
	}
	if len(uids) == 0 {
		return nil, nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	s.srv.reg.beginOwn(v, uids)
	defer s.srv.reg.endOwn(v, uids)
	changed, _, err := s.srv.cfg.Store.StoreFlags(ctx, v.box.id, uids, storage.FlagsAdd, []string{string(imap.FlagSeen)}, 0)
	if err != nil {
		return nil, s.storageError("fetch", err)
	}
	s.srv.reg.applyChanged(v, changed)
	byUID := make(map[uint32]storage.Message, len(changed))
	for _, m := range changed {
		byUID[m.UID] = m
	}
	out := make(map[uint32]bool, len(changed))
	for i := range targets {
		if m, ok := byUID[targets[i].msg.UID]; ok {
			targets[i].msg = m
			out[m.UID] = true
		}
	}
	return out, nil
}

func fetchSetsSeen(options *imap.FetchOptions) bool {
	for _, b := range options.BodySection {
		if !b.Peek {
			return true
		}
	}
	for _, b := range options.BinarySection {
		if !b.Peek {
			return true
		}
	}
	return false
}

// parseDepth says how much of a message FETCH must parse: nothing for
// BODY[] and its ranges, the top-level header for ENVELOPE and
// BODY[HEADER...]/BODY[TEXT], the whole part tree otherwise. Header-only
// parsing keeps "FETCH 1:* BODY.PEEK[HEADER.FIELDS (...)]" from reading
// every attachment.
func parseDepth(options *imap.FetchOptions) (full, header bool) {
	if options.BodyStructure != nil || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0 {
		return true, false
	}
	header = options.Envelope
	for _, b := range options.BodySection {
		if len(b.Part) > 0 {
			return true, false
		}
		if b.Specifier != imap.PartSpecifierNone {
			header = true
		}
	}
	return false, header
}

func (s *session) fetchOne(w *imapserver.FetchWriter, t target, options *imap.FetchOptions, flagsChanged bool) error {
	var (
		blob     *os.File
		root     *mimePart
		bodies   []section
		binaries []section
	)
	needBlob := options.Envelope || options.BodyStructure != nil || len(options.BodySection) > 0 ||
		len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	if needBlob {
		f, err := s.srv.cfg.Store.OpenBlob(t.msg.Blob)
		if err != nil {
			s.log.Error("imap: open message", "uid", t.msg.UID, "blob", t.msg.Blob, "err", err)
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
				Text: "message data temporarily unavailable"}
		}
		defer f.Close()
		blob = f
		st, err := f.Stat()
		if err != nil {
			return s.storageError("fetch", err)
		}
		root = &mimePart{end: st.Size()}
		switch full, header := parseDepth(options); {
		case full:
			root, err = parseMIME(io.NewSectionReader(f, 0, st.Size()))
		case header:
			root, err = parseMIMEHeader(io.NewSectionReader(f, 0, st.Size()), st.Size())
		}
		if err != nil {
			return s.storageError("fetch", err)
		}
		for _, item := range options.BodySection {
			bodies = append(bodies, bodySection(root, item))
		}
		// Decode BINARY before the response starts: an unknown encoding
		// is a tagged NO [UNKNOWN-CTE], not a half-written response.
		for _, item := range options.BinarySection {
			sec, err := binarySection(f, root, item.Part, item.Partial)
			if err != nil {
				return s.storageError("fetch", err)
			}
			binaries = append(binaries, sec)
		}
		for _, item := range options.BinarySectionSize {
			sec, err := binarySection(f, root, item.Part, nil)
			if err != nil {
				return s.storageError("fetch", err)
			}
			binaries = append(binaries, sec)
		}
	}

	resp := w.CreateMessage(t.seq)
	if options.UID {
		resp.WriteUID(imap.UID(t.msg.UID))
	}
	if options.Flags || flagsChanged {
		resp.WriteFlags(imapFlags(t.msg.Flags))
	}
	if options.ModSeq {
		writeModSeq(resp, t.msg.ModSeq)
	}
	if options.InternalDate {
		resp.WriteInternalDate(t.msg.InternalDate)
	}
	if options.RFC822Size {
		resp.WriteRFC822Size(t.msg.Size)
	}
	if options.Envelope {
		resp.WriteEnvelope(imapserver.ExtractEnvelope(root.header))
	}
	if options.BodyStructure != nil {
		resp.WriteBodyStructure(bodyStructure(root))
	}
	var copyErr error
	for i, item := range options.BodySection {
		wc := resp.WriteBodySection(item, bodies[i].size())
		copyErr = firstErr(copyErr, writeLiteral(wc, bodies[i].reader(blob), bodies[i].size()))
	}
	for i, item := range options.BinarySection {
		wc := resp.WriteBinarySection(item, binaries[i].size())
		copyErr = firstErr(copyErr, writeLiteral(wc, binaries[i].reader(blob), binaries[i].size()))
	}
	for i, item := range options.BinarySectionSize {
		sec := binaries[len(options.BinarySection)+i]
		resp.WriteBinarySectionSize(item, uint32(min(sec.size(), 1<<32-1)))
	}
	if err := resp.Close(); err != nil {
		return err
	}
	if copyErr != nil {
		s.log.Error("imap: read message", "uid", t.msg.UID, "err", copyErr)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
			Text: "message data could not be read"}
	}
	return nil
}

// writeLiteral copies exactly size bytes. If the file yields fewer (it
// never should: blobs are immutable), the literal is padded so the
// connection stays in sync, and the error is returned.
func writeLiteral(wc io.WriteCloser, r io.Reader, size int64) error {
	n, err := io.Copy(wc, io.LimitReader(r, size))
	if n < size {
		pad := bytes.Repeat([]byte{' '}, 4096)
		for rest := size - n; rest > 0; {
			k := min(rest, int64(len(pad)))
			if _, werr := wc.Write(pad[:k]); werr != nil {
				break
			}
			rest -= k
		}
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
	}
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
