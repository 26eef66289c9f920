package imapd

import (
	"errors"
	"log/slog"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/tandemmail/tandem/storage"
)

// registry shares one view of each selected mailbox among the sessions of
// this process: one imapserver.MailboxTracker per mailbox ID, refcounted,
// and one storage.Watch per account. A change committed anywhere (another
// session, SMTP delivery, another node through Raft) arrives as a watch
// notification; the registry then diffs the stored message list against
// the last one it knew and queues EXPUNGE / EXISTS / FETCH FLAGS updates
// in order (RFC 9051 §7.4.1, §7.3.1).
type registry struct {
	store  *storage.Store
	log    *slog.Logger
	panics *atomic.Int64

	mu       sync.Mutex
	boxes    map[uint64]*sharedMailbox
	accounts map[uint64]*accountWatch
	wg       sync.WaitGroup
}

type accountWatch struct {
	refs   int
	cancel func()
	done   chan struct{}
}

// sharedMailbox is the server's view of one mailbox.
type sharedMailbox struct {
	id, accountID uint64
	refs          int // guarded by registry.mu

	// mu guards the fields below. It is held while updates are queued and
	// while a session writes its queued updates, so each view's mirror of
	// the tracker queue stays exact. Only sessions of one account share a
	// mailbox, so a slow reader can only delay its own account.
	mu      sync.Mutex
	loaded  bool
	tracker *imapserver.MailboxTracker
	msgs    []storage.Message // by UID: the server's view
	views   map[*mailboxView]struct{}
	// own maps UIDs whose flags a session is changing right now to that
	// session (beginOwn): a refresh triggered by that very change leaves
	// it out, since it reports the new flags in its own response, and
	// .SILENT stays silent.
	own map[uint32]*mailboxView
}

// mailboxView is one session's view of a selected mailbox: the UIDs the
// client knows, in sequence order, plus the EXISTS/EXPUNGE updates queued
// in its SessionTracker that the client has not been sent yet. The
// library tracker writes the updates; the mirror lets us map sequence
// numbers to UIDs exactly (go-imap's EncodeSeqNum does not handle several
// new messages at once, and "*" must be the client's last message).
type mailboxView struct {
	box      *sharedMailbox
	st       *imapserver.SessionTracker
	uids     []uint32 // client view: uids[seq-1]
	pending  []viewUpdate
	wake     chan struct{}
	readOnly bool
}

type viewUpdate struct {
	expunge uint32 // sequence number expunged, or 0
	exists  uint32 // UID of the new message announced by EXISTS, or 0
}

func newRegistry(store *storage.Store, log *slog.Logger, panics *atomic.Int64) *registry {
	return &registry{store: store, log: log, panics: panics,
		boxes: map[uint64]*sharedMailbox{}, accounts: map[uint64]*accountWatch{}}
}

// open selects a mailbox for a session and returns its view.
func (r *registry) open(mb storage.Mailbox, readOnly bool) (*mailboxView, error) {
	r.mu.Lock()
	box := r.boxes[mb.ID]
	if box == nil {
		box = &sharedMailbox{id: mb.ID, accountID: mb.AccountID, views: map[*mailboxView]struct{}{},
			own: map[uint32]*mailboxView{}}
		r.boxes[mb.ID] = box
		r.watchLocked(mb.AccountID)
	}
	box.refs++
	r.mu.Unlock()

	v, err := r.attach(box, readOnly)
	if err != nil {
		r.release(box)
		return nil, err
	}
	return v, nil
}

func (r *registry) attach(box *sharedMailbox, readOnly bool) (*mailboxView, error) {
	box.mu.Lock()
	defer box.mu.Unlock()
	if err := r.refreshLocked(box); err != nil {
		return nil, err
	}
	v := &mailboxView{box: box, st: box.tracker.NewSession(), readOnly: readOnly, wake: make(chan struct{}, 1)}
	v.uids = make([]uint32, len(box.msgs))
	for i, m := range box.msgs {
		v.uids[i] = m.UID
	}
	box.views[v] = struct{}{}
	return v, nil
}

// close releases a view (UNSELECT, CLOSE, SELECT of another mailbox,
// logout).
func (r *registry) close(v *mailboxView) {
	box := v.box
	box.mu.Lock()
	delete(box.views, v)
	v.st.Close()
	box.mu.Unlock()
	r.release(box)
}

func (r *registry) release(box *sharedMailbox) {
	r.mu.Lock()
	defer r.mu.Unlock()
	box.refs--
	if box.refs > 0 {
		return
	}
	if r.boxes[box.id] == box {
		delete(r.boxes, box.id)
	}
	aw := r.accounts[box.accountID]
	if aw == nil {
		return
	}
	if aw.refs--; aw.refs == 0 {
		delete(r.accounts, box.accountID)
		aw.cancel()
		close(aw.done)
	}
}

