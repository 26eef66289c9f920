package webui

// The setup wizard's state (SPEC M1): a fresh node shows the wizard until
// an admin finishes or skips it.
//
//	GET /api/setup   {"done": false, ...}
//	PUT /api/setup   {"done": true}
//
// KV namespace owned here: "web.setup", key "state": SetupState as JSON.
// The flag is replicated, so a wizard finished on one node is finished on
// every node of the cluster.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tandemmail/tandem/storage"
)

// KV home of the wizard state.
const (
	SetupNamespace = "web.setup"
	SetupKey       = "state"
)

// SetupState is the wizard's progress.
type SetupState struct {
	Done        bool      `json:"done"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
}

// LoadSetupState reads the wizard state (not done when never saved).
func LoadSetupState(kv KVReader) (SetupState, error) {
	var s SetupState
	raw, _, ok, err := kv.KVGet(SetupNamespace, SetupKey)
	if err != nil || !ok {
		return s, err
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return SetupState{}, fmt.Errorf("%s/%s: %w", SetupNamespace, SetupKey, err)
	}
	return s, nil
}

// SetupDone tells the pages whether to send an admin to the wizard.
func (a *API) SetupDone() bool {
	s, err := LoadSetupState(a.cfg.Store)
	return err == nil && s.Done
}

func (a *API) routesWizard() {
	a.mux.HandleFunc("GET /api/setup", a.globalAdminOnly(func(w http.ResponseWriter, r *http.Request) {
		s, err := LoadSetupState(a.cfg.Store)
		if err != nil {
			a.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, s)
	}))
	a.mux.HandleFunc("PUT /api/setup", a.globalAdminOnly(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Done *bool `json:"done"`
		}
		if !decode(w, r, &req) {
			return
		}
		if req.Done == nil {
			writeError(w, http.StatusBadRequest, errors.New(`give {"done": true} to finish the wizard or {"done": false} to show it again`))
			return
		}
		s := SetupState{Done: *req.Done}
		if s.Done {
			s.CompletedAt = time.Now().UTC()
		}
		raw, _ := json.Marshal(s)
		if err := a.cfg.Store.KVApply(r.Context(), storage.KVOp{Op: storage.KVPut, NS: SetupNamespace, Key: SetupKey, Value: raw}); err != nil {
			a.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, s)
	}))
}

// AddSetupPages adds the setup wizard (/setup), the network tools page
// (/tools) and the system page (/system: remote management, certificate,
// settings file) to the web admin; all are for global administrators. The
// dashboard should send an admin to /setup while SetupDone is false.
func (wb *Web) AddSetupPages() error {
	for _, p := range []Page{
		{Name: "wizard", Path: "/setup", Title: "wizard.title", NavKey: "nav.setup", GlobalOnly: true},
		{Name: "tools", Path: "/tools", Title: "tools.title", NavKey: "nav.tools", GlobalOnly: true},
		{Name: "tools_system", Path: "/system", Title: "system.title", NavKey: "nav.system", GlobalOnly: true},
	} {
		if err := wb.AddPage(p); err != nil {
			return err
		}
	}
	return nil
}

// SetupDone reports whether the setup wizard was finished (KV web.setup).
func (wb *Web) SetupDone() bool {
	s, err := LoadSetupState(wb.cfg.Store)
	return err == nil && s.Done
}
