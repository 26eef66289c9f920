package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// rpcRequest is one call on the RPC channel (JSON, one request and one
// answer per connection: these are rare administrative calls).
type rpcRequest struct {
	Op   string `json:"op"` // join, remove, status
	ID   string `json:"id,omitempty"`
	Addr string `json:"addr,omitempty"`
	// Voter false joins as a non-voter (catching up before it counts).
	Voter bool `json:"voter,omitempty"`
	// Cmd is a command forwarded for the leader to commit.
	Cmd []byte `json:"cmd,omitempty"`
}

type rpcResponse struct {
	Error  string  `json:"error,omitempty"`
	Leader string  `json:"leader,omitempty"` // where to retry when this node does not lead
	Status *Status `json:"status,omitempty"`
	Result []byte  `json:"result,omitempty"`
}

var errRedirect = errors.New("not the leader")

func (n *Node) serveRPC(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var req rpcRequest
	if err := json.NewDecoder(io.LimitReader(c, 64<<20)).Decode(&req); err != nil {
		json.NewEncoder(c).Encode(rpcResponse{Error: "bad request: " + err.Error()})
		return
	}
	json.NewEncoder(c).Encode(n.handleRPC(req))
}

func (n *Node) handleRPC(req rpcRequest) rpcResponse {
	if req.Op == "status" {
		st := n.Status()
		return rpcResponse{Status: &st}
	}
	if req.Op == "vip-released" {
		if n.vipReleased != nil {
			n.vipReleased(req.ID)
		}
		return rpcResponse{}
	}
	if req.Op == "drill-stop" {
		if n.drillStop == nil {
			return rpcResponse{Error: "this node does not take drill-stop requests"}
		}
		n.log.Warn("stopping at once: failover drill request")
		go n.drillStop()
		return rpcResponse{}
	}
	if n.r().State() != raft.Leader {
		addr, _ := n.r().LeaderWithID()
		return rpcResponse{Error: errRedirect.Error(), Leader: string(addr)}
	}
	switch req.Op {
	case "join":
		if req.ID == "" || req.Addr == "" {
			return rpcResponse{Error: "join needs id and addr"}
		}
		var f raft.IndexFuture
		if req.Voter {
			f = n.r().AddVoter(raft.ServerID(req.ID), raft.ServerAddress(req.Addr), 0, 30*time.Second)
		} else {
			f = n.r().AddNonvoter(raft.ServerID(req.ID), raft.ServerAddress(req.Addr), 0, 30*time.Second)
		}
		if err := f.Error(); err != nil {
			return rpcResponse{Error: fmt.Sprintf("add %s: %v", req.ID, err)}
		}
		n.log.Info("node joined the cluster", "peer", req.ID, "addr", req.Addr, "voter", req.Voter)
		return rpcResponse{}
	case "apply":
		if n.codec == nil {
			return rpcResponse{Error: "this node does not take forwarded writes"}
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ApplyTimeout)
		defer cancel()
		v, err := n.Apply(ctx, req.Cmd)
		if err != nil {
			return rpcResponse{Error: err.Error()}
		}
		b, err := n.codec(v)
		if err != nil {
			return rpcResponse{Error: err.Error()}
		}
		return rpcResponse{Result: b}
	case "transfer":
		if err := n.TransferLeadership(req.ID); err != nil {
			return rpcResponse{Error: err.Error()}
		}
		return rpcResponse{}
	case "remove":
		if err := n.r().RemoveServer(raft.ServerID(req.ID), 0, 30*time.Second).Error(); err != nil {
			return rpcResponse{Error: fmt.Sprintf("remove %s: %v", req.ID, err)}
		}
		n.log.Info("node removed from the cluster", "peer", req.ID)
		return rpcResponse{}
	default:
		return rpcResponse{Error: fmt.Sprintf("unknown op %q", req.Op)}
	}
}

// call sends one RPC to addr, following redirects to the leader.
func (n *Node) call(ctx context.Context, addr string, req rpcRequest) (rpcResponse, error) {
	for hops := 0; hops < 5; hops++ {
		c, err := n.mux.Dial(ctx, addr, ChanRPC)
		if err != nil {
			return rpcResponse{}, err
		}
		if dl, ok := ctx.Deadline(); ok {
			c.SetDeadline(dl)
		}
		var resp rpcResponse
		err = json.NewEncoder(c).Encode(req)
		if err == nil {
			err = json.NewDecoder(c).Decode(&resp)
		}
		c.Close()
		if err != nil {
			return resp, fmt.Errorf("rpc %s to %s: %w", req.Op, addr, err)
		}
		if resp.Error == errRedirect.Error() {
			if resp.Leader == "" {
				return resp, fmt.Errorf("rpc %s: %s has no leader yet", req.Op, addr)
			}
			addr = resp.Leader
			continue
		}
		if resp.Error != "" {
			return resp, errors.New(resp.Error)
		}
		return resp, nil
	}
	return rpcResponse{}, fmt.Errorf("rpc %s: too many redirects", req.Op)
}

