package webui

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandemmail/tandem/filter/firewall"
	"github.com/tandemmail/tandem/storage"
)

// loginGuard counts failed logins per client IP in memory (fast-changing
// counters are not replicated, common rules); only the resulting block is
// written to the replicated firewall namespace.
type loginGuard struct {
	mu       sync.Mutex
	fails    map[string]*failRec
	captchas map[string]captcha
}

type failRec struct {
	n    int
	last time.Time
}

type captcha struct {
	answer  int
	expires time.Time
}

func newLoginGuard() *loginGuard {
	return &loginGuard{fails: map[string]*failRec{}, captchas: map[string]captcha{}}
}

// failures forgets counts older than a day.
func (g *loginGuard) failures(ip string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.fails[ip]
	if f == nil || time.Since(f.last) > 24*time.Hour {
		return 0
	}
	return f.n
}

func (g *loginGuard) fail(ip string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.fails[ip]
	if f == nil || time.Since(f.last) > 24*time.Hour {
		f = &failRec{}
		g.fails[ip] = f
	}
	f.n++
	f.last = time.Now()
	if len(g.fails) > 100000 { // bound memory under a distributed attack
		for k, v := range g.fails {
			if time.Since(v.last) > time.Hour {
				delete(g.fails, k)
			}
		}
	}
	return f.n
}

func (g *loginGuard) reset(ip string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.fails, ip)
}

// newCaptcha makes an arithmetic question; the answer stays server-side.
func (g *loginGuard) newCaptcha() (id, question string) {
	a, _ := rand.Int(rand.Reader, big.NewInt(9))
	b, _ := rand.Int(rand.Reader, big.NewInt(9))
	x, y := int(a.Int64())+2, int(b.Int64())+1
	id = randomToken()
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	for k, c := range g.captchas {
		if now.After(c.expires) {
			delete(g.captchas, k)
		}
	}
	g.captchas[id] = captcha{answer: x + y, expires: now.Add(10 * time.Minute)}
	return id, fmt.Sprintf("%d + %d", x, y)
}

// solve checks and consumes a captcha (one try per question).
func (g *loginGuard) solve(id, answer string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.captchas[id]
	delete(g.captchas, id)
	n, err := strconv.Atoi(strings.TrimSpace(answer))
	return ok && err == nil && time.Now().Before(c.expires) && n == c.answer
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// blockKey is the firewall.blocks key of one address: "ip:ADDR/32" or
// "ip:ADDR/128" (the firewall package's IPKey).
func blockKey(ip string) (string, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return "", fmt.Errorf("client address %q: %w", ip, err)
	}
	a = a.Unmap()
	return firewall.IPKey(netip.PrefixFrom(a, a.BitLen())), nil
}

// blocked tells whether the mail firewall blocks ip: any unexpired block
// of a prefix holding it (written by us or by the firewall for SMTP/IMAP
// brute force). Logins are rare, so reading the list is fine.
func (wb *Web) blocked(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	now := time.Now()
	hit := false
	wb.cfg.Store.KVList(nsFirewall, "ip:", func(key string, value []byte, version uint64) error {
		p, err := netip.ParsePrefix(strings.TrimPrefix(key, "ip:"))
		if err != nil || !p.Contains(a) {
			return nil
		}
		var b firewall.Block
		if json.Unmarshal(value, &b) != nil || b.Expires.IsZero() || now.Before(b.Expires) {
			hit = true // an unreadable block still blocks
		}
		return nil
	})
	return hit
}

// block writes a firewall block in the firewall package's schema, so the
// mail firewall enforces it on every node and `tandem firewall` lists it.
func (wb *Web) block(ctx context.Context, ip string, hits int) {
	key, err := blockKey(ip)
	if err != nil {
		return
	}
	now := time.Now().UTC()
	b, _ := json.Marshal(firewall.Block{Key: key, Reason: "web login brute force", Created: now,
		Expires: now.Add(wb.cfg.LockFor), Hits: hits})
	if err := wb.cfg.Store.KVPutValue(ctx, nsFirewall, key, b); err != nil {
		wb.cfg.Logger.Warn("web login: cannot block address", "ip", ip, "err", err)
		return
	}
	wb.cfg.Logger.Warn("web login: address blocked after failed logins", "ip", ip, "failures", hits)
}

