package spamstage

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tandemmail/tandem/filter"
	"github.com/tandemmail/tandem/filter/spam"
	"github.com/tandemmail/tandem/storage"
)

// QuarantineRecord is the value of a quarantine key "ACCOUNTID/BLOBSHA".
// The message itself sits in the account's storage.QuarantineMailbox, so
// its blob stays referenced (the sweeper keeps it) and replicated.
type QuarantineRecord struct {
	ID        string  `json:"id"` // the key
	AccountID uint64  `json:"account_id"`
	Address   string  `json:"address"`
	Blob      string  `json:"blob"`
	From      string  `json:"from"`
	Subject   string  `json:"subject"`
	Score     float64 `json:"score"`
	Reason    string  `json:"reason"`
	MsgID     string  `json:"msg_id"` // the transaction's ID in the mail log
	Held      int64   `json:"held"`   // unix seconds
}

// ErrNotHeld: no such quarantined message.
var ErrNotHeld = errors.New("no such quarantined message")

func quarantineKey(accountID uint64, blob string) string {
	return strconv.FormatUint(accountID, 10) + "/" + blob
}

// hold writes the record of one held copy.
func (e *Engine) hold(ctx context.Context, env *filter.Envelope, d filter.Disposition) error {
	acct, err := e.st.AccountByID(d.AccountID)
	if err != nil {
		return err
	}
	rec := QuarantineRecord{ID: quarantineKey(d.AccountID, d.Blob), AccountID: d.AccountID, Address: acct.Address,
		Blob: d.Blob, Reason: d.Reason, MsgID: env.ID, Held: e.cfg.Now().Unix()}
	if f, err := e.st.OpenBlob(d.Blob); err == nil {
		h, _ := readHeader(f)
		f.Close()
		dec := new(mime.WordDecoder)
		rec.From = decodeWords(dec, h.Get("From"))
		rec.Subject = decodeWords(dec, h.Get("Subject"))
		if sc, err := strconv.ParseFloat(strings.TrimSpace(h.Get("X-Spam-Score")), 64); err == nil {
			rec.Score = sc
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return e.st.KVPutValue(ctx, NSQuarantine, rec.ID, b)
}

func decodeWords(dec *mime.WordDecoder, s string) string {
	if d, err := dec.DecodeHeader(s); err == nil {
		s = d
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// Quarantined lists held messages, of one account (accountID > 0) or all,
// oldest first.
func (e *Engine) Quarantined(accountID uint64) ([]QuarantineRecord, error) {
	prefix := ""
	if accountID != 0 {
		prefix = strconv.FormatUint(accountID, 10) + "/"
	}
	var out []QuarantineRecord
	err := e.st.KVList(NSQuarantine, prefix, func(_ string, v []byte, _ uint64) error {
		var r QuarantineRecord
		if json.Unmarshal(v, &r) == nil {
			out = append(out, r)
		}
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Held < out[j].Held })
	return out, err
}

// QuarantineGet reads one record.
func (e *Engine) QuarantineGet(id string) (QuarantineRecord, error) {
	v, _, ok, err := e.st.KVGet(NSQuarantine, id)
	if err != nil {
		return QuarantineRecord{}, err
	}
	if !ok {
		return QuarantineRecord{}, fmt.Errorf("quarantine %q: %w", id, ErrNotHeld)
	}
	var r QuarantineRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return QuarantineRecord{}, fmt.Errorf("quarantine %q: %w", id, err)
	}
	return r, nil
}

// heldUIDs finds the copies of a blob in the account's quarantine mailbox.
func (e *Engine) heldUIDs(r QuarantineRecord) (storage.Mailbox, []uint32, error) {
	mb, err := e.st.Mailbox(r.AccountID, storage.QuarantineMailbox)
	if err != nil {
		return mb, nil, err
	}
	msgs, err := e.st.Messages(mb.ID)
	if err != nil {
		return mb, nil, err
	}
	var uids []uint32
	for _, m := range msgs {
		if m.Blob == r.Blob {
			uids = append(uids, m.UID)
		}
	}
	return mb, uids, nil
}

// Release moves a held message to INBOX, trains it as ham (the user says
// it is not spam) and removes the record.
func (e *Engine) Release(ctx context.Context, id string) (QuarantineRecord, error) {
	r, err := e.QuarantineGet(id)
	if err != nil {
		return r, err
	}
	mb, uids, err := e.heldUIDs(r)
	if err != nil && !errors.Is(err, storage.ErrNoMailbox) {
		return r, fmt.Errorf("release %s: %w", id, err)
	}
	if len(uids) > 0 {
		inbox, err := e.st.Mailbox(r.AccountID, "INBOX")
		if err != nil {
			return r, fmt.Errorf("release %s: %w", id, err)
		}
		if _, _, _, err := e.st.Move(ctx, mb.ID, uids, inbox.ID); err != nil {
			return r, fmt.Errorf("release %s: move to INBOX: %w", id, err)
		}
		if err := e.trainBlob(ctx, r.Blob, spam.Ham, "release"); err != nil {
			e.log.Warn("released message not learned as ham", "id", id, "err", err)
		}
	}
	if err := e.st.KVDeleteKey(ctx, NSQuarantine, id); err != nil {
		return r, fmt.Errorf("release %s: %w", id, err)
	}
	if len(uids) == 0 {
		return r, fmt.Errorf("release %s: message no longer held: %w", id, ErrNotHeld)
	}
	return r, nil
}

// DeleteHeld removes a held message for good.
func (e *Engine) DeleteHeld(ctx context.Context, id string) (QuarantineRecord, error) {
	r, err := e.QuarantineGet(id)
	if err != nil {
		return r, err
	}
	mb, uids, err := e.heldUIDs(r)
	if err != nil && !errors.Is(err, storage.ErrNoMailbox) {
		return r, fmt.Errorf("delete %s: %w", id, err)
	}
	if len(uids) > 0 {
		if _, err := e.st.Expunge(ctx, mb.ID, uids, false); err != nil {
			return r, fmt.Errorf("delete %s: %w", id, err)
		}
	}
	if err := e.st.KVDeleteKey(ctx, NSQuarantine, id); err != nil {
		return r, fmt.Errorf("delete %s: %w", id, err)
	}
	return r, nil
}

// trainBlob learns a stored message.
func (e *Engine) trainBlob(ctx context.Context, sha string, class spam.Class, source string) error {
	f, err := e.st.OpenBlob(sha)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, e.cfg.Classifier.Limits.MaxBytes+1<<20))
	if err != nil {
		return err
	}
	key := TrainKeyReader(strings.NewReader(string(b)), sha)
	_, err = e.Train(ctx, []Item{{Key: key, Message: b, Class: class, Source: source}})
	return err
}

// TrainStored learns stored messages by blob (IMAP moves, the web).
func (e *Engine) TrainStored(ctx context.Context, blobs []string, class spam.Class, source string) error {
	var errs []error
	for _, sha := range blobs {
		if err := e.trainBlob(ctx, sha, class, source); err != nil {
			errs = append(errs, fmt.Errorf("learn %s: %w", sha[:min(12, len(sha))], err))
		}
	}
	return errors.Join(errs...)
}

// signingKey reads the release-link key, creating it on first use.
func (e *Engine) signingKey(ctx context.Context) ([]byte, error) {
	for i := 0; i < 3; i++ {
		v, _, ok, err := e.st.KVGet(NSQuarantineKey, "hmac")
		if err != nil {
			return nil, err
		}
		if ok && len(v) >= 32 {
			return v, nil
		}
		k := make([]byte, 32)
		rand.Read(k)
		err = e.st.KVApply(ctx, storage.KVOp{Op: storage.KVPut, NS: NSQuarantineKey, Key: "hmac", Value: k, IfVersion: storage.Version(0)})
		if err == nil {
			return k, nil
		}
		if !errors.Is(err, storage.ErrKVConflict) {
			return nil, fmt.Errorf("create release key: %w", err)
		}
		time.Sleep(50 * time.Millisecond) // another node created it: read it once replicated
	}
	return nil, errors.New("release key: not readable yet")
}

// Sign returns the signature of a release link for id.
func (e *Engine) Sign(ctx context.Context, id string) (string, error) {
	k, err := e.signingKey(ctx)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte("release\x00" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

// Verify checks a release link's signature in constant time.
func (e *Engine) Verify(ctx context.Context, id, sig string) bool {
	want, err := e.Sign(ctx, id)
	if err != nil {
		return false
	}
	return hmac.Equal([]byte(want), []byte(sig))
}

// ReleaseURL is the signed link for a held message under base (the
// node's public HTTP URL).
func (e *Engine) ReleaseURL(ctx context.Context, base, id string) (string, error) {
	sig, err := e.Sign(ctx, id)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(base, "/") + "/quarantine/release?id=" + url.QueryEscape(id) + "&sig=" + sig, nil
}
