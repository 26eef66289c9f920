package webui

// The node's TLS certificate (SMTP STARTTLS, IMAPS, POP3S, HTTPS):
//
//	GET    /api/certificates   the certificate in use and the uploaded one
//	PUT    /api/certificates   upload a PEM certificate chain and its key
//	DELETE /api/certificates   drop the upload: back to the self-signed one
//
// KV namespace owned here: "tls.certs", key "default": UploadedCert as
// JSON. The upload is replicated, so every node serves it; CertSource
// picks it up on the next handshake after the namespace changes and falls
// back to the node's own self-signed certificate when there is none.

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tandemmail/tandem/storage"
)

// KV home of the uploaded certificate.
const (
	CertNamespace = "tls.certs"
	CertKey       = "default"
)

// UploadedCert is the stored upload.
type UploadedCert struct {
	CertPEM  string    `json:"cert_pem"` // leaf first, then intermediates
	KeyPEM   string    `json:"key_pem"`
	Uploaded time.Time `json:"uploaded"`
}

// CertInfo describes a certificate for the admin.
type CertInfo struct {
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	DNSNames    []string  `json:"dns_names"`
	IPAddresses []string  `json:"ip_addresses,omitempty"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	// SHA256 is the fingerprint of the DER certificate, hex with colons.
	SHA256     string `json:"sha256"`
	SelfSigned bool   `json:"self_signed"`
	Chain      int    `json:"chain_length"`
	Source     string `json:"source"` // "uploaded" or "self-signed"
}

func describeCert(c *tls.Certificate, source string) (CertInfo, error) {
	if c == nil || len(c.Certificate) == 0 {
		return CertInfo{}, errors.New("no certificate")
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return CertInfo{}, fmt.Errorf("parse certificate: %w", err)
	}
	sum := sha256.Sum256(leaf.Raw)
	fp := make([]byte, 0, 95)
	for i, b := range sum {
		if i > 0 {
			fp = append(fp, ':')
		}
		fp = hex.AppendEncode(fp, []byte{b})
	}
	info := CertInfo{Subject: leaf.Subject.String(), Issuer: leaf.Issuer.String(), DNSNames: leaf.DNSNames,
		NotBefore: leaf.NotBefore.UTC(), NotAfter: leaf.NotAfter.UTC(), SHA256: string(bytes.ToUpper(fp)),
		SelfSigned: bytes.Equal(leaf.RawIssuer, leaf.RawSubject) && leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil,
		Chain:      len(c.Certificate), Source: source}
	if info.DNSNames == nil {
		info.DNSNames = []string{}
	}
	for _, ip := range leaf.IPAddresses {
		info.IPAddresses = append(info.IPAddresses, ip.String())
	}
	return info, nil
}

// ParseUpload checks a certificate chain and key: both parse, the key
// belongs to the first certificate, the certificate is valid now, and each
// certificate of the chain is signed by the next (RFC 8446 §4.4.2: the
// sender's certificate first, each following one certifying the one before).
func ParseUpload(certPEM, keyPEM string, now time.Time) (tls.Certificate, error) {
	if certPEM == "" || keyPEM == "" {
		return tls.Certificate{}, errors.New("give both cert_pem (the certificate chain) and key_pem (its private key) in PEM form")
	}
	rest := []byte(certPEM)
	var chain []*x509.Certificate
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return tls.Certificate{}, fmt.Errorf("cert_pem: a %q block where only CERTIFICATE blocks belong (the key goes in key_pem)", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("cert_pem: certificate %d does not parse: %w", len(chain)+1, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return tls.Certificate{}, errors.New("cert_pem: no PEM CERTIFICATE block found")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return tls.Certificate{}, errors.New("cert_pem: text after the last certificate is not PEM")
	}
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate and key do not belong together or do not parse: %w", err)
	}
	leaf := chain[0]
	if now.After(leaf.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("certificate expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Add(24 * time.Hour).Before(leaf.NotBefore) {
		return tls.Certificate{}, fmt.Errorf("certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return tls.Certificate{}, fmt.Errorf("chain: certificate %d (%s) is not signed by certificate %d (%s): %w",
				i+1, chain[i].Subject, i+2, chain[i+1].Subject, err)
		}
		if now.After(chain[i+1].NotAfter) {
			return tls.Certificate{}, fmt.Errorf("chain: certificate %d (%s) expired on %s", i+2, chain[i+1].Subject,
				chain[i+1].NotAfter.UTC().Format(time.RFC3339))
		}
	}
	pair.Leaf = leaf
	return pair, nil
}

// CertSource gives the listeners the uploaded certificate, or the node's
// self-signed one. It reloads when the KV namespace's revision changes,
// checked at each handshake (one read transaction: cheap next to the
// handshake's own work), so no goroutine is needed.
type CertSource struct {
	kv       KVReader
	fallback *tls.Certificate
	log      *slog.Logger

	mu       sync.Mutex
	rev      uint64
	loaded   bool
	uploaded *tls.Certificate
}

// NewCertSource makes a source over kv with the self-signed fallback.
func NewCertSource(kv KVReader, fallback tls.Certificate, log *slog.Logger) *CertSource {
	if log == nil {
		log = slog.Default()
	}
	return &CertSource{kv: kv, fallback: &fallback, log: log}
}

// Current is the certificate to serve and where it comes from.
func (c *CertSource) Current() (*tls.Certificate, string) {
	rev := c.kv.KVRevision(CertNamespace)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loaded || rev != c.rev {
		c.uploaded = nil
		if raw, _, ok, err := c.kv.KVGet(CertNamespace, CertKey); err != nil {
			c.log.Warn("read the uploaded certificate", "err", err)
		} else if ok {
			var u UploadedCert
			if err := json.Unmarshal(raw, &u); err != nil {
				c.log.Error("uploaded certificate unreadable; serving the self-signed one", "err", err)
			} else if pair, err := tls.X509KeyPair([]byte(u.CertPEM), []byte(u.KeyPEM)); err != nil {
				c.log.Error("uploaded certificate unusable; serving the self-signed one", "err", err)
			} else {
				pair.Leaf, _ = x509.ParseCertificate(pair.Certificate[0])
				c.uploaded = &pair
				c.log.Info("serving the uploaded certificate", "subject", pair.Leaf.Subject.String(), "not_after", pair.Leaf.NotAfter)
			}
		}
		c.rev, c.loaded = rev, true
	}
	if c.uploaded != nil {
		return c.uploaded, "uploaded"
	}
	return c.fallback, "self-signed"
}

// GetCertificate is for tls.Config.GetCertificate (with Certificates
// empty, so it is asked on every handshake).
func (c *CertSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert, _ := c.Current()
	return cert, nil
}

func (a *API) routesCerts() {
	a.mux.HandleFunc("GET /api/certificates", a.globalAdminOnly(a.getCerts))
	a.mux.HandleFunc("PUT /api/certificates", a.globalAdminOnly(a.putCert))
	a.mux.HandleFunc("DELETE /api/certificates", a.globalAdminOnly(a.deleteCert))
}

func (a *API) getCerts(w http.ResponseWriter, r *http.Request) {
	resp := map[string]any{"active": nil, "uploaded": nil}
	if a.cfg.Certs != nil {
		cert, src := a.cfg.Certs.Current()
		info, err := describeCert(cert, src)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
		resp["active"] = info
	}
	if raw, _, ok, err := a.cfg.Store.KVGet(CertNamespace, CertKey); err != nil {
		a.fail(w, err)
		return
	} else if ok {
		var u UploadedCert
		if err := json.Unmarshal(raw, &u); err == nil {
			if pair, err := tls.X509KeyPair([]byte(u.CertPEM), []byte(u.KeyPEM)); err == nil {
				if info, err := describeCert(&pair, "uploaded"); err == nil {
					resp["uploaded"] = map[string]any{"certificate": info, "uploaded": u.Uploaded}
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *API) putCert(w http.ResponseWriter, r *http.Request) {
	var req struct {
		CertPEM string `json:"cert_pem"`
		KeyPEM  string `json:"key_pem"`
	}
	if !decode(w, r, &req) {
		return
	}
	pair, err := ParseUpload(req.CertPEM, req.KeyPEM, time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	raw, _ := json.Marshal(UploadedCert{CertPEM: req.CertPEM, KeyPEM: req.KeyPEM, Uploaded: time.Now().UTC()})
	if len(raw) > storage.MaxKVValue {
		writeError(w, http.StatusBadRequest, fmt.Errorf("certificate and key together are %d bytes; at most %d", len(raw), storage.MaxKVValue))
		return
	}
	if err := a.cfg.Store.KVPutValue(r.Context(), CertNamespace, CertKey, raw); err != nil {
		a.fail(w, err)
		return
	}
	info, _ := describeCert(&pair, "uploaded")
	a.cfg.Logger.Info("certificate uploaded", "subject", info.Subject, "sha256", info.SHA256, "not_after", info.NotAfter)
	warn := ""
	if host, _, err := net.SplitHostPort(r.Host); err == nil && net.ParseIP(host) == nil && pair.Leaf.VerifyHostname(host) != nil {
		warn = fmt.Sprintf("the certificate does not name %s, the host this page was reached by", host)
	}
	writeJSON(w, http.StatusOK, map[string]any{"certificate": info, "warning": warn})
}

func (a *API) deleteCert(w http.ResponseWriter, r *http.Request) {
	if err := a.cfg.Store.KVDeleteKey(r.Context(), CertNamespace, CertKey); err != nil {
		a.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
