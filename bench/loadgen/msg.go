package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// vocabulary for message bodies; bodies also carry one rare token "zqNNq" so
// that SEARCH BODY has a selective term, and subjects carry "subjNN".
var vocabulary = strings.Fields(`mail server tandem queue delivery maildir imap pop3 smtp
relay header body message folder index search flag seen draft answered report meeting
lunch budget invoice project deadline review release backup storage cluster raft node
replica network latency account password quota filter spam ham archive calendar contact
travel weekend coffee schedule agenda minutes summary update status ticket customer order`)

const (
	bodyPool    = 32 // distinct bodies per size
	subjectKeys = 50 // distinct subjNN tokens
)

// mix spreads message numbers (splitmix64 finaliser) so that the body and
// subject token of a message do not follow its recipient, which is i mod users.
func mix(i int) uint64 {
	z := uint64(i) + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// messageSet builds RFC 5322 messages of roughly a fixed size. Bodies are built
// once so that generating load costs the client little CPU.
type messageSet struct {
	size   int
	runID  string
	from   string
	bodies []string
}

func newMessageSet(size int, runID, from string, seed uint64) *messageSet {
	ms := &messageSet{size: size, runID: runID, from: from}
	bodyLen := size - 400 // headers take roughly 400 bytes
	if bodyLen < 64 {
		bodyLen = 64
	}
	for k := 0; k < bodyPool; k++ {
		ms.bodies = append(ms.bodies, makeBody(bodyLen, k, rand.New(rand.NewPCG(seed, uint64(k)))))
	}
	return ms
}

// makeBody returns text lines (CRLF, at most 78 characters, RFC 5322 section
// 2.1.1) of about n bytes containing the rare token zq<k>q once.
func makeBody(n, k int, rnd *rand.Rand) string {
	var b strings.Builder
	b.Grow(n + 80)
	line := fmt.Sprintf("zq%02dq", k)
	for b.Len()+len(line) < n {
		w := vocabulary[rnd.IntN(len(vocabulary))]
		if len(line)+1+len(w) > 76 {
			b.WriteString(line)
			b.WriteString("\r\n")
			line = w
			continue
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	b.WriteString(line)
	b.WriteString("\r\n")
	return b.String()
}

// message returns message number i addressed to rcpt.
func (ms *messageSet) message(i int, rcpt string) []byte {
	var b strings.Builder
	h := mix(i)
	body := ms.bodies[h%uint64(len(ms.bodies))]
	b.Grow(len(body) + 512)
	fmt.Fprintf(&b, "From: Bench Sender <%s>\r\n", ms.from)
	fmt.Fprintf(&b, "To: <%s>\r\n", rcpt)
	fmt.Fprintf(&b, "Subject: bench %s #%d subj%02d %s\r\n", ms.runID, i, (h>>32)%subjectKeys, vocabulary[i%len(vocabulary)])
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().UTC().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s.%d@loadgen.example.org>\r\n", ms.runID, i)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n")
	b.WriteString("Content-Transfer-Encoding: 7bit\r\n\r\n")
	b.WriteString(body)
	return []byte(b.String())
}
