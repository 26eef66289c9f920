package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// imapDialer logs in to an IMAP server. TLS is "none" (plaintext LOGIN),
// "starttls" (RFC 3501 section 6.2.1, certificate not verified: loopback
// benchmark only) or "auto": plaintext unless the server advertises
// LOGINDISABLED or refuses the plaintext LOGIN while offering STARTTLS.
type imapDialer struct {
	Addr     string
	TLS      string
	Password string
	Timeout  time.Duration
}

func (d imapDialer) options() *imapclient.Options {
	return &imapclient.Options{
		TLSConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback benchmark
		Dialer:    &net.Dialer{Timeout: d.Timeout},
	}
}

// login returns a logged-in client for user.
func (d imapDialer) login(user string) (*imapclient.Client, error) {
	mode := d.TLS
	if mode == "" {
		mode = "auto"
	}
	if mode == "starttls" {
		return d.loginStartTLS(user)
	}
	c, err := imapclient.DialInsecure(d.Addr, d.options())
	if err != nil {
		return nil, fmt.Errorf("dial imap %s: %w", d.Addr, err)
	}
	caps := c.Caps()
	if mode == "auto" && caps.Has(imap.CapLoginDisabled) && caps.Has(imap.CapStartTLS) {
		c.Close()
		return d.loginStartTLS(user)
	}
	if err := c.Login(user, d.Password).Wait(); err != nil {
		c.Close()
		if mode == "auto" && caps.Has(imap.CapStartTLS) {
			return d.loginStartTLS(user)
		}
		return nil, fmt.Errorf("imap login %s: %w", user, err)
	}
	return c, nil
}

func (d imapDialer) loginStartTLS(user string) (*imapclient.Client, error) {
	c, err := imapclient.DialStartTLS(d.Addr, d.options())
	if err != nil {
		return nil, fmt.Errorf("dial imap+starttls %s: %w", d.Addr, err)
	}
	if err := c.Login(user, d.Password).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("imap login %s (starttls): %w", user, err)
	}
	return c, nil
}

// inboxCounter counts the messages in the INBOX of a set of users with
// STATUS INBOX (MESSAGES) (RFC 3501 section 6.3.10) over one session per
// user. That count is what "delivered" means in the end-to-end figures.
type inboxCounter struct {
	users   []string
	clients []*imapclient.Client
	workers int
}

func openCounter(ctx context.Context, d imapDialer, users []string) (*inboxCounter, error) {
	ic := &inboxCounter{users: users, clients: make([]*imapclient.Client, len(users)), workers: 8}
	err := ic.each(ctx, func(i int) error {
		c, err := d.login(users[i])
		if err != nil {
			return err
		}
		ic.clients[i] = c
		return nil
	})
	if err != nil {
		ic.Close()
		return nil, err
	}
	return ic, nil
}

// each runs f for every user index on ic.workers goroutines; first error wins.
func (ic *inboxCounter) each(ctx context.Context, f func(i int) error) error {
	idx := make(chan int)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for w := 0; w < ic.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range ic.users {
		if ctx.Err() != nil {
			break
		}
		idx <- i
	}
	close(idx)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// Count returns the total number of messages in the users' INBOXes.
func (ic *inboxCounter) Count(ctx context.Context) (int, error) {
	counts := make([]int, len(ic.users))
	err := ic.each(ctx, func(i int) error {
		sd, err := ic.clients[i].Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			return fmt.Errorf("status %s: %w", ic.users[i], err)
		}
		if sd.NumMessages != nil {
			counts[i] = int(*sd.NumMessages)
		}
		return nil
	})
	total := 0
	for _, n := range counts {
		total += n
	}
	return total, err
}

// Close logs out every session.
func (ic *inboxCounter) Close() {
	var wg sync.WaitGroup
	for _, c := range ic.clients {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Logout().Wait()
			c.Close()
		}()
	}
	wg.Wait()
}
