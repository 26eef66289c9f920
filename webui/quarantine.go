package webui

import (
	"errors"
	"net/http"

	"github.com/tandemmail/tandem/filter/spamstage"
)

// routesQuarantine serves the admin's view of held spam.
func (a *API) routesQuarantine() {
	a.mux.HandleFunc("GET /api/quarantine", a.quarantineList)
	a.mux.HandleFunc("POST /api/quarantine/release", a.quarantineRelease)
	a.mux.HandleFunc("POST /api/quarantine/delete", a.quarantineDelete)
	a.mux.HandleFunc("POST /api/quarantine/digest", a.quarantineDigest)
}

// quarantineItem is a held message with its signed release link.
type quarantineItem struct {
	spamstage.QuarantineRecord
	ReleaseURL string `json:"release_url,omitempty"`
}

// quarantineList lists held mail; ?account=ADDRESS limits it to one user.
func (a *API) quarantineList(w http.ResponseWriter, r *http.Request) {
	e := a.spam(w)
	if e == nil {
		return
	}
	var id uint64
	if addr := r.URL.Query().Get("account"); addr != "" {
		acct, err := a.cfg.Store.AccountByAddress(addr)
		if err != nil {
			a.fail(w, err)
			return
		}
		id = acct.ID
	}
	recs, err := e.Quarantined(id)
	if err != nil {
		a.fail(w, err)
		return
	}
	out := make([]quarantineItem, len(recs))
	for i, rec := range recs {
		out[i].QuarantineRecord = rec
		if a.cfg.PublicURL != nil {
			out[i].ReleaseURL, _ = e.ReleaseURL(r.Context(), a.cfg.PublicURL(), rec.ID)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

type quarantineIDs struct {
	IDs []string `json:"ids"`
}

func (a *API) quarantineAct(w http.ResponseWriter, r *http.Request, act func(*spamstage.Engine, *http.Request, string) (spamstage.QuarantineRecord, error)) {
	e := a.spam(w)
	if e == nil {
		return
	}
	var req quarantineIDs
	if !decode(w, r, &req) {
		return
	}
	if len(req.IDs) == 0 {
		writeError(w, http.StatusBadRequest, errors.New("ids: give at least one quarantine ID (see tandem quarantine list)"))
		return
	}
	var done []spamstage.QuarantineRecord
	for _, id := range req.IDs {
		rec, err := act(e, r, id)
		if errors.Is(err, spamstage.ErrNotHeld) {
			writeError(w, http.StatusNotFound, err)
			return
		}
		if err != nil {
			a.fail(w, err)
			return
		}
		done = append(done, rec)
	}
	writeJSON(w, http.StatusOK, done)
}

func (a *API) quarantineRelease(w http.ResponseWriter, r *http.Request) {
	a.quarantineAct(w, r, func(e *spamstage.Engine, r *http.Request, id string) (spamstage.QuarantineRecord, error) {
		return e.Release(r.Context(), id)
	})
}

func (a *API) quarantineDelete(w http.ResponseWriter, r *http.Request) {
	a.quarantineAct(w, r, func(e *spamstage.Engine, r *http.Request, id string) (spamstage.QuarantineRecord, error) {
		return e.DeleteHeld(r.Context(), id)
	})
}

// quarantineDigest sends the digests now (normally the leader's timer).
func (a *API) quarantineDigest(w http.ResponseWriter, r *http.Request) {
	e := a.spam(w)
	if e == nil {
		return
	}
	base, host := "", "localhost"
	if a.cfg.PublicURL != nil {
		base = a.cfg.PublicURL()
	}
	if a.cfg.Hostname != "" {
		host = a.cfg.Hostname
	}
	n, err := e.SendDigests(r.Context(), base, host)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"sent": n})
}
