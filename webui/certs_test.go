package webui

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"
)

type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
	kpem string
}

// makeCert issues a certificate for cn, signed by parent (self-signed when
// nil), valid from nb to na.
func makeCert(t *testing.T, cn string, parent *testCert, nb, na time.Time, ca bool) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, NotBefore: nb, NotAfter: na,
		DNSNames: []string{cn}, BasicConstraintsValid: true, IsCA: ca,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	signer, signKey := tmpl, key
	if parent != nil {
		signer, signKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalECPrivateKey(key)
	return &testCert{cert: c, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		kpem: string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))}
}

func TestParseUpload(t *testing.T) {
	now := time.Now()
	ca := makeCert(t, "Test CA", nil, now.Add(-time.Hour), now.AddDate(1, 0, 0), true)
	leaf := makeCert(t, "mail.example.test", ca, now.Add(-time.Hour), now.AddDate(0, 3, 0), false)
	other := makeCert(t, "other.example.test", nil, now.Add(-time.Hour), now.AddDate(0, 3, 0), false)
	expired := makeCert(t, "old.example.test", ca, now.AddDate(-1, 0, 0), now.Add(-time.Hour), false)
	future := makeCert(t, "new.example.test", ca, now.AddDate(0, 1, 0), now.AddDate(1, 0, 0), false)

	if c, err := ParseUpload(leaf.pem+ca.pem, leaf.kpem, now); err != nil || len(c.Certificate) != 2 {
		t.Fatalf("good chain: %v", err)
	}
	if _, err := ParseUpload(leaf.pem, leaf.kpem, now); err != nil {
		t.Fatalf("leaf only: %v", err)
	}
	for _, c := range []struct {
		name, cert, key, want string
	}{
		{"empty", "", "", "give both"},
		{"garbage", "hello", leaf.kpem, "no PEM CERTIFICATE"},
		{"key in cert", leaf.pem + leaf.kpem, leaf.kpem, "EC PRIVATE KEY"},
		{"wrong key", leaf.pem, other.kpem, "do not belong together"},
		{"bad key", leaf.pem, "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n", "do not belong together"},
		{"expired", expired.pem, expired.kpem, "expired"},
		{"not yet valid", future.pem, future.kpem, "not valid before"},
		{"wrong order", ca.pem + leaf.pem, ca.kpem, "not signed by"},
		{"unrelated chain", leaf.pem + other.pem, leaf.kpem, "not signed by"},
		{"broken der", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", leaf.kpem, "does not parse"},
		{"trailing junk", leaf.pem + "junk", leaf.kpem, "after the last certificate"},
	} {
		if _, err := ParseUpload(c.cert, c.key, now); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func FuzzParseUpload(f *testing.F) {
	f.Add("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "x")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, cert, key string) {
		ParseUpload(cert, key, time.Now())
	})
}

func TestCertificatesAPIAndSource(t *testing.T) {
	now := time.Now()
	self := makeCert(t, "node1.example.test", nil, now.Add(-time.Hour), now.AddDate(5, 0, 0), false)
	selfPair, err := tls.X509KeyPair([]byte(self.pem), []byte(self.kpem))
	if err != nil {
		t.Fatal(err)
	}
	var src *CertSource
	srv, st := w2Server(t, func(c *APIConfig) {
		src = NewCertSource(c.Store, selfPair, nil)
		c.Certs = src
	})
	var got struct {
		Active   CertInfo `json:"active"`
		Uploaded *struct {
			Certificate CertInfo `json:"certificate"`
		} `json:"uploaded"`
	}
	code, body := call(t, srv, "GET", "/api/certificates", nil)
	json.Unmarshal(body, &got)
	if code != http.StatusOK || got.Active.Source != "self-signed" || !got.Active.SelfSigned || got.Uploaded != nil ||
		len(got.Active.SHA256) != 95 || got.Active.DNSNames[0] != "node1.example.test" {
		t.Fatalf("before upload: %d %s", code, body)
	}

	ca := makeCert(t, "Test CA", nil, now.Add(-time.Hour), now.AddDate(1, 0, 0), true)
	leaf := makeCert(t, "mail.example.test", ca, now.Add(-time.Hour), now.AddDate(0, 3, 0), false)
	if code, body := call(t, srv, "PUT", "/api/certificates", map[string]string{"cert_pem": leaf.pem, "key_pem": ca.kpem}); code != http.StatusBadRequest {
		t.Fatalf("mismatched key: %d %s", code, body)
	}
	code, body = call(t, srv, "PUT", "/api/certificates", map[string]string{"cert_pem": leaf.pem + ca.pem, "key_pem": leaf.kpem})
	if code != http.StatusOK {
		t.Fatalf("upload: %d %s", code, body)
	}
	// The listeners' source serves the upload from the next handshake on.
	c, err := src.GetCertificate(nil)
	if err != nil || c.Leaf == nil || c.Leaf.Subject.CommonName != "mail.example.test" || len(c.Certificate) != 2 {
		t.Fatalf("source after upload: %+v %v", c, err)
	}
	code, body = call(t, srv, "GET", "/api/certificates", nil)
	got.Uploaded = nil
	json.Unmarshal(body, &got)
	if got.Active.Source != "uploaded" || got.Active.SelfSigned || got.Uploaded == nil || got.Uploaded.Certificate.Issuer != "CN=Test CA" {
		t.Fatalf("after upload: %s", body)
	}
	if _, _, ok, _ := st.KVGet(CertNamespace, CertKey); !ok {
		t.Fatal("upload not in the KV store")
	}
	if code, _ := call(t, srv, "DELETE", "/api/certificates", nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	if c, _ := src.GetCertificate(nil); c != src.fallback {
		t.Fatal("source still serves the deleted upload")
	}
}
