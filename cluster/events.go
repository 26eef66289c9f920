package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Event is a leadership change seen by this node, for the status page
// (SPEC W4: recent elections and failovers with their durations).
type Event struct {
	Time     time.Time     `json:"time"`
	Leader   string        `json:"leader"` // node ID; "" = no leader
	Term     uint64        `json:"term"`
	Downtime time.Duration `json:"downtime_ns,omitempty"` // how long there was no leader before this one
	Kind     string        `json:"kind"`                  // election, leader-lost, promote
}

type eventLog struct {
	mu       sync.Mutex
	events   []Event
	lostAt   time.Time
	leader   string
	observer *raft.Observer
	ch       chan raft.Observation
	done     chan struct{}
}

const maxEvents = 50

func (n *Node) watchLeadership() {
	el := &eventLog{ch: make(chan raft.Observation, 64), done: make(chan struct{})}
	el.observer = raft.NewObserver(el.ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.r().RegisterObserver(el.observer)
	n.events = el
	go func() {
		for {
			select {
			case <-el.done:
				return
			case o := <-el.ch:
				lo := o.Data.(raft.LeaderObservation)
				term := uint64(0)
				if t, ok := n.r().Stats()["term"]; ok {
					for _, c := range t {
						term = term*10 + uint64(c-'0')
					}
				}
				el.record(string(lo.LeaderID), term)
			}
		}
	}()
}

func (el *eventLog) record(leader string, term uint64) {
	el.mu.Lock()
	defer el.mu.Unlock()
	now := time.Now()
	if leader == el.leader {
		return
	}
	e := Event{Time: now, Leader: leader, Term: term}
	if leader == "" {
		e.Kind = "leader-lost"
		el.lostAt = now
	} else {
		e.Kind = "election"
		if !el.lostAt.IsZero() {
			e.Downtime = now.Sub(el.lostAt)
			el.lostAt = time.Time{}
		}
	}
	el.leader = leader
	el.events = append(el.events, e)
	if len(el.events) > maxEvents {
		el.events = el.events[len(el.events)-maxEvents:]
	}
}

func (el *eventLog) list() []Event {
	el.mu.Lock()
	defer el.mu.Unlock()
	return append([]Event(nil), el.events...)
}

// Events returns recent leadership changes, oldest first.
func (n *Node) Events() []Event {
	if n.events == nil {
		return nil
	}
	return n.events.list()
}

func (n *Node) stopEvents() {
	if n.events != nil {
		n.r().DeregisterObserver(n.events.observer)
		close(n.events.done)
	}
}
