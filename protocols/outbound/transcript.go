package outbound

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Transcript is the record of one delivery attempt to one destination
// (SPEC L2): the DNS questions and answers used, the addresses tried, the
// TLS outcome and the SMTP dialogue without the message body. It proves
// whose fault a lost message was.
type Transcript struct {
	QueueID     string
	Attempt     int
	Destination string // recipient domain, or "smarthost host:port"
	Start, End  time.Time
	DNS         []DNSExchange
	Addresses   []AddressTry
	TLS         string // "TLS1.3 TLS_AES_128_GCM_SHA256, verified=false", "none", or why it failed
	Lines       []Line
	Outcome     string
}

// DNSExchange is one question and what the resolver answered.
type DNSExchange struct {
	Question string   // "far.test. IN MX"
	Answers  []string // records in presentation format
	Error    string   // "NXDOMAIN", "SERVFAIL", a timeout...
}

// AddressTry is one connection attempt.
type AddressTry struct {
	Host  string // MX host name
	Addr  string // "[2001:db8::1]:25"
	Error string // "" when the session ran to its end
}

// Line is one line of the SMTP dialogue: Dir "C" (we sent), "S" (the
// remote said) or "*" (a note of ours, e.g. where the body was left out).
type Line struct {
	Dir  string
	Text string
	Time time.Time
}

// TranscriptSink keeps transcripts; the node backs it with replicated
// storage.
type TranscriptSink interface {
	SaveTranscript(ctx context.Context, t Transcript) error
}

type discardSink struct{}

func (discardSink) SaveTranscript(context.Context, Transcript) error { return nil }

// MemorySink keeps transcripts in memory (tests, and a node without
// transcript storage).
type MemorySink struct {
	mu   sync.Mutex
	list []Transcript
}

// SaveTranscript implements TranscriptSink.
func (m *MemorySink) SaveTranscript(_ context.Context, t Transcript) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.list = append(m.list, t)
	return nil
}

// Transcripts lists the kept transcripts of a queue entry ("" = all), in
// the order they were saved.
func (m *MemorySink) Transcripts(queueID string) []Transcript {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Transcript
	for _, t := range m.list {
		if queueID == "" || t.QueueID == queueID {
			out = append(out, t)
		}
	}
	return out
}

// Limits that keep a hostile remote from growing a transcript without end.
const (
	maxTranscriptLines = 2000
	maxLineText        = 1000
)

// Render is the transcript as text, one event per line. Every piece of
// text that came from the network is escaped (see printable), so a remote
// cannot forge lines of the transcript.
func (t Transcript) Render() string {
	var b strings.Builder
	ts := func(x time.Time) string { return x.UTC().Format("2006-01-02T15:04:05.000Z") }
	fmt.Fprintf(&b, "queue %s attempt %d to %s\n", printable(t.QueueID), t.Attempt, printable(t.Destination))
	fmt.Fprintf(&b, "start %s end %s\n", ts(t.Start), ts(t.End))
	for _, d := range t.DNS {
		fmt.Fprintf(&b, "dns %s", printable(d.Question))
		if d.Error != "" {
			fmt.Fprintf(&b, " error %s", printable(d.Error))
		}
		for _, a := range d.Answers {
			fmt.Fprintf(&b, " | %s", printable(a))
		}
		b.WriteByte('\n')
	}
	for _, a := range t.Addresses {
		fmt.Fprintf(&b, "connect %s %s", printable(a.Host), printable(a.Addr))
		if a.Error != "" {
			fmt.Fprintf(&b, " error %s", printable(a.Error))
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "tls %s\n", printable(t.TLS))
	for _, l := range t.Lines {
		fmt.Fprintf(&b, "%s %s %s\n", l.Time.UTC().Format("15:04:05.000"), printable(l.Dir), printable(l.Text))
	}
	fmt.Fprintf(&b, "outcome %s\n", printable(t.Outcome))
	return b.String()
}

// printable escapes control characters, invalid UTF-8 and backslashes
// so that s stays on one line and reads unambiguously.
func printable(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' || c >= 0x80 {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == 0x2028 || r == 0x2029:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// recorder collects one transcript while a delivery runs.
type recorder struct {
	t   *Transcript
	now func() time.Time
	// kept are connections that ended a transaction cleanly; they go
	// back to the connection cache only once the attempt's outcome is
	// committed (attempt calls release), so a connection never carries a
	// second transaction while the first could still be re-sent after a
	// crash: at most one duplicate per connection.
	kept []keptConn
}

type keptConn struct {
	d    destination
	c    *smtpConn
	uses int
}

// release caches the kept connections (reuse) or ends them.
func (r *recorder) release(e *Engine, reuse bool) {
	for _, k := range r.kept {
		if reuse {
			e.keep(k.d, k.c, k.uses)
		} else {
			k.c.quit()
			k.c.nc.Close()
		}
	}
	r.kept = nil
}

func (r *recorder) line(dir, text string) {
	if len(r.t.Lines) >= maxTranscriptLines {
		if len(r.t.Lines) == maxTranscriptLines {
			r.t.Lines = append(r.t.Lines, Line{Dir: "*", Text: "[transcript truncated]", Time: r.now()})
		}
		return
	}
	if len(text) > maxLineText {
		text = text[:maxLineText] + "[...]"
	}
	r.t.Lines = append(r.t.Lines, Line{Dir: dir, Text: text, Time: r.now()})
}

func (r *recorder) client(text string) { r.line("C", text) }
func (r *recorder) server(text string) { r.line("S", text) }
func (r *recorder) note(text string)   { r.line("*", text) }

func (r *recorder) dns(x DNSExchange) { r.t.DNS = append(r.t.DNS, x) }

func (r *recorder) tls(s string) {
	if r.t.TLS == "" || r.t.TLS == "none" {
		r.t.TLS = s
		return
	}
	r.t.TLS += "; " + s
}

// redactAuth is what the transcript shows of a client line sent during
// AUTH (RFC 4954): the mechanism name survives, the credentials never.
func redactAuth(line string) string {
	f := strings.Fields(line)
	if len(f) >= 2 && strings.EqualFold(f[0], "AUTH") {
		if len(f) == 2 {
			return "AUTH " + printable(f[1])
		}
		return "AUTH " + printable(f[1]) + " [credentials hidden]"
	}
	return "[credentials hidden]"
}