// watchLocked makes sure the account's changes are watched; one
// reference per open sharedMailbox.
func (r *registry) watchLocked(accountID uint64) {
	if aw := r.accounts[accountID]; aw != nil {
		aw.refs++
		return
	}
	ch, cancel := r.store.Watch(accountID)
	aw := &accountWatch{refs: 1, cancel: cancel, done: make(chan struct{})}
	r.accounts[accountID] = aw
	r.wg.Add(1)
	go r.watchLoop(accountID, ch, aw.done)
}

func (r *registry) watchLoop(accountID uint64, ch <-chan uint64, done <-chan struct{}) {
	defer r.wg.Done()
	for {
		select {
		case <-done:
			return
		case id := <-ch:
			r.changed(accountID, id)
		}
	}
}

// changed refreshes the mailbox that changed (0: every mailbox of the
// account).
func (r *registry) changed(accountID, mailboxID uint64) {
	r.mu.Lock()
	var boxes []*sharedMailbox
	for id, box := range r.boxes {
		if id == mailboxID || mailboxID == 0 && box.accountID == accountID {
			box.refs++
			boxes = append(boxes, box)
		}
	}
	r.mu.Unlock()
	for _, box := range boxes {
		r.refreshForWatch(box)
	}
}

// refreshForWatch refreshes one mailbox on the watcher's goroutine. A
// panic is counted and logged, and never leaves the mailbox locked (every
// session on it would hang, and Close with them).
func (r *registry) refreshForWatch(box *sharedMailbox) {
	defer r.release(box)
	defer func() {
		if v := recover(); v != nil {
			r.panics.Add(1)
			r.log.Error("imap: panic refreshing mailbox", "mailbox_id", box.id, "panic", v, "stack", string(debug.Stack()))
		}
	}()
	box.mu.Lock()
	defer box.mu.Unlock()
	if err := r.refreshLocked(box); err != nil {
		r.log.Warn("imap: refresh mailbox", "mailbox_id", box.id, "err", err)
	}
}

// refresh brings a mailbox's shared view up to date now, so a session's
// own change is reported before its tagged OK.
func (r *registry) refresh(box *sharedMailbox) {
	box.mu.Lock()
	defer box.mu.Unlock()
	if err := r.refreshLocked(box); err != nil {
		r.log.Warn("imap: refresh mailbox", "mailbox_id", box.id, "err", err)
	}
}

// refreshLocked diffs the stored list against the known one. Expunges are
// queued first, each with its sequence number at that moment, so clients
// applying them in order end with the right numbering; flag changes use
// the sequence number after the expunges before them; new messages come
// last, one EXISTS per message (UIDs only grow, so they append).
func (r *registry) refreshLocked(box *sharedMailbox) error {
	cur, err := r.store.Messages(box.id)
	if errors.Is(err, storage.ErrNoMailbox) {
		cur, err = nil, nil // deleted: every message is gone
	}
	if err != nil {
		return err
	}
	if !box.loaded {
		box.loaded = true
		box.msgs = cur
		box.tracker = imapserver.NewMailboxTracker(uint32(len(cur)))
		return nil
	}
	known := box.msgs
	next := make([]storage.Message, 0, len(cur))
	changed := false
	j := 0
	for _, k := range known {
		for j < len(cur) && cur[j].UID < k.UID {
			// Not known, yet below a known UID: cannot be shown without
			// renumbering. UIDs only grow, so this means a bug elsewhere.
			r.log.Warn("imap: message below known UIDs ignored", "mailbox_id", box.id, "uid", cur[j].UID)
			j++
		}
		if j < len(cur) && cur[j].UID == k.UID {
			m := cur[j]
			j++
			next = append(next, m)
			if !slices.Equal(m.Flags, k.Flags) {
				box.queueFlags(uint32(len(next)), m, box.own[m.UID])
				changed = true
			}
			continue
		}
		// Expunged: its sequence number is its position among the
		// messages kept so far, plus one.
		box.queueExpunge(uint32(len(next) + 1))
		changed = true
	}
	var last uint32
	if len(known) > 0 {
		last = known[len(known)-1].UID
	}
	for ; j < len(cur); j++ {
		if cur[j].UID <= last {
			continue
		}
		next = append(next, cur[j])
		box.queueExists(uint32(len(next)), cur[j].UID)
		changed = true
	}
	box.msgs = next
	if changed {
		box.wakeAll(nil)
	}
	return nil
}

// queueExpunge, queueExists and queueFlags feed the library tracker and
// every view's mirror in the same order, under box.mu.
func (box *sharedMailbox) queueExpunge(seq uint32) {
	box.tracker.QueueExpunge(seq)
	for v := range box.views {
		v.pending = append(v.pending, viewUpdate{expunge: seq})
	}
}

