package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/tandemmail/tandem/protocols/outbound"
	"github.com/tandemmail/tandem/storage"
)

// Bouncer fails a queued message's pending recipients now, with a DSN to
// the sender (implemented by the outbound engine).
type Bouncer interface {
	Bounce(ctx context.Context, queueID, reason string) error
}

func (a *API) routesQueueAndLog() {
	m := a.mux
	m.HandleFunc("GET /api/queue", func(w http.ResponseWriter, r *http.Request) {
		q, err := a.cfg.Store.Queue()
		if err != nil {
			a.fail(w, err)
			return
		}
		if q == nil {
			q = []storage.QueueEntry{}
		}
		writeJSON(w, http.StatusOK, q)
	})
	m.HandleFunc("GET /api/queue/{id}", func(w http.ResponseWriter, r *http.Request) {
		e, err := a.cfg.Store.QueueEntry(r.PathValue("id"))
		if err != nil {
			a.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, e)
	})
	m.HandleFunc("POST /api/queue/{id}/retry", func(w http.ResponseWriter, r *http.Request) {
		if err := a.cfg.Store.QueueReschedule(r.Context(), r.PathValue("id"), time.Now()); err != nil {
			a.fail(w, err)
			return
		}
		if a.cfg.QueueKick != nil {
			a.cfg.QueueKick()
		}
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("DELETE /api/queue/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := a.cfg.Store.QueueDelete(r.Context(), r.PathValue("id")); err != nil {
			a.fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("POST /api/queue/{id}/bounce", func(w http.ResponseWriter, r *http.Request) {
		if a.cfg.Bouncer == nil {
			writeError(w, http.StatusServiceUnavailable, errors.New("the outbound engine is not running on this node"))
			return
		}
		if err := a.cfg.Bouncer.Bounce(r.Context(), r.PathValue("id"), "returned by the administrator"); err != nil {
			if errors.Is(err, outbound.ErrBusy) {
				writeError(w, http.StatusConflict, err)
				return
			}
			a.fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	m.HandleFunc("GET /api/log", func(w http.ResponseWriter, r *http.Request) {
		q, err := parseLogQuery(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		recs, err := a.cfg.Store.LogSearch(q)
		if err != nil {
			a.fail(w, err)
			return
		}
		if recs == nil {
			recs = []storage.LogRecord{}
		}
		writeJSON(w, http.StatusOK, recs)
	})
	m.HandleFunc("GET /api/log/transcript/{id}", func(w http.ResponseWriter, r *http.Request) {
		tr, err := a.cfg.Store.Transcripts(r.PathValue("id"))
		if err != nil {
			a.fail(w, err)
			return
		}
		if len(tr) == 0 {
			writeError(w, http.StatusNotFound, fmt.Errorf("no delivery transcript for %s", r.PathValue("id")))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"queue_id": r.PathValue("id"), "attempts": tr})
	})
}

// parseTime accepts RFC 3339, a date, or a duration back from now ("2h").
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02 15:04", time.DateOnly} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: use RFC 3339, YYYY-MM-DD[ HH:MM], or a duration like 2h", s)
}

func parseLogQuery(r *http.Request) (storage.LogQuery, error) {
	v := r.URL.Query()
	var q storage.LogQuery
	var err error
	if q.Since, err = parseTime(v.Get("since")); err != nil {
		return q, err
	}
	if q.Until, err = parseTime(v.Get("until")); err != nil {
		return q, err
	}
	q.QueueID, q.From, q.To = v.Get("queue_id"), v.Get("from"), v.Get("to")
	q.ClientIP, q.Subject, q.Event = v.Get("ip"), v.Get("subject"), v.Get("event")
	if l := v.Get("limit"); l != "" {
		if q.Limit, err = strconv.Atoi(l); err != nil || q.Limit < 0 {
			return q, fmt.Errorf("limit %q: want a positive number", l)
		}
	}
	return q, nil
}
