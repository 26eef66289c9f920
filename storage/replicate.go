package storage

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/tandemmail/tandem/cluster"
)

// BlobReplicator copies message files between nodes over the cluster mux
// (DESIGN §2): the leader pushes every new blob to the followers and waits
// until a quorum (itself included) has it fsynced before the metadata is
// committed; a follower that misses a referenced blob fetches it from a
// peer, verified by its name.
//
// Wire format on cluster.ChanBlob, one request per round trip on a pooled
// connection:
//
//	push:  'P' sha(32 bytes) size(8) body → status(1)
//	fetch: 'F' sha(32 bytes)              → status(1) [size(8) body]
type BlobReplicator struct {
	mux   *cluster.Mux
	node  *cluster.Node
	blobs *BlobStore
	log   *slog.Logger

	mu    sync.Mutex
	pools map[string]chan net.Conn

	fetchCh chan string
	done    chan struct{}
	wg      sync.WaitGroup

	witness bool                 // this node keeps no blobs
	down    map[string]time.Time // peers whose last push failed, until when to skip them
}

const (
	blobOK       = 1
	blobNotFound = 2
	blobFailed   = 3
	// blobWitness: the peer is a witness that keeps no mail (DESIGN §5).
	blobWitness = 4
	// maxBlobSize bounds what a peer may push or announce.
	maxBlobSize = 1 << 31
)

// NewBlobReplicator serves the blob channel and starts the fetcher.
func NewBlobReplicator(node *cluster.Node, blobs *BlobStore, log *slog.Logger) *BlobReplicator {
	return newBlobReplicator(node, blobs, log, false)
}

// NewWitnessBlobServer answers blob pushes on a witness: it keeps no mail,
// and says so, so the leader counts it only when a data node is down.
func NewWitnessBlobServer(node *cluster.Node, log *slog.Logger) *BlobReplicator {
	return newBlobReplicator(node, nil, log, true)
}

func newBlobReplicator(node *cluster.Node, blobs *BlobStore, log *slog.Logger, witness bool) *BlobReplicator {
	r := &BlobReplicator{mux: node.Mux(), node: node, blobs: blobs, log: log, witness: witness,
		pools: map[string]chan net.Conn{}, fetchCh: make(chan string, 65536), done: make(chan struct{}),
		down: map[string]time.Time{}}
	r.mux.Handle(cluster.ChanBlob, r.serve)
	r.wg.Add(1)
	go r.fetchLoop()
	return r
}

// Close stops the fetcher and drops pooled connections.
func (r *BlobReplicator) Close() {
	select {
	case <-r.done:
		return
	default:
		close(r.done)
	}
	r.wg.Wait()
	r.mu.Lock()
	for _, p := range r.pools {
	drain:
		for {
			select {
			case c := <-p:
				c.Close()
			default:
				break drain
			}
		}
	}
	r.mu.Unlock()
}

func (r *BlobReplicator) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Minute))
		op, err := br.ReadByte()
		if err != nil {
			return
		}
		var raw [32]byte
		if _, err := io.ReadFull(br, raw[:]); err != nil {
			return
		}
		sha := hex.EncodeToString(raw[:])
		switch op {
		case 'P':
			var sz [8]byte
			if _, err := io.ReadFull(br, sz[:]); err != nil {
				return
			}
			size := int64(binary.BigEndian.Uint64(sz[:]))
			if size < 0 || size > maxBlobSize {
				c.Write([]byte{blobFailed})
				return
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Minute))
			lr := io.LimitReader(br, size)
			var status byte = blobOK
			if r.witness {
				io.Copy(io.Discard, lr)
				status = blobWitness
			} else if r.blobs.Has(sha) {
				io.Copy(io.Discard, lr)
			} else if b, err := r.blobs.PutVerified(sha, lr); err != nil {
				r.log.Warn("blob push refused", "blob", sha, "err", err)
				status = blobFailed
				io.Copy(io.Discard, lr)
			} else {
				// The reference arrives with the Raft entry; until then the
				// sweeper's age limit keeps the file.
				b.Release()
			}
			if _, err := c.Write([]byte{status}); err != nil {
				return
			}
		case 'F':
			if r.witness {
				if _, err := c.Write([]byte{blobNotFound}); err != nil {
					return
				}
				continue
			}
			f, err := r.blobs.Open(sha)
			if err != nil {
				if _, err := c.Write([]byte{blobNotFound}); err != nil {
					return
				}
				continue
			}
			st, err := f.Stat()
			if err != nil {
				f.Close()
				c.Write([]byte{blobFailed})
				return
			}
			var hdr [9]byte
			hdr[0] = blobOK
			binary.BigEndian.PutUint64(hdr[1:], uint64(st.Size()))
			c.SetWriteDeadline(time.Now().Add(10 * time.Minute))
			_, err = c.Write(hdr[:])
			if err == nil {
				_, err = io.Copy(c, f)
			}
			f.Close()
			if err != nil {
				return
			}
		default:
			return
		}
	}
}

