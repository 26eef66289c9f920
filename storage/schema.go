package storage

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// bbolt layout of the FSM state (one file, state.db). schemaVersion is kept in
// the meta bucket and travels with snapshots.
const schemaVersion = 1

var (
	bktMeta         = []byte("meta")          // applied index, counters, schema
	bktDomains      = []byte("domains")       // name → domainRec
	bktAccounts     = []byte("accounts")      // address → accountRec
	bktAccountIDs   = []byte("account_ids")   // id(8) → address
	bktAliases      = []byte("aliases")       // address → aliasRec
	bktMailboxes    = []byte("mailboxes")     // id(8) → mailboxRec
	bktMailboxNames = []byte("mailbox_names") // accountID(8) + name → id(8)
	bktMessages     = []byte("messages")      // mailboxID(8) + uid(4) → messageRec
	bktBlobs        = []byte("blobs")         // sha → refcount(8)

	allBuckets = [][]byte{bktMeta, bktDomains, bktAccounts, bktAccountIDs, bktAliases,
		bktMailboxes, bktMailboxNames, bktMessages, bktBlobs, bktQueue, bktQueueDue, bktLog, bktTranscripts, bktKV, bktKVRev}

	keyApplied     = []byte("applied_index")
	keySchema      = []byte("schema")
	keyNextAccount = []byte("next_account")
	keyNextMailbox = []byte("next_mailbox")
	keyUIDValidity = []byte("last_uidvalidity")
)

type domainRec struct {
	Name     string `json:"name"`
	CatchAll string `json:"catch_all,omitempty"`
	Created  int64  `json:"created"`
}

type accountRec struct {
	ID          uint64 `json:"id"`
	Address     string `json:"address"`
	Domain      string `json:"domain"`
	Hash        string `json:"hash"`
	DisplayName string `json:"display_name,omitempty"`
	Quota       int64  `json:"quota,omitempty"`
	Used        int64  `json:"used"`
	Admin       bool   `json:"admin,omitempty"`
	Created     int64  `json:"created"`
}

type aliasRec struct {
	Address string   `json:"address"`
	Targets []string `json:"targets"`
}

type mailboxRec struct {
	ID            uint64 `json:"id"`
	AccountID     uint64 `json:"account_id"`
	Name          string `json:"name"`
	UIDValidity   uint32 `json:"uidvalidity"`
	UIDNext       uint32 `json:"uidnext"`
	HighestModSeq uint64 `json:"modseq"`
	SpecialUse    string `json:"special_use,omitempty"`
	Subscribed    bool   `json:"subscribed,omitempty"`
	Messages      uint32 `json:"messages"`
	Unseen        uint32 `json:"unseen"`
	Size          int64  `json:"size"`
}

type messageRec struct {
	UID    uint32   `json:"u"`
	Blob   string   `json:"b"`
	Size   int64    `json:"s"`
	Date   int64    `json:"d"`
	Flags  []string `json:"f,omitempty"`
	ModSeq uint64   `json:"m"`
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func messageKey(mailboxID uint64, uid uint32) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint64(b, mailboxID)
	binary.BigEndian.PutUint32(b[8:], uid)
	return b
}

func mailboxNameKey(accountID uint64, name string) []byte {
	return append(u64(accountID), name...)
}

func getJSON(b *bolt.Bucket, key []byte, v any) (bool, error) {
	raw := b.Get(key)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("decode record %q: %w", key, err)
	}
	return true, nil
}

func jsonUnmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

func getU64(b *bolt.Bucket, key []byte) uint64 {
	raw := b.Get(key)
	if len(raw) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(raw)
}

func putU64(b *bolt.Bucket, key []byte, v uint64) error {
	return b.Put(key, u64(v))
}
