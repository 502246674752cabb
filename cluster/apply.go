package cluster

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/roster-registry/roster/fsm"
	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
	"github.com/roster-registry/roster/store"
)

// proposal is one write waiting to be committed.
type proposal struct {
	data []byte
	// key is the instance the command changes, "" for other commands.
	key  string
	done chan fsm.Result
}

// instanceKey returns the instance a command changes, or "". A batch never
// holds two commands on one instance: the batch is one revision, and one
// revision changes a key at most once (watchers and checker W rely on it).
func instanceKey(m proto.Message) string {
	key := func(ns, svc, id string) string { return ns + "/" + svc + "/" + id }
	switch c := m.(type) {
	case *raftcmdv1.Register:
		i := c.GetInstance()
		return key(i.GetNamespace(), i.GetService(), i.GetId())
	case *raftcmdv1.Deregister:
		return key(c.GetNamespace(), c.GetService(), c.GetId())
	case *raftcmdv1.SetMaintenance:
		return key(c.GetNamespace(), c.GetService(), c.GetId())
	case *raftcmdv1.SetHealth:
		return key(c.GetNamespace(), c.GetService(), c.GetId())
	case *raftcmdv1.Reap:
		return key(c.GetNamespace(), c.GetService(), c.GetId())
	case *raftcmdv1.SelfPreservation:
		if h := c.GetHold(); h != nil {
			return key(h.GetNamespace(), h.GetService(), h.GetId())
		}
	}
	return ""
}

// propose hands one encoded command to the group-commit loop and waits for
// its own result. Concurrent writes share Raft entries: the loop takes every
// proposal that is waiting (up to MaxBatch or MaxEntrySize) and commits them
// as one batch entry, so under load one fsync and one FSM transaction serve
// many calls, while a lone write pays no extra latency.
func (n *Node) propose(ctx context.Context, t fsm.CommandType, m proto.Message) (uint64, error) {
	return n.proposeRequest(ctx, "", t, m)
}

// proposeRequest proposes a client write. With a request id the command is
// wrapped in a Request stamped by the request clock (requestStamp), and the
// state machine applies it at most once: a repeat of the id returns the
// first result.
func (n *Node) proposeRequest(ctx context.Context, requestID string, t fsm.CommandType, m proto.Message) (uint64, error) {
	var data []byte
	var err error
	if requestID != "" {
		var stamp int64
		if stamp, err = n.requestStamp(ctx); err != nil {
			return 0, err
		}
		data, err = fsm.EncodeRequest(requestID, stamp, t, m)
	} else {
		data, err = fsm.Encode(t, m)
	}
	if err != nil {
		return 0, err
	}
	if len(data) > n.cfg.MaxEntrySize {
		return 0, fmt.Errorf("%w: %d bytes, the limit is %d", ErrEntryTooLarge, len(data), n.cfg.MaxEntrySize)
	}
	if !n.IsLeader() {
		return 0, ErrNotLeader
	}
	p := &proposal{data: data, key: instanceKey(m), done: make(chan fsm.Result, 1)}
	// The queue is long enough that a send rarely waits: try it alone first,
	// since a select locks every channel it names, and every waiting writer
	// names shutdownCh.
	select {
	case <-n.shutdownCh:
		return 0, ErrShutdown
	default:
	}
	select {
	case n.proposals <- p:
	default:
		select {
		case n.proposals <- p:
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-n.shutdownCh:
			return 0, ErrShutdown
		}
	}
	select {
	case r := <-p.done:
		return r.Revision, r.Err
	case <-ctx.Done():
		// The command may still commit; the caller cannot know.
		return 0, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	case <-n.shutdownCh:
		return 0, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ErrShutdown)
	}
}

func (n *Node) runProposals() {
	defer n.wg.Done()
	batch := make([]*proposal, 0, n.cfg.MaxBatch)
	// inflight bounds the entries handed to Raft and not yet applied: while
	// they replicate, new proposals queue up and leave together in the next
	// entry. A lone write never waits for a slot.
	inflight := make(chan struct{}, n.cfg.MaxInflight)
	for {
		var first *proposal
		select {
		case first = <-n.proposals:
		case <-n.shutdownCh:
			return
		}
		select {
		case inflight <- struct{}{}:
		case <-n.shutdownCh:
			fail([]*proposal{first}, ErrShutdown)
			return
		}
		batch = append(batch[:0], first)
		size := len(first.data)
		keys := map[string]bool{first.key: true}
	collect:
		for len(batch) < n.cfg.MaxBatch {
			select {
			case p := <-n.proposals:
				if size+len(p.data)+8 > n.cfg.MaxEntrySize || (p.key != "" && keys[p.key]) {
					n.commit(batch, inflight)
					inflight <- struct{}{}
					batch = append(batch[:0], p)
					size = len(p.data)
					clear(keys)
					keys[p.key] = true
					continue
				}
				batch = append(batch, p)
				size += len(p.data) + 8
				keys[p.key] = true
			default:
				break collect
			}
		}
		n.commit(batch, inflight)
	}
}