// Join asks the cluster at addr (any member) to add this node, retrying
// until ctx ends.
func (n *Node) Join(ctx context.Context, addr string) error {
	req := rpcRequest{Op: "join", ID: n.cfg.NodeID, Addr: string(n.transport.LocalAddr()), Voter: !n.cfg.NonVoter}
	var last error
	for {
		if _, err := n.call(ctx, addr, req); err == nil {
			return nil
		} else {
			last = err
			n.log.Warn("join failed, retrying", "via", addr, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("join via %s: %w (last error: %v)", addr, ctx.Err(), last)
		case <-time.After(time.Second):
		}
	}
}

// Remove takes a member out of the cluster (run on any member).
func (n *Node) Remove(ctx context.Context, id string) error {
	if n.r().State() == raft.Leader {
		resp := n.handleRPC(rpcRequest{Op: "remove", ID: id})
		if resp.Error != "" {
			return errors.New(resp.Error)
		}
		return nil
	}
	addr, _ := n.r().LeaderWithID()
	if addr == "" {
		return errors.New("remove: no leader")
	}
	_, err := n.call(ctx, string(addr), rpcRequest{Op: "remove", ID: id})
	return err
}

// TransferLeadership hands leadership to id, or to the most up-to-date
// follower when id is empty. Only the leader can do it.
func (n *Node) TransferLeadership(id string) error {
	if n.r().State() != raft.Leader {
		return ErrNotLeader
	}
	var f raft.Future
	if id == "" {
		f = n.r().LeadershipTransfer()
	} else {
		var addr raft.ServerAddress
		for _, p := range n.Peers() {
			if p.ID == id {
				addr = raft.ServerAddress(p.Addr)
			}
		}
		if addr == "" {
			return fmt.Errorf("transfer leadership: no member %q", id)
		}
		f = n.r().LeadershipTransferToServer(raft.ServerID(id), addr)
	}
	if err := f.Error(); err != nil {
		return fmt.Errorf("transfer leadership: %w", err)
	}
	return nil
}

// Leave takes this node out of the cluster (handing leadership over first
// if it leads).
func (n *Node) Leave(ctx context.Context) error {
	if len(n.Peers()) == 0 {
		return errors.New("leave: this node is the only member")
	}
	if n.r().State() == raft.Leader {
		if err := n.TransferLeadership(""); err != nil {
			return err
		}
		for i := 0; i < 100 && (n.LeaderAddr() == "" || n.r().State() == raft.Leader); i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return n.Remove(ctx, n.cfg.NodeID)
}

// PeerStatus asks a member for its own view (health, applied index).
func (n *Node) PeerStatus(ctx context.Context, addr string) (Status, error) {
	resp, err := n.call(ctx, addr, rpcRequest{Op: "status"})
	if err != nil {
		return Status{}, err
	}
	if resp.Status == nil {
		return Status{}, errors.New("status: empty answer")
	}
	return *resp.Status, nil
}

// AskTransfer asks the leader (from any member) to hand leadership over.
func (n *Node) AskTransfer(ctx context.Context, to string) error {
	if n.r().State() == raft.Leader {
		return n.TransferLeadership(to)
	}
	leader := n.LeaderAddr()
	if leader == "" {
		return errors.New("transfer: no leader")
	}
	_, err := n.call(ctx, leader, rpcRequest{Op: "transfer", ID: to})
	return err
}

// AskStop asks a member to stop its process at once, as a crash would (the
// failover drill's --kill). Only a member holding the cluster secret can ask.
func (n *Node) AskStop(ctx context.Context, addr string) error {
	_, err := n.call(ctx, addr, rpcRequest{Op: "drill-stop"})
	if err != nil && !errors.Is(err, errRedirect) {
		// The connection usually dies with the process: that is success.
		return nil
	}
	return err
}

// OnDrillStop registers what a "drill-stop" request does on this node.
func (n *Node) OnDrillStop(fn func()) { n.drillStop = fn }

// ResponseCodec turns FSM responses into bytes for a forwarded write.
type ResponseCodec func(resp any) ([]byte, error)

// SetResponseCodec enables write forwarding: a follower's writes are
// committed by the leader, which answers with the encoded FSM response.
func (n *Node) SetResponseCodec(c ResponseCodec) { n.codec = c }

// Forward commits cmd on the leader (from a follower) and returns the
// encoded response.
func (n *Node) Forward(ctx context.Context, cmd []byte) ([]byte, error) {
	leader := n.LeaderAddr()
	if leader == "" || n.mux == nil {
		return nil, ErrNotLeader
	}
	resp, err := n.call(ctx, leader, rpcRequest{Op: "apply", Cmd: cmd})
	if err != nil {
		return nil, fmt.Errorf("%w: forward to the leader: %v", ErrUnavailable, err)
	}
	return resp.Result, nil
}

// OnVIPReleased registers what to do when a former VIP holder reports that
// it has deleted the VIP (so a new leader need not wait for its lease).
func (n *Node) OnVIPReleased(fn func(from string)) { n.vipReleased = fn }

// TellVIPReleased tells the current leader that this node deleted the VIP.
func (n *Node) TellVIPReleased(ctx context.Context) error {
	for {
		if addr := n.LeaderAddr(); addr != "" && n.r().State() != raft.Leader {
			_, err := n.call(ctx, addr, rpcRequest{Op: "vip-released", ID: n.cfg.NodeID})
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
