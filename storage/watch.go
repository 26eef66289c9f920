package storage

import "sync"

// watchHub fans change notifications out to IMAP sessions (IDLE, DESIGN §3:
// push is driven by FSM apply events). Notifying never blocks the FSM: each
// watcher keeps a set of pending mailbox IDs that its own goroutine drains.
type watchHub struct {
	mu       sync.Mutex
	watchers map[uint64]map[*watcher]struct{}
}

type watcher struct {
	out     chan uint64
	signal  chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	pending map[uint64]struct{}
	once    sync.Once
}

func newWatchHub() *watchHub {
	return &watchHub{watchers: map[uint64]map[*watcher]struct{}{}}
}

func (h *watchHub) watch(accountID uint64) (<-chan uint64, func()) {
	w := &watcher{
		out:     make(chan uint64),
		signal:  make(chan struct{}, 1),
		done:    make(chan struct{}),
		pending: map[uint64]struct{}{},
	}
	h.mu.Lock()
	set := h.watchers[accountID]
	if set == nil {
		set = map[*watcher]struct{}{}
		h.watchers[accountID] = set
	}
	set[w] = struct{}{}
	h.mu.Unlock()
	go w.run()
	cancel := func() {
		h.mu.Lock()
		delete(h.watchers[accountID], w)
		if len(h.watchers[accountID]) == 0 {
			delete(h.watchers, accountID)
		}
		h.mu.Unlock()
		w.stop()
	}
	return w.out, cancel
}

func (w *watcher) stop() { w.once.Do(func() { close(w.done) }) }

func (w *watcher) add(mailboxID uint64) {
	w.mu.Lock()
	w.pending[mailboxID] = struct{}{}
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (w *watcher) run() {
	for {
		select {
		case <-w.done:
			return
		case <-w.signal:
		}
		w.mu.Lock()
		ids := make([]uint64, 0, len(w.pending))
		for id := range w.pending {
			ids = append(ids, id)
		}
		clear(w.pending)
		w.mu.Unlock()
		for _, id := range ids {
			select {
			case w.out <- id:
			case <-w.done:
				return
			}
		}
	}
}

func (h *watchHub) notify(accountID, mailboxID uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers[accountID] {
		w.add(mailboxID)
	}
}

// notifyAll tells every watcher that anything may have changed (after a
// snapshot restore); 0 means "re-read everything".
func (h *watchHub) notifyAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.watchers {
		for w := range set {
			w.add(0)
		}
	}
}

func (h *watchHub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, set := range h.watchers {
		for w := range set {
			w.stop()
		}
		delete(h.watchers, id)
	}
}