// commit hands a batch to Raft without waiting for it; a goroutine delivers
// the results, so the next batch can be proposed while this one replicates.
func (n *Node) commit(batch []*proposal, inflight chan struct{}) {
	ps := append([]*proposal(nil), batch...)
	var data []byte
	if len(ps) == 1 {
		data = ps[0].data
	} else {
		entries := make([][]byte, len(ps))
		for i, p := range ps {
			entries[i] = p.data
		}
		var err error
		if data, err = fsm.EncodeBatch(entries); err != nil {
			<-inflight
			fail(ps, err)
			return
		}
	}
	f := n.raft.Apply(data, n.cfg.ApplyTimeout)
	go func() {
		err := f.Error()
		<-inflight
		if err != nil {
			fail(ps, mapRaftError(err))
			return
		}
		answer(ps, f.Response())
	}()
}

// answer gives each proposal of an applied entry its result. Every
// proposal gets an answer, whatever the state machine returned: one Result
// for a batch is the verdict on the whole entry (a batch that did not
// decode, so none of it was applied), and a response that does not fit
// the batch fails all of it rather than leave a caller waiting out its
// deadline or the node panicking.
func answer(ps []*proposal, resp any) {
	switch r := resp.(type) {
	case fsm.Result:
		for _, p := range ps {
			p.done <- r
		}
	case fsm.BatchResult:
		if len(r) != len(ps) {
			fail(ps, fmt.Errorf("the state machine answered %d results for a batch of %d", len(r), len(ps)))
			return
		}
		for i, p := range ps {
			p.done <- r[i]
		}
	default:
		fail(ps, fmt.Errorf("unexpected apply response %T", r))
	}
}

func fail(ps []*proposal, err error) {
	for _, p := range ps {
		p.done <- fsm.Result{Err: err}
	}
}

// requestStamp returns the stamp of a Request entry proposed now. It is not
// the wall clock: it only ages remembered request results, and a leader
// whose clock runs ahead would forget them all at once (see requestClock).
// A leader whose barrier is not through yet does not know the largest stamp
// of earlier terms, so the write waits for it; nothing is proposed before.
// The wait ends with ErrNotLeader when the term ends (before its barrier
// or after), and with ErrLeaderNotReady wrapping ctx's error when ctx ends
// first: either way nothing was applied, and the caller may retry at the
// leader.
func (n *Node) requestStamp(ctx context.Context) (int64, error) {
	for {
		stamp, ok, changed := n.requestClock.stamp()
		if ok {
			return stamp, nil
		}
		if !n.IsLeader() {
			return 0, ErrNotLeader
		}
		if hook := n.cfg.TestHooks.RequestWait; hook != nil {
			hook()
		}
		select {
		case <-changed:
		case <-ctx.Done():
			// Nothing was proposed: say so, or a caller would take the
			// context's end for a write whose outcome is unknown.
			return 0, fmt.Errorf("%w: %w", ErrLeaderNotReady, ctx.Err())
		case <-n.shutdownCh:
			return 0, ErrShutdown
		}
	}
}

func now() int64 { return time.Now().UnixNano() }

// wallNow is the node's wall clock, for the times commands carry to be
// shown (registered, status changed): never for request stamps.
func (n *Node) wallNow() int64 { return n.cfg.clock.Now().UnixNano() }

func clampU32(v int) uint32 {
	if v <= 0 {
		return 0
	}
	return uint32(min(v, math.MaxUint32))
}

// Register upserts an instance and returns its revision. The instance must
// already be validated; the leader stamps the time. requestID names the
// client's call: a repeat of it returns the first result and changes
// nothing ("" applies unconditionally). A TTL registration's lease is
// running when Register returns.
func (n *Node) Register(ctx context.Context, inst *store.Instance, requestID string) (uint64, error) {
	return n.RegisterWithin(ctx, inst, requestID, store.InstanceLimits{})
}

