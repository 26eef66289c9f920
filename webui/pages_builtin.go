package webui

import (
	"net/http"
	"time"

	"github.com/tandemmail/tandem/storage"
)

// builtinPages are the web admin's own pages (SPEC W1); other features
// add theirs with AddPage.
func (wb *Web) builtinPages() []Page {
	return append([]Page{
		{Name: "login", Path: "/login", Title: "login.title", Public: true},
		{Name: "dashboard", Path: "/", Title: "dashboard.title", NavKey: "nav.dashboard", Data: wb.dashboardData},
		{Name: "domains", Path: "/domains", Title: "domains.title", NavKey: "nav.domains"},
		{Name: "accounts", Path: "/accounts", Title: "accounts.title", NavKey: "nav.accounts", Data: wb.domainChoice},
		{Name: "aliases", Path: "/aliases", Title: "aliases.title", NavKey: "nav.aliases"},
		{Name: "queue", Path: "/queue", Title: "queue.title", NavKey: "nav.queue"},
		{Name: "maillog", Path: "/log", Title: "log.title", NavKey: "nav.log"},
		{Name: "security", Path: "/security", Title: "security.title", NavKey: "nav.security", GlobalOnly: true},
		{Name: "cluster", Path: "/status/cluster", Title: "cluster.title", NavKey: "nav.cluster", GlobalOnly: true, Data: wb.clusterData},
	}, wb.morePages()...) // DNS and Filters: webui/pages_more.go
}

type dashboard struct {
	Status                                 any
	QueueSize                              int
	Received, Delivered, Bounced, Rejected int
	Alerts                                 []storage.LogRecord
	Domains                                []string
	SetupPending                           bool // the setup wizard (webui/wizard.go) is not finished
}

// dashboardData counts today's mail from the mail log and lists recent
// problems (bounces, rejections, deferrals), scoped to the admin.
func (wb *Web) dashboardData(r *http.Request) (any, error) {
	p := PrincipalFrom(r.Context())
	d := &dashboard{Domains: p.Domains}
	if p.Global && wb.cfg.Status != nil {
		d.Status = wb.cfg.Status()
	}
	if p.Global && wb.hasPage("wizard") {
		d.SetupPending = !wb.SetupDone()
	}
	q, err := wb.cfg.Store.Queue()
	if err != nil {
		return nil, err
	}
	for _, e := range q {
		if p.Global || queueEntryAllowed(p, e) {
			d.QueueSize++
		}
	}
	now := time.Now()
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	recs, err := wb.cfg.Store.LogSearch(storage.LogQuery{Since: midnight, Limit: 200000})
	if err != nil {
		return nil, err
	}
	for _, l := range recs {
		if !p.Global && !logRecordAllowed(p, l) {
			continue
		}
		switch l.Event {
		case "received":
			d.Received++
		case "delivered":
			d.Delivered++
		case "bounced":
			d.Bounced++
		case "rejected":
			d.Rejected++
		}
		if (l.Event == "bounced" || l.Event == "rejected" || l.Event == "deferred") && len(d.Alerts) < 8 {
			d.Alerts = append(d.Alerts, l)
		}
	}
	return d, nil
}

// domainChoice gives the accounts page the domains to pick from.
func (wb *Web) domainChoice(r *http.Request) (any, error) {
	p := PrincipalFrom(r.Context())
	ds, err := wb.cfg.Store.Domains()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range ds {
		if p.AllowsDomain(d.Name) {
			out = append(out, d.Name)
		}
	}
	return out, nil
}

func (wb *Web) clusterData(r *http.Request) (any, error) {
	if wb.cfg.Cluster == nil {
		return nil, nil
	}
	return wb.cfg.Cluster(r.Context()), nil
}
