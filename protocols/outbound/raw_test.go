package outbound

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawMX is a scripted SMTP peer that sees the exact bytes our client
// sends: for injection, pipelining and canonical-output tests.
type rawMX struct {
	mu   sync.Mutex
	log  []string // every line received, as "conn:line"
	data [][]byte // raw DATA sections, dot-stuffed, up to and with "\r\n.\r\n"
}

type rawConn struct {
	net.Conn
	br *bufio.Reader
	m  *rawMX
	n  int // connection number, from 1
}

func (c *rawConn) send(s string) { c.Write([]byte(s)) }

func (c *rawConn) line() (string, bool) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := c.br.ReadString('\n')
	if err != nil {
		return "", false
	}
	c.m.mu.Lock()
	c.m.log = append(c.m.log, fmt.Sprintf("%d:%s", c.n, strings.TrimRight(l, "\r\n")))
	c.m.mu.Unlock()
	return l, true
}

// readData reads up to the end-of-data line exactly as sent.
func (c *rawConn) readData() []byte {
	var buf []byte
	for !bytes.HasSuffix(buf, []byte("\r\n.\r\n")) && !bytes.Equal(buf, []byte(".\r\n")) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := c.br.ReadByte()
		if err != nil {
			break
		}
		buf = append(buf, b)
	}
	c.m.mu.Lock()
	c.m.data = append(c.m.data, buf)
	c.m.mu.Unlock()
	return buf
}

func (m *rawMX) lines() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.log...)
}

func (m *rawMX) datas() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]byte(nil), m.data...)
}

func newRawMX(t *testing.T, l net.Listener, handle func(c *rawConn)) *rawMX {
	m := &rawMX{}
	var wg sync.WaitGroup
	go func() {
		for n := 1; ; n++ {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				handle(&rawConn{Conn: nc, br: bufio.NewReader(nc), m: m, n: n})
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return m
}

// simpleSMTP answers a plain session with the given EHLO keywords and
// records the DATA section.
func simpleSMTP(caps ...string) func(c *rawConn) {
	return func(c *rawConn) {
		c.send("220 raw.test ESMTP\r\n")
		for {
			l, ok := c.line()
			if !ok {
				return
			}
			cmd := strings.ToUpper(strings.TrimSpace(l))
			switch {
			case strings.HasPrefix(cmd, "EHLO"):
				s := "250-raw.test\r\n"
				for _, cp := range caps {
					s += "250-" + cp + "\r\n"
				}
				c.send(s + "250 ENHANCEDSTATUSCODES\r\n")
			case cmd == "DATA":
				c.send("354 go ahead\r\n")
				c.readData()
				c.send("250 2.0.0 queued as RAW1\r\n")
			case cmd == "QUIT":
				c.send("221 2.0.0 bye\r\n")
				return
			default:
				c.send("250 2.0.0 ok\r\n")
			}
		}
	}
}
