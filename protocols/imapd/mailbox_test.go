package imapd

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// codeOf extracts the response code of a command error.
func codeOf(err error) imap.ResponseCode {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

func listNames(t *testing.T, c *imapclient.Client, ref, pattern string, opts *imap.ListOptions) map[string][]imap.MailboxAttr {
	t.Helper()
	l, err := c.List(ref, pattern, opts).Collect()
	if err != nil {
		t.Fatalf("LIST %q %q: %v", ref, pattern, err)
	}
	out := map[string][]imap.MailboxAttr{}
	for _, d := range l {
		if d.Delim != '/' {
			t.Errorf("delimiter %q", d.Delim)
		}
		out[d.Mailbox] = d.Attrs
	}
	return out
}

func keys[M ~map[string]V, V any](m M) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestCapabilities(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []imap.Cap{imap.CapIMAP4rev1, imap.CapIMAP4rev2, imap.CapUIDPlus, imap.CapMove,
		imap.CapSpecialUse, imap.CapNamespace, imap.CapIdle, imap.CapListStatus, imap.CapListExtended,
		imap.CapESearch, imap.CapChildren, "APPENDLIMIT=52428800"} {
		if !caps.Has(want) {
			t.Errorf("missing capability %s in %v", want, caps)
		}
	}
	// CONDSTORE only with an imapserver that speaks it (condstore.go).
	if caps.Has(imap.CapCondStore) != condStoreSupported() {
		t.Errorf("CONDSTORE advertised: %v, library support: %v", caps.Has(imap.CapCondStore), condStoreSupported())
	}
	for _, no := range []imap.Cap{imap.CapLiteralPlus} {
		if caps.Has(no) {
			t.Errorf("unexpected capability %s", no)
		}
	}
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' || ns.Personal[0].Prefix != "" {
		t.Fatalf("namespace %+v %v", ns, err)
	}
}

