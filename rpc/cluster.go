package rpc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/roster-registry/roster/cluster"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/store"
)

// Status implements rosterv1.ClusterServer.
func (s *Server) Status(ctx context.Context, req *rosterv1.StatusRequest) (*rosterv1.StatusResponse, error) {
	if req.Read != nil {
		if err := s.readBarrier(ctx, req.Read); err != nil {
			return nil, err
		}
	}
	st := s.node.Status()
	out := &rosterv1.StatusResponse{
		NodeId:        st.NodeID,
		State:         st.State,
		LeaderId:      st.LeaderID,
		LeaderApiAddr: st.LeaderAPI,
		Term:          st.Term,
		CommitIndex:   st.CommitIndex,
		AppliedIndex:  st.Applied,
		Revision:      st.Revision,
		RaftAddr:      s.node.RaftAddr(),
		ApiAddr:       s.node.APIAddr(),
		LastLogIndex:  s.node.LastIndex(),
	}
	if st.LastContact > 0 {
		out.LastContact = durationpb.New(st.LastContact)
	}
	out.Instances = uint64(s.node.Store().View().Count())
	out.Leases = uint64(s.node.Leases())
	set := s.node.SelfPreservationSettings()
	out.SelfPreservationThreshold = set.Threshold
	out.SelfPreservationMinLeases = uint32(set.MinLeases)
	out.SelfPreservationMaxHold = durationpb.New(set.MaxHold)
	out.SelfPreservationWindow = durationpb.New(set.Window)
	out.SelfPreservationServiceMinLeases = serviceMinLeases(set.ServiceMinLeases)
	if s.node.IsLeader() {
		sp := s.node.SelfPreservation()
		out.SelfPreservation = sp.Active
		out.SelfPreservationServices = sp.Services
		out.HeldExpiries = uint64(sp.Held)
	} else {
		out.SelfPreservation, out.SelfPreservationServices = s.sp.snapshot()
	}
	out.StartedAt = timestamppb.New(s.node.StartedAt())
	for _, lc := range s.node.LeaderChanges() {
		out.LeaderChanges = append(out.LeaderChanges, &rosterv1.LeaderChange{
			LeaderId: lc.LeaderID, Term: lc.Term, At: timestamppb.New(lc.At),
		})
	}
	if req.IncludeHash {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// One view holds the state and the applied index committed with
		// it, so the hash and its index always describe the same state.
		v := s.node.Store().View()
		h, err := v.Hash()
		if err != nil {
			return nil, err
		}
		out.StateHash, out.HashIndex = h, v.Applied()
	}
	return out, nil
}

// memberStatusTimeout bounds the Status call to one member when Members
// is asked for every member's status.
const memberStatusTimeout = time.Second

// Members implements rosterv1.ClusterServer. A follower relays the call
// to the leader, which alone knows whom it hears from and runs autopilot;
// when the leader cannot be reached, the follower answers from its own
// view of the configuration.
func (s *Server) Members(ctx context.Context, req *rosterv1.MembersRequest) (*rosterv1.MembersResponse, error) {
	if !s.node.IsLeader() && !isForwarded(ctx) {
		if id, addr := s.node.Leader(); id != "" && addr != "" {
			out, err := relay(ctx, s, id, addr, func(ctx context.Context, cc *grpc.ClientConn) (*rosterv1.MembersResponse, error) {
				return rosterv1.NewClusterClient(cc).Members(ctx, req)
			})
			if err == nil {
				return out, nil
			}
			if !leaderUnreachable(err) {
				return nil, err
			}
			s.logger.Debug("members: the leader did not answer; answering from this node's view", "leader", id, "error", err)
		}
	}
	return s.localMembers(ctx, req)
}

// leaderUnreachable: the relayed call failed for want of a leader that
// answers, not because the leader refused it.
func leaderUnreachable(err error) bool {
	if errors.Is(err, errLeaderUnreachable) || errors.Is(err, cluster.ErrNotLeader) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.FailedPrecondition:
		return true
	}
	return false
}