// RegisterWithin is Register with instance-count limits: the leader checks
// them against its state, then stamps them into the command so that every
// node's state machine applies the same check. A registration adding an
// instance beyond them fails with store.ErrLimitExceeded and changes nothing.
func (n *Node) RegisterWithin(ctx context.Context, inst *store.Instance, requestID string, lim store.InstanceLimits) (uint64, error) {
	cmd := &raftcmdv1.Register{Instance: store.InstanceToRecord(inst), NowUnixNs: n.wallNow()}
	if lim.PerService > 0 || lim.PerNamespace > 0 {
		cmd.Limits = &raftcmdv1.InstanceLimits{PerService: clampU32(lim.PerService), PerNamespace: clampU32(lim.PerNamespace)}
	}
	// A retry of a registration the state machine remembers gets its first
	// result from it, even when the limits would refuse it now (the
	// instance went and its service filled up): the pre-check must not
	// answer for it. Looked up only when the pre-check refuses, as the
	// lookup walks the remembered results.
	v := n.Store().View()
	if err := v.CheckInstanceLimits(inst.Key(), lim); err != nil && !remembered(v, requestID, fsm.RegisterType, cmd) {
		return 0, err
	}
	rev, err := n.proposeRequest(ctx, requestID, fsm.RegisterType, cmd)
	if err == nil {
		// The lease starts here, whichever front end registered, so a
		// heartbeat sent as soon as Register returns finds it.
		n.leases.adopt(inst, rev)
	}
	return rev, err
}

// remembered reports whether v remembers request id as this very request,
// command m of type t (the same digest): the state machine then answers a
// repeat with the first result and applies nothing. The same id with
// another digest is not: that one is refused as reused, or by the limits.
func remembered(v *store.View, id string, t fsm.CommandType, m proto.Message) bool {
	if id == "" {
		return false
	}
	r := v.Request(id)
	if r == nil {
		return false
	}
	digest, err := fsm.RequestDigest(t, m)
	return err == nil && bytes.Equal(r.Digest[:], digest)
}

// Deregister removes an instance; store.ErrNotFound if it is not registered.
// requestID is as for Register.
func (n *Node) Deregister(ctx context.Context, k store.Key, requestID string) (uint64, error) {
	return n.proposeRequest(ctx, requestID, fsm.DeregisterType, &raftcmdv1.Deregister{Namespace: k.Namespace, Service: k.Service, Id: k.ID})
}

// SetMaintenance drains (enabled=false) or re-enables an instance.
// requestID is as for Register.
func (n *Node) SetMaintenance(ctx context.Context, k store.Key, enabled bool, reason, requestID string) (uint64, error) {
	return n.proposeRequest(ctx, requestID, fsm.SetMaintenanceType, &raftcmdv1.SetMaintenance{
		Namespace: k.Namespace, Service: k.Service, Id: k.ID, Enabled: enabled, Reason: reason})
}

// SetHealth commits a health transition of registration regRev.
func (n *Node) SetHealth(ctx context.Context, k store.Key, regRev uint64, h store.Health, reason string) (uint64, error) {
	return n.propose(ctx, fsm.SetHealthType, &raftcmdv1.SetHealth{
		Namespace: k.Namespace, Service: k.Service, Id: k.ID, RegistrationRevision: regRev,
		Status: int32(h), Reason: reason, NowUnixNs: n.wallNow()})
}

// Reap removes registration regRev of an instance.
func (n *Node) Reap(ctx context.Context, k store.Key, regRev uint64, reason string) (uint64, error) {
	return n.propose(ctx, fsm.ReapType, &raftcmdv1.Reap{
		Namespace: k.Namespace, Service: k.Service, Id: k.ID, RegistrationRevision: regRev, Reason: reason})
}

func (n *Node) upsertMember(ctx context.Context, m store.Member) error {
	_, err := n.propose(ctx, fsm.UpsertMemberType, &raftcmdv1.UpsertMember{
		Member: &raftcmdv1.Member{NodeId: m.NodeID, RaftAddr: m.RaftAddr, ApiAddr: m.APIAddr, JoinedToVote: m.JoinedToVote}})
	return err
}

func (n *Node) removeMember(ctx context.Context, id string) error {
	_, err := n.propose(ctx, fsm.RemoveMemberType, &raftcmdv1.RemoveMember{NodeId: id})
	return err
}
