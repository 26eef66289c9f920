package imapd

import (
	"reflect"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/tandemmail/tandem/storage"
)

// CONDSTORE (RFC 7162) needs wire support that go-imap v2.0.0-beta.8's
// imapserver lacks: it parses neither FETCH MODSEQ / CHANGEDSINCE, STORE
// UNCHANGEDSINCE, SEARCH MODSEQ, SELECT (CONDSTORE) nor STATUS
// HIGHESTMODSEQ. The backend side is here regardless, reached through
// method checks, so the server offers CONDSTORE exactly when it is built
// against an imapserver that has the wire side (FetchResponseWriter.
// WriteModSeq and MailboxTracker.QueueMessageFlagsModSeq), and changes
// nothing otherwise. Such a patch for v2.0.0-beta.8 (which also ends the
// connection with BYE on a non-synchronizing literal it will not read,
// RFC 7888 §4) is tested by TestCondStore and TestNonSyncLiteralSmuggling,
// which skip against the stock library.

type modSeqWriter interface{ WriteModSeq(modSeq uint64) }

type modSeqQueuer interface {
	QueueMessageFlagsModSeq(seqNum uint32, uid imap.UID, flags []imap.Flag, modSeq uint64, source *imapserver.SessionTracker)
}

// condStoreSupported reports whether the linked imapserver speaks
// CONDSTORE on the wire.
func condStoreSupported() bool {
	_, fetch := reflect.TypeFor[*imapserver.FetchResponseWriter]().MethodByName("WriteModSeq")
	_, track := reflect.TypeFor[*imapserver.MailboxTracker]().MethodByName("QueueMessageFlagsModSeq")
	return fetch && track
}

// serverCaps is caps plus CONDSTORE when the library supports it.
func serverCaps() imap.CapSet {
	out := make(imap.CapSet, len(caps)+1)
	for c := range caps {
		out[c] = struct{}{}
	}
	if condStoreSupported() {
		out[imap.CapCondStore] = struct{}{}
	}
	return out
}

// condStoreEnabled reports whether the client has enabled CONDSTORE on
// this connection (RFC 7162 §3.1: any CONDSTORE-enabling command).
func condStoreEnabled(c *imapserver.Conn) bool {
	return c != nil && c.EnabledCaps().Has(imap.CapCondStore)
}

// writeModSeq adds MODSEQ (n) to a FETCH response (RFC 7162 §3.1.4.1).
func writeModSeq(resp *imapserver.FetchResponseWriter, modSeq uint64) {
	if w, ok := any(resp).(modSeqWriter); ok {
		w.WriteModSeq(modSeq)
	}
}

// queueFlagsUpdate queues an untagged FETCH FLAGS for the other sessions
// of a mailbox, with the message's MODSEQ for those that enabled CONDSTORE
// (RFC 7162 §3.2) when the library can carry it.
func queueFlagsUpdate(t *imapserver.MailboxTracker, seq uint32, m storage.Message, source *imapserver.SessionTracker) {
	if q, ok := any(t).(modSeqQueuer); ok {
		q.QueueMessageFlagsModSeq(seq, imap.UID(m.UID), imapFlags(m.Flags), m.ModSeq, source)
		return
	}
	t.QueueMessageFlags(seq, imap.UID(m.UID), imapFlags(m.Flags), source)
}

// changedSince drops the messages not modified after the FETCH
// CHANGEDSINCE value (RFC 7162 §3.1.4.1); 0 keeps all.
func changedSince(ts []target, modSeq uint64) []target {
	if modSeq == 0 {
		return ts
	}
	out := ts[:0]
	for _, t := range ts {
		if t.msg.ModSeq > modSeq {
			out = append(out, t)
		}
	}
	return out
}