func (s *Server) localMembers(ctx context.Context, req *rosterv1.MembersRequest) (*rosterv1.MembersResponse, error) {
	ms, err := s.node.Members()
	if err != nil {
		return nil, err
	}
	out := &rosterv1.MembersResponse{}
	for _, m := range ms {
		pm := &rosterv1.Member{
			NodeId: m.NodeID, RaftAddr: m.RaftAddr, ApiAddr: m.APIAddr,
			Voter: m.Voter, Leader: m.Leader, Healthy: m.Healthy, ReadReplica: m.ReadReplica,
		}
		if ap := m.Autopilot; ap != nil {
			pm.Autopilot = &rosterv1.AutopilotHealth{
				Healthy: ap.Healthy, State: ap.State, Failed: ap.Failed,
				LastContact: durationpb.New(ap.LastContact), LastIndex: ap.LastIndex, LastTerm: ap.LastTerm,
			}
			if !ap.StableSince.IsZero() {
				pm.Autopilot.StableSince = timestamppb.New(ap.StableSince)
			}
		}
		out.Members = append(out.Members, pm)
	}
	if ap, ok := s.node.AutopilotState(); ok {
		out.AutopilotHealthy = &ap.Healthy
		out.FailureTolerance = int32(ap.FailureTolerance)
	}
	if req.IncludeStatus {
		var wg sync.WaitGroup
		for _, m := range out.Members {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := s.memberStatus(ctx, m)
				m.Status = st
				if err != nil {
					m.StatusError = status.Convert(err).Message()
				}
			}()
		}
		wg.Wait()
	}
	return out, nil
}

// memberStatus asks one member for its Status: this node answers itself,
// the others over the peer connections used for forwarding. Status is
// open to every caller, so no token is passed on.
func (s *Server) memberStatus(ctx context.Context, m *rosterv1.Member) (*rosterv1.StatusResponse, error) {
	if m.NodeId == s.node.Status().NodeID {
		return s.Status(ctx, &rosterv1.StatusRequest{})
	}
	if m.ApiAddr == "" {
		return nil, status.Error(codes.Unavailable, "its API address is not known yet")
	}
	cc, err := s.peers.get(m.ApiAddr)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "dial %s: %v", m.ApiAddr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, memberStatusTimeout)
	defer cancel()
	return rosterv1.NewClusterClient(cc).Status(ctx, &rosterv1.StatusRequest{})
}

