package storage

import (
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// applier runs the commands of one batch inside its transaction.
type applier struct {
	tx *bolt.Tx
	ch *changeSet
}

func (a applier) b(name []byte) *bolt.Bucket { return a.tx.Bucket(name) }

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

func (a applier) addDomain(c addDomainCmd) any {
	d := a.b(bktDomains)
	if d.Get([]byte(c.Name)) != nil {
		return fmt.Errorf("domain %s: %w", c.Name, ErrExists)
	}
	if err := putJSON(d, []byte(c.Name), domainRec{Name: c.Name, Created: c.Now}); err != nil {
		return err
	}
	return nil
}

func (a applier) delDomain(c delDomainCmd) any {
	d := a.b(bktDomains)
	if d.Get([]byte(c.Name)) == nil {
		return fmt.Errorf("domain %s: %w", c.Name, ErrNoDomain)
	}
	n := 0
	cur := a.b(bktAccounts).Cursor()
	for k, _ := cur.First(); k != nil; k, _ = cur.Next() {
		if domainOf(string(k)) == c.Name {
			n++
		}
	}
	if n > 0 {
		return fmt.Errorf("domain %s has %d accounts; delete them first: %w", c.Name, n, ErrNotEmpty)
	}
	// Aliases of the domain go with it.
	al := a.b(bktAliases)
	var drop [][]byte
	cur = al.Cursor()
	for k, _ := cur.First(); k != nil; k, _ = cur.Next() {
		if domainOf(string(k)) == c.Name {
			drop = append(drop, append([]byte(nil), k...))
		}
	}
	for _, k := range drop {
		if err := al.Delete(k); err != nil {
			return err
		}
	}
	return d.Delete([]byte(c.Name))
}

func (a applier) setCatchAll(c setCatchAllCmd) any {
	d := a.b(bktDomains)
	var rec domainRec
	if ok, err := getJSON(d, []byte(c.Domain), &rec); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("domain %s: %w", c.Domain, ErrNoDomain)
	}
	rec.CatchAll = c.Target
	return putJSON(d, []byte(c.Domain), rec)
}

// The mailboxes every account starts with (RFC 6154 SPECIAL-USE).
var defaultMailboxes = []struct{ name, use string }{
	{"INBOX", ""},
	{"Archive", `\Archive`},
	{"Drafts", `\Drafts`},
	{"Junk", `\Junk`},
	{"Sent", `\Sent`},
	{"Trash", `\Trash`},
}

func (a applier) addAccount(c addAccountCmd) any {
	dom := domainOf(c.Address)
	if a.b(bktDomains).Get([]byte(dom)) == nil {
		return fmt.Errorf("account %s: domain %s: %w", c.Address, dom, ErrNoDomain)
	}
	accts := a.b(bktAccounts)
	if accts.Get([]byte(c.Address)) != nil {
		return fmt.Errorf("account %s: %w", c.Address, ErrExists)
	}
	if a.b(bktAliases).Get([]byte(c.Address)) != nil {
		return fmt.Errorf("account %s: an alias has this address: %w", c.Address, ErrExists)
	}
	meta := a.b(bktMeta)
	id := getU64(meta, keyNextAccount) + 1
	if err := putU64(meta, keyNextAccount, id); err != nil {
		return err
	}
	rec := accountRec{ID: id, Address: c.Address, Domain: dom, Hash: c.Hash,
		DisplayName: c.DisplayName, Quota: c.Quota, Admin: c.Admin, Created: c.Now}
	if err := putJSON(accts, []byte(c.Address), rec); err != nil {
		return err
	}
	if err := a.b(bktAccountIDs).Put(u64(id), []byte(c.Address)); err != nil {
		return err
	}
	for _, mb := range defaultMailboxes {
		if _, err := a.newMailbox(id, mb.name, mb.use, c.Now, true); err != nil {
			return err
		}
	}
	return accountFromRec(rec)
}

func (a applier) account(addr string) (accountRec, error) {
	var rec accountRec
	ok, err := getJSON(a.b(bktAccounts), []byte(addr), &rec)
	if err != nil {
		return rec, err
	}
	if !ok {
		return rec, fmt.Errorf("account %s: %w", addr, ErrNoAccount)
	}
	return rec, nil
}

func (a applier) accountByID(id uint64) (accountRec, error) {
	addr := a.b(bktAccountIDs).Get(u64(id))
	if addr == nil {
		return accountRec{}, fmt.Errorf("account #%d: %w", id, ErrNoAccount)
	}
	return a.account(string(addr))
}

func (a applier) delAccount(c delAccountCmd) any {
	rec, err := a.account(c.Address)
	if err != nil {
		return err
	}
	for _, mb := range a.mailboxesOf(rec.ID) {
		if err := a.dropMailbox(mb); err != nil {
			return err
		}
	}
	if err := a.b(bktAccountIDs).Delete(u64(rec.ID)); err != nil {
		return err
	}
	return a.b(bktAccounts).Delete([]byte(c.Address))
}

func (a applier) setPassword(c setPasswordCmd) any {
	rec, err := a.account(c.Address)
	if err != nil {
		return err
	}
	rec.Hash = c.Hash
	return putJSON(a.b(bktAccounts), []byte(c.Address), rec)
}

func (a applier) updateAccount(c updateAccountCmd) any {
	rec, err := a.account(c.Address)
	if err != nil {
		return err
	}
	if c.DisplayName != nil {
		rec.DisplayName = *c.DisplayName
	}
	if c.Quota != nil {
		rec.Quota = *c.Quota
	}
	if c.Admin != nil {
		rec.Admin = *c.Admin
	}
	if err := putJSON(a.b(bktAccounts), []byte(c.Address), rec); err != nil {
		return err
	}
	return accountFromRec(rec)
}

func (a applier) addAlias(c addAliasCmd) any {
	dom := domainOf(c.Address)
	if a.b(bktDomains).Get([]byte(dom)) == nil {
		return fmt.Errorf("alias %s: domain %s: %w", c.Address, dom, ErrNoDomain)
	}
	if a.b(bktAccounts).Get([]byte(c.Address)) != nil {
		return fmt.Errorf("alias %s: an account has this address: %w", c.Address, ErrExists)
	}
	// Adding to an existing alias extends its target list.
	var rec aliasRec
	if _, err := getJSON(a.b(bktAliases), []byte(c.Address), &rec); err != nil {
		return err
	}
	rec.Address = c.Address
	for _, t := range c.Targets {
		dup := false
		for _, have := range rec.Targets {
			if have == t {
				dup = true
			}
		}
		if !dup {
			rec.Targets = append(rec.Targets, t)
		}
	}
	return putJSON(a.b(bktAliases), []byte(c.Address), rec)
}

func (a applier) delAlias(c delAliasCmd) any {
	al := a.b(bktAliases)
	if al.Get([]byte(c.Address)) == nil {
		return fmt.Errorf("alias %s: %w", c.Address, ErrNoAlias)
	}
	return al.Delete([]byte(c.Address))
}
