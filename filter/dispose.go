package filter

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tandemmail/tandem/storage"
)

// MailboxDeliverer is implemented by stores that can deliver into a named
// mailbox (*storage.Store). Without it every copy goes to INBOX.
type MailboxDeliverer interface {
	DeliverTo(ctx context.Context, b *storage.Blob, targets []storage.Target, internalDate time.Time) error
}

// deliverLocal commits the message for the local accounts, routed by the
// Disposer when there is one: per account a mailbox, a tagged copy or
// nothing. One message may thus reach INBOX for one user and Junk for
// another (per-recipient spam policy, SPEC F2).
func (d *Delivery) deliverLocal(ctx context.Context, blob *storage.Blob) error {
	accounts := dedup(d.accounts)
	disp := d.p.cfg.Checks.Dispose
	if disp == nil {
		if err := d.p.cfg.Store.Deliver(ctx, blob, accounts, d.p.cfg.Now()); err != nil {
			return storageReject(fmt.Errorf("deliver %s: %w", d.env.ID, err))
		}
		return nil
	}
	ds := disp.Dispose(ctx, d.env, d.Verdicts(), accounts)
	byAccount := make(map[uint64]Disposition, len(ds))
	for _, x := range ds {
		byAccount[x.AccountID] = x
	}
	// Group the copies by subject tag: each distinct tag is one blob.
	type group struct {
		blob    *storage.Blob
		targets []storage.Target
		idx     []int
	}
	groups := map[string]*group{}
	var order []string
	out := make([]Disposition, 0, len(accounts))
	for _, id := range accounts {
		x, ok := byAccount[id]
		if !ok {
			x = Disposition{AccountID: id}
		}
		out = append(out, x)
		if x.Drop {
			d.p.log.Info("message dropped by policy", "msg_id", d.env.ID, "account", id, "reason", x.Reason)
			continue
		}
		g := groups[x.SubjectTag]
		if g == nil {
			g = &group{}
			groups[x.SubjectTag] = g
			order = append(order, x.SubjectTag)
		}
		g.targets = append(g.targets, storage.Target{AccountID: id, Mailbox: x.Mailbox, SpecialUse: x.SpecialUse})
		g.idx = append(g.idx, len(out)-1)
	}
	md, canRoute := d.p.cfg.Store.(MailboxDeliverer)
	for _, tag := range order {
		g := groups[tag]
		b := blob
		if tag != "" {
			nb, err := d.tagSubject(blob, tag)
			if err != nil {
				return storageReject(fmt.Errorf("tag subject of %s: %w", d.env.ID, err))
			}
			defer nb.Release()
			b = nb
		}
		var err error
		if canRoute {
			err = md.DeliverTo(ctx, b, g.targets, d.p.cfg.Now())
		} else {
			ids := make([]uint64, len(g.targets))
			for i, t := range g.targets {
				ids[i] = t.AccountID
			}
			err = d.p.cfg.Store.Deliver(ctx, b, ids, d.p.cfg.Now())
		}
		if err != nil {
			return storageReject(fmt.Errorf("deliver %s: %w", d.env.ID, err))
		}
		for _, i := range g.idx {
			out[i].Blob = b.SHA
		}
	}
	disp.Delivered(ctx, d.env, out)
	return nil
}

// tagSubject stores a copy of blob whose Subject field starts with tag. A
// message without a Subject gets one. Only the field's first line changes,
// so folding and encoded words (RFC 2047 §5: separated by whitespace) stay
// valid.
func (d *Delivery) tagSubject(blob *storage.Blob, tag string) (*storage.Blob, error) {
	f, err := d.p.cfg.Store.OpenBlob(blob.SHA)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head, rest, err := TagSubject(f, tag, d.p.cfg.MaxHeaderBytes)
	if err != nil {
		return nil, err
	}
	return d.p.cfg.Store.PutBlob(io.MultiReader(bytes.NewReader(head), rest))
}

// TagSubject reads the header section of msg (at most limit bytes) and
// returns it with tag put in front of the Subject field's value, plus a
// reader for the rest of the message. Without a Subject field one is
// added at the end of the header section.
func TagSubject(msg io.Reader, tag string, limit int64) ([]byte, io.Reader, error) {
	br := bufio.NewReader(msg)
	var head bytes.Buffer
	tagged := false
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// An over-long line: copy it through unchanged.
			head.Write(line)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				head.Write(line)
			}
			if err != nil && err != io.EOF {
				return nil, nil, err
			}
			continue
		}
		if err != nil && err != io.EOF {
			return nil, nil, err
		}
		end := len(line) == 0 || string(line) == "\r\n" || string(line) == "\n"
		if end {
			if !tagged {
				head.WriteString("Subject: " + strings.TrimSpace(tag) + "\r\n")
			}
			head.Write(line)
			break
		}
		if !tagged && len(line) > 8 && strings.EqualFold(string(line[:8]), "subject:") {
			v := line[8:]
			head.WriteString(string(line[:8]) + " " + strings.TrimSpace(tag))
			if len(v) > 0 && v[0] != ' ' && v[0] != '\t' && v[0] != '\r' && v[0] != '\n' {
				head.WriteByte(' ')
			}
			head.Write(v)
			tagged = true
		} else {
			head.Write(line)
		}
		if limit > 0 && int64(head.Len()) > limit {
			return nil, nil, fmt.Errorf("header section over %d bytes", limit)
		}
		if err == io.EOF {
			break
		}
	}
	return head.Bytes(), br, nil
}