// fetchServerStats asks the server at apiAddr for the Raft state the
// leader's autopilot needs, over the peer connections.
func (s *Server) fetchServerStats(ctx context.Context, id, apiAddr string) (cluster.ServerStats, error) {
	cc, err := s.peers.get(apiAddr)
	if err != nil {
		return cluster.ServerStats{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, memberStatusTimeout)
	defer cancel()
	st, err := rosterv1.NewClusterClient(cc).Status(ctx, &rosterv1.StatusRequest{})
	if err != nil {
		return cluster.ServerStats{}, err
	}
	if st.NodeId != id {
		return cluster.ServerStats{}, fmt.Errorf("%s answers as %q, not %q", apiAddr, st.NodeId, id)
	}
	return cluster.ServerStats{LastContact: st.LastContact.AsDuration(), LastTerm: st.Term, LastIndex: st.LastLogIndex}, nil
}

// Join implements rosterv1.ClusterServer.
func (s *Server) Join(ctx context.Context, req *rosterv1.JoinRequest) (*rosterv1.JoinResponse, error) {
	if err := store.CheckID("node id", req.NodeId); err != nil {
		return nil, invalid(err)
	}
	if err := validateHostPort("raft address", req.RaftAddr); err != nil {
		return nil, err
	}
	if err := validateHostPort("api address", req.ApiAddr); err != nil {
		return nil, err
	}
	return onLeader(ctx, s, repeatable,
		func(ctx context.Context) (*rosterv1.JoinResponse, error) {
			if req.UpdateOnly {
				return &rosterv1.JoinResponse{}, s.node.UpdateMember(ctx, req.NodeId, req.RaftAddr, req.ApiAddr)
			}
			return &rosterv1.JoinResponse{}, s.node.Join(ctx, req.NodeId, req.RaftAddr, req.ApiAddr, !req.NonVoter)
		},
		func(ctx context.Context, cc *grpc.ClientConn) (*rosterv1.JoinResponse, error) {
			return rosterv1.NewClusterClient(cc).Join(ctx, req)
		})
}

// RemoveNode implements rosterv1.ClusterServer.
func (s *Server) RemoveNode(ctx context.Context, req *rosterv1.RemoveNodeRequest) (*rosterv1.RemoveNodeResponse, error) {
	if req.NodeId == "" {
		return nil, invalidf("node id is required")
	}
	return onLeader(ctx, s, applyOnce,
		func(ctx context.Context) (*rosterv1.RemoveNodeResponse, error) {
			return &rosterv1.RemoveNodeResponse{}, s.node.Remove(ctx, req.NodeId)
		},
		func(ctx context.Context, cc *grpc.ClientConn) (*rosterv1.RemoveNodeResponse, error) {
			return rosterv1.NewClusterClient(cc).RemoveNode(ctx, req)
		})
}

// TransferLeadership implements rosterv1.ClusterServer.
func (s *Server) TransferLeadership(ctx context.Context, req *rosterv1.TransferLeadershipRequest) (*rosterv1.TransferLeadershipResponse, error) {
	return onLeader(ctx, s, applyOnce,
		func(ctx context.Context) (*rosterv1.TransferLeadershipResponse, error) {
			if err := s.node.TransferLeadership(ctx, req.NodeId); err != nil {
				return nil, err
			}
			// This node has stepped down; the new leader is known once
			// it has been heard from. The wait ends early enough for the
			// caller to read that it is not known yet.
			wait, cancel := answerBefore(ctx)
			defer cancel()
			id, err := s.node.AwaitNewLeader(wait)
			if err != nil {
				return nil, err
			}
			return &rosterv1.TransferLeadershipResponse{LeaderId: id}, nil
		},
		func(ctx context.Context, cc *grpc.ClientConn) (*rosterv1.TransferLeadershipResponse, error) {
			return rosterv1.NewClusterClient(cc).TransferLeadership(ctx, req)
		})
}

// answerBefore returns ctx cut short by a fifth of the time left before its
// deadline, at most a second: a handler that waits for something until the
// deadline would otherwise answer just as its caller (a client, or a
// follower's relayed attempt) stops listening, and the caller would see a
// bare DeadlineExceeded instead of what the handler knew.
func answerBefore(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	margin := min(time.Until(deadline)/5, time.Second)
	return context.WithDeadline(ctx, deadline.Add(-margin))
}

// ReadIndex implements rosterv1.ClusterServer; only the leader answers.
func (s *Server) ReadIndex(ctx context.Context, _ *rosterv1.ReadIndexRequest) (*rosterv1.ReadIndexResponse, error) {
	if !s.node.IsLeader() {
		return nil, cluster.ErrNotLeader
	}
	idx, err := s.node.ReadIndex(ctx)
	if err != nil {
		return nil, err
	}
	return &rosterv1.ReadIndexResponse{ReadIndex: idx, Term: s.node.Status().Term}, nil
}

// SetSelfPreservation implements rosterv1.ClusterServer: it commits a
// change of the replicated self-preservation settings. A request that sets
// nothing turns self-preservation off, as threshold 0 did before the other
// fields existed.
func (s *Server) SetSelfPreservation(ctx context.Context, req *rosterv1.SetSelfPreservationRequest) (*rosterv1.SetSelfPreservationResponse, error) {
	change, err := selfPreservationChange(req)
	if err != nil {
		return nil, err
	}
	return onLeader(ctx, s, repeatable,
		func(ctx context.Context) (*rosterv1.SetSelfPreservationResponse, error) {
			set, err := s.node.SetSelfPreservation(ctx, change)
			if err != nil {
				return nil, err
			}
			return &rosterv1.SetSelfPreservationResponse{
				Threshold: set.Threshold, MinLeases: uint32(set.MinLeases), MaxHold: durationpb.New(set.MaxHold),
				ServiceMinLeases: serviceMinLeases(set.ServiceMinLeases), Window: durationpb.New(set.Window),
			}, nil
		},
		func(ctx context.Context, cc *grpc.ClientConn) (*rosterv1.SetSelfPreservationResponse, error) {
			return rosterv1.NewClusterClient(cc).SetSelfPreservation(ctx, req)
		})
}

// selfPreservationChange validates a request and converts it.
func selfPreservationChange(req *rosterv1.SetSelfPreservationRequest) (cluster.SelfPreservationChange, error) {
	c := cluster.SelfPreservationChange{Reset: req.Reset_, Threshold: req.Threshold}
	if req.MinLeases != nil {
		v := int(*req.MinLeases)
		c.MinLeases = &v
	}
	if req.MaxHold != nil {
		if err := req.MaxHold.CheckValid(); err != nil {
			return c, invalidf("max_hold: %v", err)
		}
		d := req.MaxHold.AsDuration()
		c.MaxHold = &d
	}
	for svc, n := range req.ServiceMinLeases {
		ns, name, ok := strings.Cut(svc, "/")
		if !ok {
			return c, invalidf("service_min_leases key %q must be namespace/service", truncate(svc))
		}
		if _, err := validateNamespace(ns); err != nil {
			return c, err
		}
		if err := validateService(name); err != nil {
			return c, err
		}
		if c.ServiceMinLeases == nil {
			c.ServiceMinLeases = map[string]int{}
		}
		c.ServiceMinLeases[svc] = int(n)
	}
	if c.IsZero() {
		off := 0.0
		c.Threshold = &off
	}
	return c, c.Validate()
}

func serviceMinLeases(m map[string]int) map[string]uint32 {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]uint32, len(m))
	for k, v := range m {
		out[k] = uint32(v)
	}
	return out
}
