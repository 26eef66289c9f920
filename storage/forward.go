package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Writes on a follower (an admin command run on any box) are forwarded to
// the leader over the cluster port and committed there. Commands that
// reference a blob are never forwarded: their blob lives on this node.

// Forwarder sends a command to the leader (cluster.Node).
type Forwarder interface {
	Forward(ctx context.Context, cmd []byte) ([]byte, error)
}

var forwardable = map[CommandType]bool{
	CmdAddDomain: true, CmdDelDomain: true, CmdSetCatchAll: true, CmdAddAccount: true, CmdDelAccount: true,
	CmdSetPassword: true, CmdUpdateAccount: true, CmdAddAlias: true, CmdDelAlias: true, CmdCreateMailbox: true,
	CmdDeleteMailbox: true, CmdRenameMailbox: true, CmdSubscribe: true, CmdStoreFlags: true, CmdCopy: true,
	CmdExpunge: true, CmdQueueDelete: true, CmdQueueReschedule: true, CmdLogAppend: true, CmdLogPrune: true,
	CmdKVBatch: true,
}

// sentinels lets a forwarded error keep its identity (errors.Is).
var sentinels = []error{ErrAuthFailed, ErrNoAccount, ErrNoDomain, ErrNoAlias, ErrNoMailbox, ErrNoMessage,
	ErrMailboxExists, ErrBadMailboxName, ErrCannotDelete, ErrOverQuota, ErrExists, ErrNotEmpty, ErrBadAddress,
	ErrUnknownRecipient, ErrNotLocal, ErrNotLeader, ErrUnavailable, ErrKVConflict}

type wireResult struct {
	Err      string          `json:"err,omitempty"`
	Sentinel int             `json:"sentinel,omitempty"` // index+1 in sentinels
	Value    json.RawMessage `json:"value,omitempty"`
}

// EncodeResponse encodes an FSM response for a forwarded write.
func EncodeResponse(v any) ([]byte, error) {
	var w wireResult
	if err, ok := v.(error); ok {
		w.Err = err.Error()
		for i, s := range sentinels {
			if errors.Is(err, s) {
				w.Sentinel = i + 1
				break
			}
		}
		return json.Marshal(w)
	}
	if v != nil {
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		w.Value = raw
	}
	return json.Marshal(w)
}

// decodeResponse turns a forwarded answer back into what Apply returns for
// that command type.
func decodeResponse(t CommandType, b []byte) (any, error) {
	var w wireResult
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("forwarded %s: bad answer: %w", t, err)
	}
	if w.Err != "" {
		if w.Sentinel > 0 && w.Sentinel <= len(sentinels) {
			return fmt.Errorf("%s (on the leader): %w", w.Err, sentinels[w.Sentinel-1]), nil
		}
		return errors.New(w.Err), nil
	}
	if len(w.Value) == 0 {
		return nil, nil
	}
	var v any
	switch t {
	case CmdAddAccount, CmdUpdateAccount:
		var a Account
		v = &a
	case CmdCreateMailbox:
		var m Mailbox
		v = &m
	case CmdStoreFlags:
		var r storeResult
		v = &r
	case CmdCopy:
		var r copyResult
		v = &r
	case CmdExpunge:
		var r []uint32
		v = &r
	default:
		return nil, nil
	}
	if err := json.Unmarshal(w.Value, v); err != nil {
		return nil, fmt.Errorf("forwarded %s: %w", t, err)
	}
	switch p := v.(type) {
	case *Account:
		return *p, nil
	case *Mailbox:
		return *p, nil
	case *storeResult:
		return *p, nil
	case *copyResult:
		return *p, nil
	case *[]uint32:
		return *p, nil
	}
	return nil, nil
}