func (r *BlobReplicator) pool(addr string) chan net.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pools[addr]
	if p == nil {
		p = make(chan net.Conn, 16)
		r.pools[addr] = p
	}
	return p
}

func (r *BlobReplicator) conn(ctx context.Context, addr string) (net.Conn, error) {
	c, _, err := r.connPooled(ctx, addr, false)
	return c, err
}

// connPooled returns an idle connection to addr (pooled true) unless fresh
// is asked for, else dials a new one.
func (r *BlobReplicator) connPooled(ctx context.Context, addr string, fresh bool) (net.Conn, bool, error) {
	if !fresh {
		select {
		case c := <-r.pool(addr):
			return c, true, nil
		default:
		}
	}
	c, err := r.mux.Dial(ctx, addr, cluster.ChanBlob)
	return c, false, err
}

func (r *BlobReplicator) put(addr string, c net.Conn) {
	select {
	case r.pool(addr) <- c:
	default:
		c.Close()
	}
}

// Replicate pushes a stored blob to the followers and returns once a quorum
// of voters, this node included, holds it fsynced. Followers that fail or
// are slow catch up later by fetching.
//
// A witness keeps no mail: it answers "witness" and counts only when too
// few data nodes are up to make the quorum (a pair with a witness keeps
// taking mail with one data node down, DESIGN §5). A peer whose push just
// failed is skipped for a few seconds, so a dead follower does not delay
// every delivery by a connection timeout.
func (r *BlobReplicator) Replicate(ctx context.Context, sha string, size int64) error {
	need := r.node.Quorum() - 1
	if need <= 0 {
		return nil
	}
	raw, err := hex.DecodeString(sha)
	if err != nil || len(raw) != 32 {
		return fmt.Errorf("replicate blob %q: bad name", sha)
	}
	type result struct {
		status byte
		err    error
	}
	results := make(chan result, 16)
	asked, skipped := 0, 0
	now := time.Now()
	for _, p := range r.node.Peers() {
		if !p.Voter {
			go r.push(context.WithoutCancel(ctx), p.Addr, sha, raw, size) // non-voters are not waited for
			continue
		}
		r.mu.Lock()
		until := r.down[p.Addr]
		r.mu.Unlock()
		if now.Before(until) {
			skipped++ // it fetches the blob itself when it applies the entry
			continue
		}
		asked++
		go func(addr string) {
			st, err := r.push(ctx, addr, sha, raw, size)
			r.mu.Lock()
			if err != nil {
				r.down[addr] = time.Now().Add(5 * time.Second)
			} else {
				delete(r.down, addr)
			}
			r.mu.Unlock()
			results <- result{st, err}
		}(p.Addr)
	}
	ok, witness := 0, 0
	var errs []error
	for i := 0; i < asked; i++ {
		select {
		case res := <-results:
			switch {
			case res.err != nil:
				errs = append(errs, res.err)
			case res.status == blobWitness:
				witness++
			default:
				ok++
			}
		case <-ctx.Done():
			return fmt.Errorf("replicate blob %s: %w", sha[:12], ctx.Err())
		}
		if ok >= need {
			return nil
		}
	}
	if ok+witness >= need && ok+witness > 0 && len(errs)+skipped > 0 {
		r.log.Warn("blob on fewer data nodes than wanted: a data node is down", "blob", sha, "copies", ok+1)
		return nil
	}
	if ok >= need {
		return nil
	}
	return fmt.Errorf("replicate blob %s: %d of %d peers have it: %w", sha[:12], ok, need, errors.Join(errs...))
}

// push sends a blob to one peer. A pooled connection may be stale (the
// peer restarted since it was made): then the push is tried once more on a
// fresh connection before the peer counts as failed.
func (r *BlobReplicator) push(ctx context.Context, addr, sha string, raw []byte, size int64) (byte, error) {
	st, pooled, err := r.pushOnce(ctx, addr, sha, raw, size, false)
	if err != nil && pooled {
		st, _, err = r.pushOnce(ctx, addr, sha, raw, size, true)
	}
	return st, err
}

