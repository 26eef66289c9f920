package smtpd

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// listener tracks accepted connections so Close can drop them.
type listener struct {
	net.Listener
	srv         *Server
	implicitTLS bool
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &conn{Conn: c, srv: l.srv, implicitTLS: l.implicitTLS}
	if !l.srv.track(cc) {
		c.Close()
		return nil, net.ErrClosed
	}
	return cc, nil
}

// conn is the raw TCP connection under go-smtp (and under TLS). It sees
// plaintext SMTP until STARTTLS, which is where the synchronization checks
// of RELIABILITY #19 apply:
//   - a client that talks before the greeting (with Config.GreetDelay);
//   - a client that sends the message before the 354 reply to DATA
//     (RFC 2920 §3.1: DATA ends a pipelined group).
//
// After STARTTLS, or with implicit TLS, it only sees TLS records and the
// checks are off: go-smtp reads the plaintext from its own buffers.
type conn struct {
	net.Conn
	srv         *Server
	implicitTLS bool

	greeted atomic.Bool // the greeting (first Write) went out
	errors  atomic.Int32
	desync  atomic.Bool // data arrived before the 354 reply
	// idleTimeout > 0 (nanoseconds) pushes the read deadline forward on
	// every read: inactivity rather than total time (inside DATA).
	idleTimeout atomic.Int64

	mu     sync.Mutex
	last   []byte // the last chunk read, for the DATA synchronization check
	closed bool
}

var errEarlyTalker = errors.New("client talked before the greeting")

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if d := c.idleTimeout.Load(); n > 0 && d > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(time.Duration(d)))
	}
	if n > 0 && !c.implicitTLS {
		c.mu.Lock()
		c.last = append(c.last[:0], p[:n]...)
		c.mu.Unlock()
	}
	return n, err
}

func (c *conn) Write(p []byte) (int, error) {
	if c.greeted.CompareAndSwap(false, true) {
		if !c.implicitTLS && c.srv.cfg.GreetDelay > 0 && c.talksFirst(c.srv.cfg.GreetDelay) {
			// RFC 5321 §4.3.1: the client waits for the greeting. Spam
			// software often does not (Postfix postscreen "pregreet").
			c.srv.log.Info("smtp early talker", "client_ip", remoteIP(c.Conn))
			c.writeRaw("554 5.5.0 Protocol synchronization error: talked before the greeting\r\n")
			c.closeGracefully()
			return 0, errEarlyTalker
		}
	}
	if !c.implicitTLS && bytes.HasPrefix(p, []byte("354 ")) && c.sentBeforeDataReply() {
		c.desync.Store(true)
	}
	return c.Conn.Write(p)
}

// talksFirst waits up to d for the client to send anything.
func (c *conn) talksFirst(d time.Duration) bool {
	if err := c.Conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		return false
	}
	defer c.Conn.SetReadDeadline(time.Time{})
	var b [1]byte
	n, _ := c.Conn.Read(b[:])
	return n > 0
}

// sentBeforeDataReply reports whether the client sent bytes after its DATA
// command line before it could have seen the 354 reply: either in the same
// chunk that completed the DATA line, or already waiting in the socket.
func (c *conn) sentBeforeDataReply() bool {
	c.mu.Lock()
	last := c.last
	c.mu.Unlock()
	end := dataLineEnd(last)
	if end >= 0 && end < len(last) {
		return true
	}
	return pendingInput(c.Conn)
}

// dataLineEnd returns the offset just past the DATA command line in the
// chunk that completed it: the last line reading "DATA" (a body line of an
// earlier pipelined message can only come before it), or else the first
// line end (the chunk completed a DATA line begun in the previous chunk).
func dataLineEnd(chunk []byte) int {
	end := -1
	for i := 0; i < len(chunk); {
		j := bytes.IndexByte(chunk[i:], '\n')
		if j < 0 {
			break
		}
		line := bytes.TrimSuffix(chunk[i:i+j], []byte("\r"))
		if bytes.EqualFold(line, []byte("DATA")) {
			end = i + j + 1
		}
		i += j + 1
	}
	if end < 0 {
		if j := bytes.IndexByte(chunk, '\n'); j >= 0 {
			end = j + 1
		}
	}
	return end
}

// writeRaw writes a reply bypassing go-smtp (plaintext connections only).
func (c *conn) writeRaw(s string) {
	c.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	c.Conn.Write([]byte(s))
}

// closeGracefully ends a connection we refuse while the client may still
// be sending: FIN first and a short drain, so the kernel does not answer
// the unread input with a reset that could destroy our last reply.
func (c *conn) closeGracefully() {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		tc.CloseWrite()
		c.Conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		io.CopyN(io.Discard, c.Conn, 256<<10)
	}
	c.Close()
}

func (c *conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.srv.untrack(c)
	return c.Conn.Close()
}

// rawConn finds our conn under go-smtp's current connection.
func rawConn(nc net.Conn) *conn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, _ := nc.(*conn)
	return c
}

func remoteIP(nc net.Conn) net.IP {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP
	}
	return nil
}
