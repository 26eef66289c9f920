package storage

import (
	"errors"

	"github.com/tandemmail/tandem/cluster"
)

// Application errors: returned by Apply as values (the command was applied
// and changed nothing) and by Store methods.
var (
	ErrAuthFailed       = errors.New("authentication failed")
	ErrNoAccount        = errors.New("no such account")
	ErrNoDomain         = errors.New("no such domain")
	ErrNoAlias          = errors.New("no such alias")
	ErrNoMailbox        = errors.New("no such mailbox")
	ErrNoMessage        = errors.New("no such message")
	ErrMailboxExists    = errors.New("mailbox already exists")
	ErrBadMailboxName   = errors.New("invalid mailbox name")
	ErrCannotDelete     = errors.New("mailbox cannot be deleted")
	ErrOverQuota        = errors.New("quota exceeded")
	ErrExists           = errors.New("already exists")
	ErrNotEmpty         = errors.New("still in use")
	ErrBadAddress       = errors.New("invalid address")
	ErrUnknownRecipient = errors.New("no such recipient")
	ErrNotLocal         = errors.New("domain not hosted here")
	ErrNotLeader        = cluster.ErrNotLeader
	ErrUnavailable      = cluster.ErrUnavailable
)