func TestCreateDeleteRenameList(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	if err := c.Create("Work/2024/Q1", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	all := listNames(t, c, "", "*", nil)
	for _, n := range []string{"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", "Work", "Work/2024", "Work/2024/Q1"} {
		if _, ok := all[n]; !ok {
			t.Errorf("LIST * lacks %s: %v", n, keys(all))
		}
	}
	if !slices.Contains(all["Work"], imap.MailboxAttrHasChildren) || !slices.Contains(all["Work/2024/Q1"], imap.MailboxAttrHasNoChildren) {
		t.Errorf("children attributes: %v %v", all["Work"], all["Work/2024/Q1"])
	}
	if !slices.Contains(all["Sent"], imap.MailboxAttrSent) || !slices.Contains(all["Trash"], imap.MailboxAttrTrash) {
		t.Errorf("special-use attributes: %v %v", all["Sent"], all["Trash"])
	}
	top := listNames(t, c, "", "%", nil)
	if _, ok := top["Work/2024"]; ok || top["Work"] == nil {
		t.Errorf("LIST %% = %v", keys(top))
	}
	if sub := listNames(t, c, "Work/", "%", nil); len(sub) != 1 || sub["Work/2024"] == nil {
		t.Errorf("LIST Work/ %% = %v", keys(sub))
	}
	// LIST "" "" gives the delimiter.
	if l, err := c.List("", "", nil).Collect(); err != nil || len(l) != 1 || l[0].Delim != '/' {
		t.Errorf("LIST \"\" \"\": %v %v", l, err)
	}

	// Errors carry their response codes.
	for _, tc := range []struct {
		name string
		err  error
		code imap.ResponseCode
	}{
		{"create existing", c.Create("Work", nil).Wait(), imap.ResponseCodeAlreadyExists},
		{"create INBOX", c.Create("inbox", nil).Wait(), imap.ResponseCodeAlreadyExists},
		{"create ..", c.Create("Work/../x", nil).Wait(), imap.ResponseCodeCannot},
		{"create empty level", c.Create("a//b", nil).Wait(), imap.ResponseCodeCannot},
		{"create leading /", c.Create("/abs", nil).Wait(), imap.ResponseCodeCannot},
		{"create too long", c.Create(strings.Repeat("x", 300), nil).Wait(), imap.ResponseCodeCannot},
		{"delete INBOX", c.Delete("INBOX").Wait(), imap.ResponseCodeCannot},
		{"delete missing", c.Delete("Nope").Wait(), imap.ResponseCodeNonExistent},
		{"rename missing", c.Rename("Nope", "Nope2", nil).Wait(), imap.ResponseCodeNonExistent},
		{"rename onto existing", c.Rename("Work", "Sent", nil).Wait(), imap.ResponseCodeAlreadyExists},
		{"rename into itself", c.Rename("Work", "Work/x", nil).Wait(), imap.ResponseCodeCannot},
		{"select missing", func() error { _, err := c.Select("Nope", nil).Wait(); return err }(), imap.ResponseCodeNonExistent},
		{"status ..", func() error { _, err := c.Status("../etc", &imap.StatusOptions{NumMessages: true}).Wait(); return err }(), imap.ResponseCodeNonExistent},
	} {
		if tc.err == nil || codeOf(tc.err) != tc.code {
			t.Errorf("%s: got %v, want NO [%s]", tc.name, tc.err, tc.code)
		}
	}
	// A trailing separator on CREATE only declares a parent (RFC 3501 §6.3.3).
	if err := c.Create("Lists/", nil).Wait(); err != nil {
		t.Errorf("CREATE Lists/: %v", err)
	}

	// DELETE keeps children; the parent is then listed \Noselect.
	if err := c.Delete("Work/2024").Wait(); err != nil {
		t.Fatal(err)
	}
	sub := listNames(t, c, "", "Work/%", nil)
	if attrs := sub["Work/2024"]; !slices.Contains(attrs, imap.MailboxAttrNoSelect) {
		t.Errorf("deleted parent: %v", sub)
	}
	// RENAME moves children.
	if err := c.Rename("Work", "Job", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	all = listNames(t, c, "", "*", nil)
	if all["Job/2024/Q1"] == nil || all["Work"] != nil || all["Work/2024/Q1"] != nil {
		t.Errorf("after rename: %v", keys(all))
	}
	// RENAME INBOX moves its messages and leaves INBOX empty.
	e.deliver("Subject: one\r\n\r\nx\r\n")
	if err := c.Rename("INBOX", "Old", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status("Old", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *st.NumMessages != 1 {
		t.Fatalf("Old: %+v %v", st, err)
	}
	st, err = c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || *st.NumMessages != 0 {
		t.Fatalf("INBOX: %+v %v", st, err)
	}
	// Non-ASCII names travel as modified UTF-7 and are stored as UTF-8.
	if err := c.Create("Café/Crème", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if all = listNames(t, c, "", "Caf*", nil); all["Café/Crème"] == nil {
		t.Errorf("UTF-8 names: %v", keys(all))
	}
	if _, err := e.store.Mailbox(e.acct.ID, "Café/Crème"); err != nil {
		t.Errorf("stored name: %v", err)
	}
}

func TestSubscribeStatusSpecialUse(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	e.deliver("Subject: a\r\n\r\nxx\r\n")
	e.appendMsg("INBOX", "Subject: b\r\n\r\nyyyy\r\n", []string{`\Seen`, `\Deleted`}, time.Time{})
	if err := c.Create("Projects/Alpha", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	// New mailboxes start subscribed.
	if err := c.Unsubscribe("Projects").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Unsubscribe("Projects/Alpha").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("Projects/Alpha").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("Missing").Wait(); codeOf(err) != imap.ResponseCodeNonExistent {
		t.Errorf("subscribe missing: %v", err)
	}
	subs := listNames(t, c, "", "*", &imap.ListOptions{SelectSubscribed: true})
	if subs["Projects/Alpha"] == nil || !slices.Contains(subs["Projects/Alpha"], imap.MailboxAttrSubscribed) || subs["Projects"] != nil {
		t.Errorf("LIST (SUBSCRIBED): %v", subs)
	}
	rec := listNames(t, c, "", "%", &imap.ListOptions{SelectSubscribed: true, SelectRecursiveMatch: true})
	if rec["Projects"] == nil {
		t.Errorf("LIST (SUBSCRIBED RECURSIVEMATCH) %%: %v", rec)
	}
	special := listNames(t, c, "", "*", &imap.ListOptions{SelectSpecialUse: true, ReturnSpecialUse: true})
	if want := []string{"Archive", "Drafts", "Junk", "Sent", "Trash"}; !slices.Equal(keys(special), want) {
		t.Errorf("LIST (SPECIAL-USE): %v", keys(special))
	}
	if err := c.Create("Saved", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrFlagged}}).Wait(); err != nil {
		t.Fatalf("CREATE USE: %v", err)
	}
	if special = listNames(t, c, "", "Saved", nil); !slices.Contains(special["Saved"], imap.MailboxAttrFlagged) {
		t.Errorf("created special use: %v", special)
	}
	if err := c.Create("Bad", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrImportant}}).Wait(); codeOf(err) != codeUseAttr {
		t.Errorf("CREATE USE \\Important: %v", err)
	}

	st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true,
		NumUnseen: true, NumDeleted: true, Size: true, AppendLimit: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if *st.NumMessages != 2 || st.UIDNext != 3 || st.UIDValidity == 0 || *st.NumUnseen != 1 || *st.NumDeleted != 1 ||
		*st.Size != int64(len("Subject: a\r\n\r\nxx\r\n")+len("Subject: b\r\n\r\nyyyy\r\n")) || *st.AppendLimit != DefaultAppendLimit {
		t.Errorf("STATUS: %+v", st)
	}
	// LIST-STATUS (RFC 5819).
	l, err := c.List("", "INBOX", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true, NumUnseen: true}}).Collect()
	if err != nil || len(l) != 1 || l[0].Status == nil || *l[0].Status.NumMessages != 2 || *l[0].Status.NumUnseen != 1 {
		t.Fatalf("LIST RETURN (STATUS): %+v %v", l, err)
	}
}