const preCookie = "tandem_login" // double-submit token of the login form

type loginData struct {
	Pre, CaptchaID, Question, Address string
}

func (wb *Web) loginPage(w http.ResponseWriter, r *http.Request) {
	wb.showLogin(w, r, http.StatusOK, "", "")
}

func (wb *Web) showLogin(w http.ResponseWriter, r *http.Request, code int, flashKey, addr string) {
	pre := randomToken()
	http.SetCookie(w, &http.Cookie{Name: preCookie, Value: pre, Path: "/login", MaxAge: 3600,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	d := loginData{Pre: pre, Address: addr}
	ip := clientIP(r)
	if wb.guard.failures(ip) >= wb.cfg.CaptchaAfter {
		d.CaptchaID, d.Question = wb.guard.newCaptcha()
	}
	flash := ""
	if flashKey != "" {
		flash = wb.cats.text(pickLang(w, r), flashKey)
	}
	wb.render(w, r, code, Page{Name: "login", Title: "login.title"}, nil, "", flash, d)
}

// login checks the form: the double-submit token, the firewall, the
// captcha (after CaptchaAfter failures) and the password of an admin.
func (wb *Web) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		wb.showLogin(w, r, http.StatusBadRequest, "login.bad_form", "")
		return
	}
	c, err := r.Cookie(preCookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue("csrf"))) != 1 {
		wb.showLogin(w, r, http.StatusForbidden, "login.bad_form", "")
		return
	}
	ip := clientIP(r)
	if wb.blocked(ip) {
		wb.showLogin(w, r, http.StatusForbidden, "login.blocked", "")
		return
	}
	addr := strings.TrimSpace(r.PostFormValue("address"))
	if wb.guard.failures(ip) >= wb.cfg.CaptchaAfter && !wb.guard.solve(r.PostFormValue("captcha_id"), r.PostFormValue("captcha")) {
		wb.failed(w, r, ip, "login.bad_captcha", addr)
		return
	}
	acct, err := wb.cfg.Store.Authenticate(r.Context(), addr, r.PostFormValue("password"))
	if err != nil {
		if errors.Is(err, storage.ErrNotLeader) || errors.Is(err, storage.ErrUnavailable) {
			wb.showLogin(w, r, http.StatusServiceUnavailable, "login.unavailable", addr)
			return
		}
		wb.failed(w, r, ip, "login.failed", addr)
		return
	}
	if _, err := principalFor(wb.cfg.Store, acct); err != nil {
		wb.failed(w, r, ip, "login.not_admin", addr)
		return
	}
	id, _, err := wb.newSession(r.Context(), acct.Address)
	if err != nil {
		wb.cfg.Logger.Warn("web login", "err", err)
		wb.showLogin(w, r, http.StatusServiceUnavailable, "login.unavailable", addr)
		return
	}
	wb.guard.reset(ip)
	wb.cfg.Logger.Info("web login", "account", acct.Address, "ip", ip)
	setSessionCookie(w, r, id, int(wb.cfg.SessionTTL.Seconds()))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (wb *Web) failed(w http.ResponseWriter, r *http.Request, ip, key, addr string) {
	n := wb.guard.fail(ip)
	wb.cfg.Logger.Info("web login failed", "ip", ip, "account", addr, "failures", n)
	if n >= wb.cfg.LockAfter {
		wb.block(r.Context(), ip, n)
		wb.showLogin(w, r, http.StatusForbidden, "login.blocked", "")
		return
	}
	wb.showLogin(w, r, http.StatusUnauthorized, key, addr)
}

func (wb *Web) logout(w http.ResponseWriter, r *http.Request) {
	id, s, err := wb.sessionOf(r)
	if err == nil {
		if !csrfOK(r, s) {
			http.Error(w, "missing or wrong CSRF token", http.StatusForbidden)
			return
		}
		if err := wb.endSession(r.Context(), id); err != nil {
			wb.cfg.Logger.Warn("web logout", "err", err)
		}
	}
	setSessionCookie(w, r, "", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
