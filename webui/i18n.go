package webui

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

// Languages of the web admin (SPEC W1): the catalogs are
// web/i18n/<code>.json, flat maps of message key to text.
var languages = []langInfo{{"en", "English"}, {"zh-TW", "繁體中文"}, {"zh-CN", "简体中文"}}

type langInfo struct{ Code, Name string }

// catalogs maps language code → key → text.
type catalogs map[string]map[string]string

func loadCatalogs(fsys fs.FS) (catalogs, error) {
	c := catalogs{}
	for _, l := range languages {
		b, err := fs.ReadFile(fsys, "web/i18n/"+l.Code+".json")
		if err != nil {
			return nil, fmt.Errorf("i18n catalog %s: %w", l.Code, err)
		}
		m := map[string]string{}
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("i18n catalog %s: %w", l.Code, err)
		}
		c[l.Code] = m
	}
	return c, nil
}

// text returns the message for key in lang, falling back to English and
// then to the key itself (so a missing key is visible, not blank).
func (c catalogs) text(lang, key string) string {
	if s, ok := c[lang][key]; ok {
		return s
	}
	if s, ok := c["en"][key]; ok {
		return s
	}
	return key
}

const langCookie = "tandem_lang"

// pickLang chooses the page language: a lang query parameter (which also
// sets a cookie so the choice sticks), the cookie, then Accept-Language
// (RFC 9110 §12.5.4; q-values are ignored beyond order, which browsers
// already send best-first).
func pickLang(w http.ResponseWriter, r *http.Request) string {
	if q := r.URL.Query().Get("lang"); q != "" {
		if l := matchLang(q); l != "" {
			http.SetCookie(w, &http.Cookie{Name: langCookie, Value: l, Path: "/", MaxAge: int((365 * 24 * time.Hour).Seconds()),
				HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
			return l
		}
	}
	if c, err := r.Cookie(langCookie); err == nil {
		if l := matchLang(c.Value); l != "" {
			return l
		}
	}
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag := strings.TrimSpace(strings.SplitN(part, ";", 2)[0])
		if l := matchLang(tag); l != "" {
			return l
		}
	}
	return "en"
}

// matchLang maps a BCP 47 tag to one of our languages ("" if none).
func matchLang(tag string) string {
	t := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(tag), "_", "-"))
	switch {
	case t == "en" || strings.HasPrefix(t, "en-"):
		return "en"
	case t == "zh-tw" || t == "zh-hk" || t == "zh-mo" || strings.HasPrefix(t, "zh-hant"):
		return "zh-TW"
	case t == "zh" || t == "zh-cn" || t == "zh-sg" || strings.HasPrefix(t, "zh-hans"):
		return "zh-CN"
	}
	return ""
}
