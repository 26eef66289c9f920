package webui

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tandemmail/tandem/filter/firewall"
	"github.com/tandemmail/tandem/storage"
)

// KV namespaces owned by the web admin:
//
//	web.sessions       key = hex SHA-256 of the session id; value = session JSON.
//	                   Replicated so a failover keeps logins; only the hash is
//	                   stored, so a copy of the database gives no usable cookie.
//	web.domain_admins  key = account address; value = JSON list of domains the
//	                   account administers (see scope.go).
const (
	nsSessions     = "web.sessions"
	nsDomainAdmins = "web.domain_admins"
	nsFirewall     = firewall.Namespace // the mail firewall's blocks (filter/firewall)
)

const sessionCookie = "tandem_session"

// session is one login, stored in KV web.sessions.
type session struct {
	Address string `json:"address"`
	CSRF    string `json:"csrf"` // the CSRF token of this session
	Created int64  `json:"created"`
	Expires int64  `json:"expires"`
}

func randomToken() string {
	b := make([]byte, 32) // 256 bits
	rand.Read(b)          // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

func sessionKey(id string) string {
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:])
}

// newSession stores a session and returns its id (the cookie value).
func (wb *Web) newSession(ctx context.Context, addr string) (string, session, error) {
	id := randomToken()
	now := time.Now()
	s := session{Address: addr, CSRF: randomToken(), Created: now.Unix(), Expires: now.Add(wb.cfg.SessionTTL).Unix()}
	b, _ := json.Marshal(s)
	if err := wb.cfg.Store.KVPutValue(ctx, nsSessions, sessionKey(id), b); err != nil {
		return "", s, fmt.Errorf("store session: %w", err)
	}
	wb.sweepSessions(ctx)
	return id, s, nil
}

// sweepSessions deletes expired sessions (they are refused anyway; this
// keeps the namespace small). Runs at login, which is rare.
func (wb *Web) sweepSessions(ctx context.Context) {
	now := time.Now().Unix()
	var ops []storage.KVOp
	wb.cfg.Store.KVList(nsSessions, "", func(key string, value []byte, version uint64) error {
		var s session
		if json.Unmarshal(value, &s) != nil || s.Expires < now {
			ops = append(ops, storage.KVOp{Op: storage.KVDelete, NS: nsSessions, Key: key})
		}
		return nil
	})
	if len(ops) > 0 {
		if err := wb.cfg.Store.KVApply(ctx, ops...); err != nil {
			wb.cfg.Logger.Warn("web session sweep", "err", err)
		}
	}
}

var errNoSession = errors.New("not logged in")

// sessionOf returns the request's valid session and its id.
func (wb *Web) sessionOf(r *http.Request) (string, session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || len(c.Value) != 64 {
		return "", session{}, errNoSession
	}
	v, _, ok, err := wb.cfg.Store.KVGet(nsSessions, sessionKey(c.Value))
	if err != nil {
		return "", session{}, fmt.Errorf("read session: %w", err)
	}
	if !ok {
		return "", session{}, errNoSession
	}
	var s session
	if err := json.Unmarshal(v, &s); err != nil || time.Now().Unix() > s.Expires {
		return "", session{}, errNoSession
	}
	return c.Value, s, nil
}

func (wb *Web) endSession(ctx context.Context, id string) error {
	return wb.cfg.Store.KVDeleteKey(ctx, nsSessions, sessionKey(id))
}

func setSessionCookie(w http.ResponseWriter, r *http.Request, id string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// csrfOK checks a state-changing request's token (header X-CSRF-Token for
// fetch(), form field "csrf" for forms) against the session's.
func csrfOK(r *http.Request, s session) bool {
	tok := r.Header.Get("X-CSRF-Token")
	if tok == "" && r.Header.Get("Content-Type") == "application/x-www-form-urlencoded" {
		tok = r.PostFormValue("csrf")
	}
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.CSRF)) == 1
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}
