package webui

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tandemmail/tandem/filter/dkimsign"
)

// dkimKeyView is a DKIM key as the API shows it: never the private key.
type dkimKeyView struct {
	Domain    string `json:"domain"`
	Selector  string `json:"selector"`
	Algorithm string `json:"algorithm"`
	State     string `json:"state"`
	Created   int64  `json:"created"`
	Activated int64  `json:"activated,omitempty"`
	Retired   int64  `json:"retired,omitempty"`
	DNSName   string `json:"dns_name"` // where the TXT record lives
	PublicTXT string `json:"public_txt"`
}

func dkimViews(recs []dkimsign.KeyRecord) []dkimKeyView {
	out := make([]dkimKeyView, 0, len(recs))
	for _, r := range recs {
		out = append(out, dkimKeyView{Domain: r.Domain, Selector: r.Selector, Algorithm: r.Algorithm, State: r.State,
			Created: r.Created, Activated: r.Activated, Retired: r.Retired,
			DNSName: r.Selector + "._domainkey." + r.Domain, PublicTXT: r.PublicTXT})
	}
	return out
}

// routesDKIM: DKIM keys and their rotation (SPEC S1).
func (a *API) routesDKIM() {
	keys := dkimsign.NewKeys(a.cfg.Store)
	fail := func(w http.ResponseWriter, err error) {
		switch {
		case errors.Is(err, dkimsign.ErrNoDomain), errors.Is(err, dkimsign.ErrNoKey):
			writeError(w, http.StatusNotFound, err)
		case errors.Is(err, dkimsign.ErrPending), errors.Is(err, dkimsign.ErrNotPublishable):
			writeError(w, http.StatusConflict, err)
		default:
			a.fail(w, err)
		}
	}
	list := func(w http.ResponseWriter, domain string) {
		recs, err := keys.List(domain)
		if err != nil {
			fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, dkimViews(recs))
	}
	a.mux.HandleFunc("GET /api/dkim", func(w http.ResponseWriter, r *http.Request) {
		list(w, r.URL.Query().Get("domain"))
	})
	a.mux.HandleFunc("GET /api/dkim/{domain}", func(w http.ResponseWriter, r *http.Request) {
		d := r.PathValue("domain")
		if !a.cfg.Store.HasDomain(d) {
			fail(w, fmt.Errorf("%w: %s", dkimsign.ErrNoDomain, d))
			return
		}
		list(w, d)
	})
	a.mux.HandleFunc("POST /api/dkim/{domain}/rotate", func(w http.ResponseWriter, r *http.Request) {
		recs, err := keys.Rotate(r.Context(), r.PathValue("domain"), time.Now())
		if err != nil {
			fail(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, dkimViews(recs))
	})
	a.mux.HandleFunc("POST /api/dkim/{domain}/activate/{selector}", func(w http.ResponseWriter, r *http.Request) {
		recs, err := keys.Activate(r.Context(), r.PathValue("domain"), r.PathValue("selector"), time.Now())
		if err != nil {
			fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, dkimViews(recs))
	})
}
