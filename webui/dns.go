package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tandemmail/tandem/protocols/dnsd"
	"github.com/tandemmail/tandem/storage"
)

// DNSRecordView is a zone record as the API shows it; Auto marks the records
// the server derives (SOA, NS, mail host, MX, SPF, DMARC, DKIM), which the
// admin replaces by adding a record of the same name and type.
type DNSRecordView struct {
	dnsd.Record
	Auto bool `json:"auto"`
}

// DNSZoneView is GET /api/dns/{domain}/records.
type DNSZoneView struct {
	Domain   string          `json:"domain"`
	Serial   uint32          `json:"serial"`
	Records  []DNSRecordView `json:"records"`
	ZoneFile string          `json:"zone_file"`
}

// DNSSetRequest is PUT /api/dns/{domain}/records: the admin's records of
// Name and Type become exactly Values (an edit; it also overrides the derived
// records of that name and type).
type DNSSetRequest struct {
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	TTL    uint32   `json:"ttl"`
	Values []string `json:"values"`
}

// DNSPublishView is GET /api/domains/{name}/dns.
type DNSPublishView struct {
	Domain  string        `json:"domain"`
	Records []dnsd.Record `json:"records"`
	Notes   []string      `json:"notes,omitempty"` // what the admin must fix first
}

// publishNotes flags an MX target inside the domain with no address: the
// node was started without --dns-host-ip or --vip.
func publishNotes(rs []dnsd.Record) []string {
	addr := map[string]bool{}
	for _, r := range rs {
		if r.Type == "A" || r.Type == "AAAA" || r.Type == "CNAME" {
			addr[r.Name] = true
		}
	}
	var notes []string
	for _, r := range rs {
		f := strings.Fields(r.Value)
		if r.Type == "MX" && len(f) == 2 && strings.HasSuffix(f[1], "."+r.Name) && !addr[f[1]] {
			notes = append(notes, "the mail host "+f[1]+" has no address: start the server with --dns-host-ip (or --vip), or publish its A/AAAA records yourself")
		}
	}
	return notes
}

// DNSCheckView is GET /api/domains/{name}/dns/check.
type DNSCheckView struct {
	Domain   string             `json:"domain"`
	Resolver string             `json:"resolver"`
	OK       bool               `json:"ok"`
	Results  []dnsd.CheckResult `json:"results"`
}

// routesDNS: the built-in DNS server's zones (SPEC D1) and the check of a
// domain whose DNS is hosted elsewhere.
func (a *API) routesDNS() {
	zones := func(w http.ResponseWriter) *dnsd.KVZones {
		if a.cfg.DNSZones == nil {
			writeError(w, http.StatusServiceUnavailable, errors.New("DNS zones are not available on this node"))
		}
		return a.cfg.DNSZones
	}
	fail := func(w http.ResponseWriter, err error) {
		var re *dnsd.RecordError
		switch {
		case errors.Is(err, dnsd.ErrNoZone), errors.Is(err, dnsd.ErrNoRecord):
			writeError(w, http.StatusNotFound, err)
		case errors.Is(err, dnsd.ErrRecordExists):
			writeError(w, http.StatusConflict, err)
		case errors.Is(err, storage.ErrKVConflict):
			// Five retries lost to concurrent edits of the same zone.
			writeError(w, http.StatusConflict, fmt.Errorf("%w (the zone is being edited concurrently; try again)", err))
		case errors.As(err, &re):
			writeError(w, http.StatusBadRequest, err)
		default:
			a.fail(w, err)
		}
	}
	view := func(w http.ResponseWriter, z *dnsd.KVZones, domain string, code int) {
		zone, err := z.Zone(domain)
		if err != nil {
			fail(w, err)
			return
		}
		admin, err := z.Records(domain)
		if err != nil {
			fail(w, err)
			return
		}
		mine := map[dnsd.Record]bool{}
		for _, r := range admin {
			mine[r] = true
		}
		v := DNSZoneView{Domain: strings.TrimSuffix(zone.Origin, "."), Serial: zone.Serial, ZoneFile: zone.ZoneFile(),
			Records: []DNSRecordView{}}
		for _, r := range zone.Records {
			v.Records = append(v.Records, DNSRecordView{Record: r, Auto: !mine[r]})
		}
		writeJSON(w, code, v)
	}
	a.mux.HandleFunc("GET /api/dns/{domain}/records", func(w http.ResponseWriter, r *http.Request) {
		if z := zones(w); z != nil {
			view(w, z, r.PathValue("domain"), http.StatusOK)
		}
	})
	a.mux.HandleFunc("POST /api/dns/{domain}/records", func(w http.ResponseWriter, r *http.Request) {
		z := zones(w)
		if z == nil {
			return
		}
		var req dnsd.Record
		if !decode(w, r, &req) {
			return
		}
		if _, err := z.AddRecord(r.Context(), r.PathValue("domain"), req); err != nil {
			fail(w, err)
			return
		}
		view(w, z, r.PathValue("domain"), http.StatusCreated)
	})
	a.mux.HandleFunc("PUT /api/dns/{domain}/records", func(w http.ResponseWriter, r *http.Request) {
		z := zones(w)
		if z == nil {
			return
		}
		var req DNSSetRequest
		if !decode(w, r, &req) {
			return
		}
		if _, err := z.SetRecords(r.Context(), r.PathValue("domain"), req.Name, req.Type, req.TTL, req.Values); err != nil {
			fail(w, err)
			return
		}
		view(w, z, r.PathValue("domain"), http.StatusOK)
	})
	a.mux.HandleFunc("DELETE /api/dns/{domain}/records", func(w http.ResponseWriter, r *http.Request) {
		z := zones(w)
		if z == nil {
			return
		}
		q := r.URL.Query()
		if q.Get("name") == "" || q.Get("type") == "" {
			writeError(w, http.StatusBadRequest, errors.New("give the record's name and type (query parameters name, type and optionally value)"))
			return
		}
		if _, err := z.DeleteRecords(r.Context(), r.PathValue("domain"), q.Get("name"), q.Get("type"), q.Get("value")); err != nil {
			fail(w, err)
			return
		}
		view(w, z, r.PathValue("domain"), http.StatusOK)
	})
	a.mux.HandleFunc("GET /api/domains/{name}/dns", func(w http.ResponseWriter, r *http.Request) {
		z := zones(w)
		if z == nil {
			return
		}
		rs, err := z.Published(r.PathValue("name"))
		if err != nil {
			fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, DNSPublishView{Domain: strings.ToLower(strings.TrimSuffix(r.PathValue("name"), ".")), Records: rs,
			Notes: publishNotes(rs)})
	})
	a.mux.HandleFunc("GET /api/domains/{name}/dns/check", func(w http.ResponseWriter, r *http.Request) {
		z := zones(w)
		if z == nil {
			return
		}
		rs, err := z.Published(r.PathValue("name"))
		if err != nil {
			fail(w, err)
			return
		}
		resolver := r.URL.Query().Get("resolver")
		if resolver == "" {
			resolver = a.cfg.DNSResolver
		}
		lookup, err := dnsd.ResolverLookup(resolver)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if resolver == "" {
			resolver = "/etc/resolv.conf"
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		v := DNSCheckView{Domain: strings.ToLower(strings.TrimSuffix(r.PathValue("name"), ".")), Resolver: resolver, OK: true,
			Results: dnsd.CheckRecords(ctx, rs, lookup)}
		for _, res := range v.Results {
			if res.Status != dnsd.CheckPresent {
				v.OK = false
			}
		}
		writeJSON(w, http.StatusOK, v)
	})
}