func (r *BlobReplicator) pushOnce(ctx context.Context, addr, sha string, raw []byte, size int64, fresh bool) (byte, bool, error) {
	f, err := r.blobs.Open(sha)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	c, pooled, err := r.connPooled(dctx, addr, fresh)
	cancel()
	if err != nil {
		return 0, false, fmt.Errorf("push %s to %s: %w", sha[:12], addr, err)
	}
	dl := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	c.SetDeadline(dl)
	hdr := make([]byte, 0, 41)
	hdr = append(hdr, 'P')
	hdr = append(hdr, raw...)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(size))
	w := bufio.NewWriterSize(c, 64<<10)
	w.Write(hdr)
	_, err = io.Copy(w, f)
	if err == nil {
		err = w.Flush()
	}
	var status [1]byte
	if err == nil {
		_, err = io.ReadFull(c, status[:])
	}
	if err != nil {
		c.Close()
		return 0, pooled, fmt.Errorf("push %s to %s: %w", sha[:12], addr, err)
	}
	c.SetDeadline(time.Time{})
	r.put(addr, c)
	if status[0] != blobOK && status[0] != blobWitness {
		return 0, false, fmt.Errorf("push %s to %s: peer could not store it", sha[:12], addr)
	}
	return status[0], false, nil
}

// Fetch copies a blob from the first peer that has it.
func (r *BlobReplicator) Fetch(ctx context.Context, sha string) error {
	raw, err := hex.DecodeString(sha)
	if err != nil || len(raw) != 32 {
		return fmt.Errorf("fetch blob %q: bad name", sha)
	}
	var errs []error
	peers := r.node.Peers()
	// Ask the leader first: it has every committed blob.
	if l := r.node.LeaderAddr(); l != "" {
		for i, p := range peers {
			if p.Addr == l {
				peers[0], peers[i] = peers[i], peers[0]
			}
		}
	}
	for _, p := range peers {
		if err := r.fetchFrom(ctx, p.Addr, sha, raw); err != nil {
			errs = append(errs, err)
			continue
		}
		return nil
	}
	return fmt.Errorf("fetch blob %s: %w", sha[:12], errors.Join(errs...))
}

func (r *BlobReplicator) fetchFrom(ctx context.Context, addr, sha string, raw []byte) error {
	c, err := r.conn(ctx, addr)
	if err != nil {
		return err
	}
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	if _, err := c.Write(append([]byte{'F'}, raw...)); err != nil {
		c.Close()
		return err
	}
	br := bufio.NewReaderSize(c, 64<<10)
	status, err := br.ReadByte()
	if err != nil {
		c.Close()
		return err
	}
	if status != blobOK {
		r.put(addr, c)
		return fmt.Errorf("%s does not have it", addr)
	}
	var sz [8]byte
	if _, err := io.ReadFull(br, sz[:]); err != nil {
		c.Close()
		return err
	}
	size := int64(binary.BigEndian.Uint64(sz[:]))
	if size < 0 || size > maxBlobSize {
		c.Close()
		return fmt.Errorf("%s announced a %d-byte blob", addr, size)
	}
	b, err := r.blobs.PutVerified(sha, io.LimitReader(br, size))
	if err != nil {
		c.Close()
		return err
	}
	b.Release()
	if br.Buffered() > 0 {
		c.Close() // out of step: do not reuse
		return nil
	}
	c.SetDeadline(time.Time{})
	r.put(addr, c)
	return nil
}

// Want queues a blob to be fetched if this node lacks it.
func (r *BlobReplicator) Want(sha string) {
	select {
	case r.fetchCh <- sha:
	default:
		// Queue full: the periodic check (CheckAll) will find it.
	}
}

func (r *BlobReplicator) fetchLoop() {
	defer r.wg.Done()
	for {
		select {
		case <-r.done:
			return
		case sha := <-r.fetchCh:
			for attempt := 0; !r.blobs.Has(sha); attempt++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				err := r.Fetch(ctx, sha)
				cancel()
				if err == nil {
					break
				}
				r.log.Warn("fetch missing blob", "blob", sha, "attempt", attempt, "err", err)
				select {
				case <-r.done:
					return
				case <-time.After(min(time.Duration(attempt+1)*time.Second, 30*time.Second)):
				}
			}
		}
	}
}
