package storage

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Account is a mailbox owner: user@domain with a password.
type Account struct {
	ID          uint64    `json:"id"`
	Address     string    `json:"address"`
	Domain      string    `json:"domain"`
	DisplayName string    `json:"display_name,omitempty"`
	QuotaBytes  int64     `json:"quota_bytes"`
	UsedBytes   int64     `json:"used_bytes"`
	Admin       bool      `json:"admin"`
	Created     time.Time `json:"created"`
}

// Domain is a hosted mail domain.
type Domain struct {
	Name     string    `json:"name"`
	CatchAll string    `json:"catch_all,omitempty"`
	Created  time.Time `json:"created"`
}

// Alias forwards an address to one or more other addresses.
type Alias struct {
	Address string   `json:"address"`
	Targets []string `json:"targets"`
}

// Mailbox is an IMAP folder of an account.
type Mailbox struct {
	ID            uint64 `json:"id"`
	AccountID     uint64 `json:"account_id"`
	Name          string `json:"name"`
	UIDValidity   uint32 `json:"uidvalidity"`
	UIDNext       uint32 `json:"uidnext"`
	HighestModSeq uint64 `json:"highest_modseq"`
	SpecialUse    string `json:"special_use,omitempty"`
	Subscribed    bool   `json:"subscribed"`
	Messages      uint32 `json:"messages"`
	Unseen        uint32 `json:"unseen"`
	Size          int64  `json:"size"`
}

// Message is one message in a mailbox; its bytes are the blob.
type Message struct {
	MailboxID    uint64
	UID          uint32
	Blob         string
	Size         int64
	InternalDate time.Time
	Flags        []string
	ModSeq       uint64
}

// FlagOp says how StoreFlags combines flags.
type FlagOp int

const (
	FlagsSet FlagOp = iota
	FlagsAdd
	FlagsRemove
)

func accountFromRec(r accountRec) Account {
	return Account{ID: r.ID, Address: r.Address, Domain: r.Domain, DisplayName: r.DisplayName,
		QuotaBytes: r.Quota, UsedBytes: r.Used, Admin: r.Admin, Created: time.Unix(0, r.Created)}
}

func mailboxFromRec(r mailboxRec) Mailbox {
	return Mailbox{ID: r.ID, AccountID: r.AccountID, Name: r.Name, UIDValidity: r.UIDValidity,
		UIDNext: r.UIDNext, HighestModSeq: r.HighestModSeq, SpecialUse: r.SpecialUse,
		Subscribed: r.Subscribed, Messages: r.Messages, Unseen: r.Unseen, Size: r.Size}
}

// NormalizeAddress lower-cases and checks an address of the form
// local@domain (RFC 5321 §4.5.3.1 limits: local part 64, domain 255 octets).
// Quoted local parts and source routes are refused: they are how open
// relays get tricked (RELIABILITY #15).
func NormalizeAddress(addr string) (string, error) {
	if !utf8.ValidString(addr) {
		return "", fmt.Errorf("address is not valid UTF-8: %w", ErrBadAddress)
	}
	for _, r := range addr {
		if unicode.IsControl(r) {
			return "", fmt.Errorf("address %q: control character: %w", truncate(addr, 80), ErrBadAddress)
		}
	}
	addr = strings.ToLower(strings.TrimSpace(addr))
	local, domain, ok := strings.Cut(addr, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") {
		return "", fmt.Errorf("address %q: want local@domain: %w", truncate(addr, 80), ErrBadAddress)
	}
	if len(local) > 64 || len(domain) > 255 {
		return "", fmt.Errorf("address %q: too long: %w", truncate(addr, 80), ErrBadAddress)
	}
	if !utf8.ValidString(local) || strings.ContainsAny(local, " \t\"(),:;<>[\\]%!/") {
		return "", fmt.Errorf("address %q: bad local part: %w", truncate(addr, 80), ErrBadAddress)
	}
	if err := CheckDomain(domain); err != nil {
		return "", err
	}
	return addr, nil
}

// CheckDomain validates a lower-case domain name (LDH labels, RFC 1035 §2.3.1).
func CheckDomain(d string) error {
	if d == "" || len(d) > 253 {
		return fmt.Errorf("domain %q: bad length: %w", truncate(d, 80), ErrBadAddress)
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("domain %q: bad label %q: %w", truncate(d, 80), truncate(label, 63), ErrBadAddress)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("domain %q: bad character: %w", truncate(d, 80), ErrBadAddress)
			}
		}
	}
	return nil
}
