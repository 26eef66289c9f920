package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/tandemmail/tandem/protocols/pop3d"
	"github.com/tandemmail/tandem/storage"
)

// pop3Backend serves each account's INBOX as its POP3 maildrop, one
// session at a time (RFC 1939 §8: an exclusive-access lock; RFC 3206 IN-USE).
type pop3Backend struct {
	store *storage.Store

	mu     sync.Mutex
	locked map[uint64]bool
}

func newPOP3Backend(s *storage.Store) *pop3Backend {
	return &pop3Backend{store: s, locked: map[uint64]bool{}}
}

func (b *pop3Backend) Login(ctx context.Context, username, password string, remote net.Addr) (pop3d.Maildrop, error) {
	acct, err := b.store.Authenticate(ctx, username, password)
	if err != nil {
		if errors.Is(err, storage.ErrAuthFailed) {
			return nil, pop3d.ErrAuthFailed
		}
		return nil, err
	}
	inbox, err := b.store.Mailbox(acct.ID, "INBOX")
	if err != nil {
		return nil, fmt.Errorf("pop3 maildrop of %s: %w", acct.Address, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.locked[acct.ID] {
		return nil, pop3d.ErrInUse
	}
	b.locked[acct.ID] = true
	return &maildrop{b: b, accountID: acct.ID, inbox: inbox}, nil
}

type maildrop struct {
	b         *pop3Backend
	accountID uint64
	inbox     storage.Mailbox
	once      sync.Once
}

func (m *maildrop) Messages(ctx context.Context) ([]pop3d.MessageInfo, error) {
	msgs, err := m.b.store.Messages(m.inbox.ID)
	if err != nil {
		return nil, err
	}
	out := make([]pop3d.MessageInfo, len(msgs))
	for i, msg := range msgs {
		// UIDL: UIDVALIDITY and UID never repeat together, survive restarts
		// and failover (RELIABILITY #8).
		out[i] = pop3d.MessageInfo{ID: msg.UID, UIDL: fmt.Sprintf("%d.%d", m.inbox.UIDValidity, msg.UID), Size: msg.Size}
	}
	return out, nil
}

func (m *maildrop) Open(ctx context.Context, info pop3d.MessageInfo) (io.ReadCloser, error) {
	msg, err := m.b.store.Message(m.inbox.ID, info.ID)
	if err != nil {
		return nil, err
	}
	return m.b.store.OpenBlob(msg.Blob)
}

func (m *maildrop) Delete(ctx context.Context, msgs []pop3d.MessageInfo) error {
	uids := make([]uint32, len(msgs))
	for i, msg := range msgs {
		uids[i] = msg.ID
	}
	_, err := m.b.store.Expunge(ctx, m.inbox.ID, uids, false)
	return err
}

func (m *maildrop) Close() error {
	m.once.Do(func() {
		m.b.mu.Lock()
		delete(m.b.locked, m.accountID)
		m.b.mu.Unlock()
	})
	return nil
}
