package imapd

import (
	"context"
	"errors"
	"syscall"

	"github.com/emersion/go-imap/v2"
	"github.com/tandemmail/tandem/storage"
)

// storageError maps a storage error to a tagged NO with the RFC 5530
// response code a client can act on. Unknown errors are logged and
// answered with SERVERBUG, without internal detail.
func (s *session) storageError(op string, err error) error {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return err
	}
	no := func(code imap.ResponseCode, text string) error {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
	}
	switch {
	case errors.Is(err, storage.ErrNotLeader), errors.Is(err, storage.ErrUnavailable),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		s.log.Warn("imap: storage unavailable", "op", op, "err", err)
		return no(imap.ResponseCodeUnavailable, "storage temporarily unavailable, try again")
	case errors.Is(err, storage.ErrOverQuota):
		return no(imap.ResponseCodeOverQuota, "quota exceeded")
	case errors.Is(err, syscall.ENOSPC):
		// storage.ErrNoSpace: the server's disk, not the user's quota
		// (RELIABILITY #5).
		s.log.Warn("imap: storage full", "op", op, "err", err)
		return no(imap.ResponseCodeLimit, "server storage is full, try again later")
	case errors.Is(err, storage.ErrNoMailbox):
		return no(imap.ResponseCodeNonExistent, "no such mailbox")
	case errors.Is(err, storage.ErrMailboxExists):
		return no(imap.ResponseCodeAlreadyExists, "mailbox already exists")
	case errors.Is(err, storage.ErrBadMailboxName):
		return badNameError("", err, true)
	case errors.Is(err, storage.ErrCannotDelete):
		return no(imap.ResponseCodeCannot, "INBOX cannot be deleted")
	case errors.Is(err, storage.ErrNoMessage):
		return no(imap.ResponseCodeNonExistent, "no such message")
	case errors.Is(err, storage.ErrAuthFailed):
		return no(imap.ResponseCodeAuthenticationFailed, "authentication failed")
	}
	s.log.Error("imap: storage error", "op", op, "err", err)
	return no(imap.ResponseCodeServerBug, "internal error")
}

// tryCreate is the reply for COPY, MOVE or APPEND to a mailbox that does
// not exist (RFC 9051 §6.3.12: the client may CREATE and retry).
func tryCreate() error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "no such mailbox"}
}
