package hardware

import (
	"context"
	"sync"
	"time"
)

// Fake is a VIP for tests without root: it records what happened.
type Fake struct {
	mu       sync.Mutex
	held     bool
	Acquires int
	Releases int
}

// NewFake makes a fake VIP.
func NewFake() *Fake { return &Fake{} }

// Acquire implements VIP.
func (f *Fake) Acquire(ctx context.Context, notBefore time.Time, stillLeader func() bool) error {
	if d := time.Until(notBefore); d > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held = true
	f.Acquires++
	return nil
}

// Release implements VIP.
func (f *Fake) Release() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held {
		f.Releases++
	}
	f.held = false
	return nil
}

// Held implements VIP.
func (f *Fake) Held() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held
}

// Close implements VIP.
func (f *Fake) Close() error { return f.Release() }
