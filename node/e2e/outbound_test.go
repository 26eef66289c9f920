package e2e

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
)

// remoteMX is a receiving SMTP server standing in for another company.
type remoteMX struct {
	mu   sync.Mutex
	msgs []string
}

type rmxSession struct{ r *remoteMX }

func (r *remoteMX) NewSession(*smtp.Conn) (smtp.Session, error) { return rmxSession{r}, nil }
func (rmxSession) AuthPlain(string, string) error               { return nil }
func (rmxSession) Mail(string, *smtp.MailOptions) error         { return nil }
func (rmxSession) Rcpt(string, *smtp.RcptOptions) error         { return nil }
func (s rmxSession) Data(r io.Reader) error {
	b, _ := io.ReadAll(r)
	s.r.mu.Lock()
	s.r.msgs = append(s.r.msgs, string(b))
	s.r.mu.Unlock()
	return nil
}
func (rmxSession) Reset()        {}
func (rmxSession) Logout() error { return nil }

// Mail to an outside address: the node looks up the MX through the given
// resolver, delivers it, and the mail log and the transcript say so.
func TestOutboundDeliveryWithLogAndTranscript(t *testing.T) {
	rmx := &remoteMX{}
	srv := smtp.NewServer(rmx)
	srv.Domain = "mx.far.test"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	_, smtpPort, _ := net.SplitHostPort(ln.Addr().String())

	mux := dns.NewServeMux()
	mux.HandleFunc("far.test.", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		q := r.Question[0]
		switch {
		case q.Qtype == dns.TypeMX && q.Name == "far.test.":
			rr, _ := dns.NewRR("far.test. 60 IN MX 10 mx.far.test.")
			m.Answer = append(m.Answer, rr)
		case q.Qtype == dns.TypeA && q.Name == "mx.far.test.":
			rr, _ := dns.NewRR("mx.far.test. 60 IN A 127.0.0.1")
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dnsSrv := &dns.Server{PacketConn: pc, Handler: mux}
	go dnsSrv.ActivateAndServe()
	defer dnsSrv.Shutdown()

	s := startServer(t, t.TempDir(), "--dns-resolver", pc.LocalAddr().String(), "--outbound-port", smtpPort)
	s.mustCLI("account", "add", "out@example.test", "--password", "pw")
	c, err := smtp.DialStartTLS(s.addr("submission"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(plainAuth("out@example.test", "pw")); err != nil {
		t.Fatal(err)
	}
	body := "From: out@example.test\r\nTo: friend@far.test\r\nSubject: to the outside\r\nMessage-ID: <out1@example.test>\r\n\r\nhello far away\r\n"
	if err := c.SendMail("out@example.test", []string{"friend@far.test"}, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	waitCond(t, "the remote MX receives it", 20*time.Second, func() bool {
		rmx.mu.Lock()
		defer rmx.mu.Unlock()
		return len(rmx.msgs) == 1 && strings.Contains(rmx.msgs[0], "hello far away")
	})
	var logOut string
	waitCond(t, "the mail log shows the delivery", 10*time.Second, func() bool {
		logOut, _ = s.cli("log", "search", "--to", "friend@far.test")
		return strings.Contains(logOut, `"event":"delivered"`) || strings.Contains(logOut, `"event": "delivered"`)
	})
	id := ""
	for _, f := range strings.Split(logOut, `"queue_id":"`)[1:] {
		id = f[:strings.IndexByte(f, '"')]
	}
	if id == "" {
		t.Fatalf("no queue id in:\n%s", logOut)
	}
	tr := s.mustCLI("log", "transcript", id)
	if !strings.Contains(tr, "EHLO") || !strings.Contains(tr, "250") || strings.Contains(tr, "hello far away") {
		t.Errorf("transcript:\n%s", tr)
	}
	if q := s.mustCLI("queue", "list"); !strings.Contains(q, "0 messages queued") {
		t.Errorf("queue not empty:\n%s", q)
	}
}
