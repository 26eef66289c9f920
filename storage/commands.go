package storage

import (
	"encoding/json"
	"fmt"
)

// CommandType is the first byte of every Raft log entry this FSM applies
// (the consul/nomad shape: a type byte, a version byte, a payload).
type CommandType uint8

const (
	CmdAddDomain CommandType = iota + 1
	CmdDelDomain
	CmdSetCatchAll
	CmdAddAccount
	CmdDelAccount
	CmdSetPassword
	CmdUpdateAccount
	CmdAddAlias
	CmdDelAlias
	CmdCreateMailbox
	CmdDeleteMailbox
	CmdRenameMailbox
	CmdSubscribe
	CmdDeliver
	CmdStoreFlags
	CmdCopy
	CmdExpunge
	CmdEnqueue
	CmdQueueAttempt
	CmdQueueDelete
	CmdQueueReschedule
	CmdLogAppend
	CmdLogPrune
	CmdTranscript
	CmdKVBatch // storage/kv.go: every feature's replicated settings and lists
)

// commandVersion is bumped when a payload changes incompatibly; Apply keeps
// decoding every version it ever wrote.
const commandVersion = 1

func (t CommandType) String() string {
	names := [...]string{"", "AddDomain", "DelDomain", "SetCatchAll", "AddAccount", "DelAccount",
		"SetPassword", "UpdateAccount", "AddAlias", "DelAlias", "CreateMailbox", "DeleteMailbox",
		"RenameMailbox", "Subscribe", "Deliver", "StoreFlags", "Copy", "Expunge",
		"Enqueue", "QueueAttempt", "QueueDelete", "QueueReschedule", "LogAppend", "LogPrune", "Transcript", "KVBatch"}
	if int(t) < len(names) && t > 0 {
		return names[t]
	}
	return fmt.Sprintf("Command(%d)", t)
}

// EncodeCommand frames a payload for the Raft log.
func EncodeCommand(t CommandType, payload any) ([]byte, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", t, err)
	}
	return append([]byte{byte(t), commandVersion}, b...), nil
}

// Every payload carries what Apply needs and nothing Apply may compute from
// the outside world: Now is the leader's clock when it built the command.

type addDomainCmd struct {
	Name string `json:"name"`
	Now  int64  `json:"now"`
}

type delDomainCmd struct {
	Name string `json:"name"`
}

type setCatchAllCmd struct {
	Domain string `json:"domain"`
	Target string `json:"target"` // "" clears it
}

type addAccountCmd struct {
	Address     string `json:"address"`
	Hash        string `json:"hash"`
	DisplayName string `json:"display_name"`
	Quota       int64  `json:"quota"`
	Admin       bool   `json:"admin"`
	Now         int64  `json:"now"`
}

type delAccountCmd struct {
	Address string `json:"address"`
}

type setPasswordCmd struct {
	Address string `json:"address"`
	Hash    string `json:"hash"`
}

type updateAccountCmd struct {
	Address     string  `json:"address"`
	DisplayName *string `json:"display_name,omitempty"`
	Quota       *int64  `json:"quota,omitempty"`
	Admin       *bool   `json:"admin,omitempty"`
}

type addAliasCmd struct {
	Address string   `json:"address"`
	Targets []string `json:"targets"`
}

type delAliasCmd struct {
	Address string `json:"address"`
}

type createMailboxCmd struct {
	AccountID  uint64 `json:"account_id"`
	Name       string `json:"name"`
	SpecialUse string `json:"special_use,omitempty"`
	Now        int64  `json:"now"`
}

type deleteMailboxCmd struct {
	AccountID uint64 `json:"account_id"`
	Name      string `json:"name"`
}

type renameMailboxCmd struct {
	AccountID uint64 `json:"account_id"`
	Old       string `json:"old"`
	New       string `json:"new"`
	Now       int64  `json:"now"`
}

type subscribeCmd struct {
	AccountID uint64 `json:"account_id"`
	Name      string `json:"name"`
	On        bool   `json:"on"`
}

// deliverCmd adds one blob to several mailboxes. Targets name either an
// account (its INBOX) or a mailbox ID.
type deliverCmd struct {
	Blob    string          `json:"blob"`
	Size    int64           `json:"size"`
	Date    int64           `json:"date"` // internal date, unix nanoseconds
	Flags   []string        `json:"flags,omitempty"`
	Targets []deliverTarget `json:"targets"`
	// EnforceQuota rejects the whole command when a target is over quota
	// (IMAP APPEND). SMTP checks quota at RCPT and must never drop mail
	// it already accepted, so it leaves this off.
	EnforceQuota bool `json:"enforce_quota,omitempty"`
}

type deliverTarget struct {
	AccountID uint64 `json:"account_id,omitempty"`
	MailboxID uint64 `json:"mailbox_id,omitempty"`
}

type storeFlagsCmd struct {
	MailboxID      uint64   `json:"mailbox_id"`
	UIDs           []uint32 `json:"uids"`
	Op             FlagOp   `json:"op"`
	Flags          []string `json:"flags"`
	UnchangedSince uint64   `json:"unchanged_since,omitempty"`
}

type copyCmd struct {
	Src  uint64   `json:"src"`
	UIDs []uint32 `json:"uids"`
	Dst  uint64   `json:"dst"`
	Move bool     `json:"move"`
}

type expungeCmd struct {
	MailboxID   uint64   `json:"mailbox_id"`
	UIDs        []uint32 `json:"uids"` // nil: all
	OnlyDeleted bool     `json:"only_deleted"`
}
