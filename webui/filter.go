package webui

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/tandemmail/tandem/filter/spamstage"
)

// maxClassify bounds one message given to the classifier; the tokenizer
// reads at most 1 MiB of it anyway.
const maxClassify = 64 << 20

// maxTrainBatch bounds the messages of one training request; the CLI
// sends a few dozen at a time to show progress.
const maxTrainBatch = 500

// routesFilter serves the spam filter's admin endpoints.
func (a *API) routesFilter() {
	a.mux.HandleFunc("POST /api/filter/classify", a.filterClassify)
	a.mux.HandleFunc("POST /api/filter/train", a.filterTrain)
	a.mux.HandleFunc("GET /api/filter/stats", a.filterStats)
	a.mux.HandleFunc("GET /api/filter/policy", a.filterPolicyList)
	a.mux.HandleFunc("GET /api/filter/policy/{scope}", a.filterPolicyGet)
	a.mux.HandleFunc("PUT /api/filter/policy/{scope}", a.filterPolicySet)
	a.mux.HandleFunc("DELETE /api/filter/policy/{scope}", a.filterPolicyDelete)
}

func (a *API) spam(w http.ResponseWriter) *spamstage.Engine {
	if a.cfg.Spam == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("spam filter not running on this node"))
	}
	return a.cfg.Spam
}

// classifyResult is the answer of POST /api/filter/classify.
type classifyResult struct {
	Verdict string `json:"verdict"` // "spam" or "ham"
	spamstage.Score
}

// filterClassify scores the message in the request body, as the spam
// stage would without earlier stages' findings.
func (a *API) filterClassify(w http.ResponseWriter, r *http.Request) {
	e := a.spam(w)
	if e == nil {
		return
	}
	body := http.MaxBytesReader(w, r.Body, maxClassify)
	sc, _, err := e.ScoreMessage(r.Context(), body, nil)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("classify: %w", err))
		return
	}
	// Drain what the tokenizer did not read, so an oversized body is
	// reported as such.
	if _, err := io.Copy(io.Discard, body); err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("message over %d bytes", maxClassify))
		return
	}
	res := classifyResult{Verdict: "ham", Score: sc}
	if sc.Spam {
		res.Verdict = "spam"
	}
	writeJSON(w, http.StatusOK, res)
}

// trainRequest is the body of POST /api/filter/train.
type trainRequest struct {
	Messages []struct {
		Class   string `json:"class"` // spam, ham or none
		Message []byte `json:"message"`
	} `json:"messages"`
}

func (a *API) filterTrain(w http.ResponseWriter, r *http.Request) {
	e := a.spam(w)
	if e == nil {
		return
	}
	var req trainRequest
	if !decode(w, r, &req) {
		return
	}
	if len(req.Messages) == 0 || len(req.Messages) > maxTrainBatch {
		writeError(w, http.StatusBadRequest, fmt.Errorf("messages: give 1 to %d", maxTrainBatch))
		return
	}
	items := make([]spamstage.Item, len(req.Messages))
	for i, m := range req.Messages {
		c, err := spamstage.ParseClass(m.Class)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("message %d: %w", i, err))
			return
		}
		if len(m.Message) == 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("message %d: empty", i))
			return
		}
		items[i] = spamstage.Item{Message: m.Message, Class: c, Source: "admin"}
	}
	res, err := e.Train(r.Context(), items)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (a *API) filterStats(w http.ResponseWriter, r *http.Request) {
	e := a.spam(w)
	if e == nil {
		return
	}
	writeJSON(w, http.StatusOK, e.Stats())
}

// policyView is a scope's stored policy and what it resolves to.
type policyView struct {
	Scope     string              `json:"scope"`
	Set       spamstage.Policy    `json:"set"`
	Effective spamstage.Effective `json:"effective"`
}

func (a *API) filterPolicyList(w http.ResponseWriter, r *http.Request) {
	e := a.spam(w)
	if e == nil {
		return
	}
	ps, err := e.Policies()
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ps)
}

// policyScope is the spam engine and the policy key of a /api/filter/policy/{scope}
// request; it has answered the client when ok is false.
func (a *API) policyScope(w http.ResponseWriter, r *http.Request) (*spamstage.Engine, string, bool) {
	e := a.spam(w)
	if e == nil {
		return nil, "", false
	}
	key, err := spamstage.PolicyKey(r.PathValue("scope"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return nil, "", false
	}
	return e, key, true
}

func (a *API) filterPolicyGet(w http.ResponseWriter, r *http.Request) {
	e, key, ok := a.policyScope(w, r)
	if !ok {
		return
	}
	p, _, err := e.Policy(key)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, policyView{Scope: key, Set: p, Effective: e.EffectiveFor(key)})
}

func (a *API) filterPolicySet(w http.ResponseWriter, r *http.Request) {
	e, key, ok := a.policyScope(w, r)
	if !ok {
		return
	}
	var p spamstage.Policy
	if !decode(w, r, &p) {
		return
	}
	if err := e.SetPolicy(r.Context(), key, p); err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, policyView{Scope: key, Set: p, Effective: e.EffectiveFor(key)})
}

func (a *API) filterPolicyDelete(w http.ResponseWriter, r *http.Request) {
	e, key, ok := a.policyScope(w, r)
	if !ok {
		return
	}
	if err := e.SetPolicy(r.Context(), key, spamstage.Policy{}); err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, policyView{Scope: key, Effective: e.EffectiveFor(key)})
}