func (box *sharedMailbox) queueExists(n, uid uint32) {
	box.tracker.QueueNumMessages(n)
	for v := range box.views {
		v.pending = append(v.pending, viewUpdate{exists: uid})
	}
}

func (box *sharedMailbox) queueFlags(seq uint32, m storage.Message, source *mailboxView) {
	var st *imapserver.SessionTracker
	if source != nil {
		st = source.st
	}
	queueFlagsUpdate(box.tracker, seq, m, st)
}

func (box *sharedMailbox) wakeAll(except *mailboxView) {
	for v := range box.views {
		if v == except {
			continue
		}
		select {
		case v.wake <- struct{}{}:
		default:
		}
	}
}

// applyChanged records flag changes this session made itself (STORE,
// FETCH setting \Seen): other sessions get FETCH FLAGS, this one answers
// in its own command. A later diff then sees nothing new.
func (r *registry) applyChanged(v *mailboxView, changed []storage.Message) {
	box := v.box
	box.mu.Lock()
	defer box.mu.Unlock()
	any := false
	for _, m := range changed {
		i, ok := box.indexOf(m.UID)
		if !ok {
			continue
		}
		switch cur := box.msgs[i]; {
		case cur.ModSeq < m.ModSeq:
			box.msgs[i] = m
			box.queueFlags(uint32(i+1), m, v)
			any = true
		case cur.ModSeq > m.ModSeq && box.own[m.UID] == v:
			// Someone changed the message again after v did, and the
			// refresh that brought it left v out (own): tell everyone.
			box.queueFlags(uint32(i+1), cur, nil)
			any = true
		}
	}
	if any {
		box.wakeAll(nil)
	}
}

// beginOwn marks uids as being changed by v's session until endOwn; call
// applyChanged in between.
func (r *registry) beginOwn(v *mailboxView, uids []uint32) {
	v.box.mu.Lock()
	defer v.box.mu.Unlock()
	for _, u := range uids {
		v.box.own[u] = v
	}
}

func (r *registry) endOwn(v *mailboxView, uids []uint32) {
	v.box.mu.Lock()
	defer v.box.mu.Unlock()
	for _, u := range uids {
		if v.box.own[u] == v {
			delete(v.box.own, u)
		}
	}
}

func (box *sharedMailbox) indexOf(uid uint32) (int, bool) {
	i := sort.Search(len(box.msgs), func(i int) bool { return box.msgs[i].UID >= uid })
	return i, i < len(box.msgs) && box.msgs[i].UID == uid
}

// poll writes the view's pending updates and applies them to its UID list.
// allowExpunge false (during FETCH, STORE, SEARCH; RFC 9051 §7.4.1) stops
// at the first expunge, exactly as SessionTracker.Poll does.
func (v *mailboxView) poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	box := v.box
	box.mu.Lock()
	defer box.mu.Unlock()
	err := v.st.Poll(w, allowExpunge)
	n := len(v.pending)
	if !allowExpunge {
		for i, u := range v.pending {
			if u.expunge != 0 {
				n = i
				break
			}
		}
	}
	// The tracker dequeued these before writing, even if a write failed.
	for _, u := range v.pending[:n] {
		v.apply(u)
	}
	v.pending = append(v.pending[:0], v.pending[n:]...)
	return err
}

func (v *mailboxView) apply(u viewUpdate) {
	switch {
	case u.expunge != 0:
		if i := int(u.expunge) - 1; i < len(v.uids) {
			v.uids = slices.Delete(v.uids, i, i+1)
		}
	case u.exists != 0:
		v.uids = append(v.uids, u.exists)
	}
}

// idle writes updates as they come until stop is closed (RFC 2177).
func (v *mailboxView) idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	for {
		if err := v.poll(w, true); err != nil {
			return err
		}
		select {
		case <-v.wake:
		case <-stop:
			return nil
		}
	}
}

// close stops the registry's watchers; sessions must be gone.
func (r *registry) closeAll() {
	r.mu.Lock()
	for id, aw := range r.accounts {
		aw.cancel()
		close(aw.done)
		delete(r.accounts, id)
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func imapFlags(flags []string) []imap.Flag {
	out := make([]imap.Flag, len(flags))
	for i, f := range flags {
		out[i] = imap.Flag(f)
	}
	return out
}

// refreshID refreshes a mailbox now if a session here has it selected
// (after APPEND, COPY or MOVE into it).
func (r *registry) refreshID(id uint64) {
	r.mu.Lock()
	box := r.boxes[id]
	if box != nil {
		box.refs++
	}
	r.mu.Unlock()
	if box == nil {
		return
	}
	r.refresh(box)
	r.release(box)
}

// refreshOpen refreshes every open mailbox of an account.
func (r *registry) refreshOpen(accountID uint64) { r.changed(accountID, 0) }
