package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/roster-registry/roster/client"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// statusJSON is what status prints with -o json.
type statusJSON struct {
	NodeID           string `json:"node_id"`
	State            string `json:"state"`
	LeaderID         string `json:"leader_id"`
	LeaderAPIAddr    string `json:"leader_api_addr"`
	Term             uint64 `json:"term"`
	CommitIndex      uint64 `json:"commit_index"`
	AppliedIndex     uint64 `json:"applied_index"`
	Revision         uint64 `json:"revision"`
	LastContact      string `json:"last_contact"`
	SelfPreservation bool   `json:"self_preservation"`
	Instances        uint64 `json:"instances"`
	Leases           uint64 `json:"leases"`
	RaftAddr         string `json:"raft_addr"`
	APIAddr          string `json:"api_addr"`
}

func (a *app) statusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the cluster as the answering node sees it",
		Long: `status shows the Raft state of the node that answers: its role, the leader,
term, commit and applied indexes, registry revision, time since it last heard
from the leader, and instance and lease counts.

-o json prints {"node_id", "state", "leader_id", "leader_api_addr", "term",
"commit_index", "applied_index", "revision", "last_contact" (a duration such
as "12ms"), "self_preservation", "instances", "leases", "raft_addr",
"api_addr"}.`,
		Example: `  roster status
  roster --addr 10.0.0.2:7420 status -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				s, err := c.Status(ctx, &rosterv1.StatusRequest{})
				if err != nil {
					return err
				}
				out := statusJSON{
					NodeID: s.GetNodeId(), State: s.GetState(), LeaderID: s.GetLeaderId(), LeaderAPIAddr: s.GetLeaderApiAddr(),
					Term: s.GetTerm(), CommitIndex: s.GetCommitIndex(), AppliedIndex: s.GetAppliedIndex(),
					Revision: s.GetRevision(), LastContact: s.GetLastContact().AsDuration().String(),
					SelfPreservation: s.GetSelfPreservation(), Instances: s.GetInstances(), Leases: s.GetLeases(),
					RaftAddr: s.GetRaftAddr(), APIAddr: s.GetApiAddr(),
				}
				if a.json() {
					return writeJSON(a.stdout, out)
				}
				t := newTable(a.stdout, "NODE", out.NodeID)
				u := func(n uint64) string { return strconv.FormatUint(n, 10) }
				t.row("STATE", out.State)
				t.row("LEADER", orDash(out.LeaderID)+" "+orDash(out.LeaderAPIAddr))
				t.row("TERM", u(out.Term))
				t.row("COMMIT INDEX", u(out.CommitIndex))
				t.row("APPLIED INDEX", u(out.AppliedIndex))
				t.row("REVISION", u(out.Revision))
				t.row("LAST CONTACT", out.LastContact)
				t.row("SELF PRESERVATION", strconv.FormatBool(out.SelfPreservation))
				t.row("INSTANCES", u(out.Instances))
				t.row("LEASES", u(out.Leases))
				t.row("RAFT ADDR", orDash(out.RaftAddr))
				t.row("API ADDR", orDash(out.APIAddr))
				return t.flush()
			})
		},
	}
}

// membersJSON is what members prints with -o json.
type membersJSON struct {
	Members []memberJSON `json:"members"`
	// AutopilotHealthy and FailureTolerance are the leader's autopilot
	// summary, absent when no autopilot state is known.
	AutopilotHealthy *bool `json:"autopilot_healthy,omitempty"`
	FailureTolerance *int  `json:"failure_tolerance,omitempty"`
}

type memberJSON struct {
	NodeID      string         `json:"node_id"`
	RaftAddr    string         `json:"raft_addr"`
	APIAddr     string         `json:"api_addr"`
	Voter       bool           `json:"voter"`
	Leader      bool           `json:"leader"`
	Healthy     bool           `json:"healthy"`
	ReadReplica bool           `json:"read_replica"`
	Autopilot   *autopilotJSON `json:"autopilot,omitempty"`
}

type autopilotJSON struct {
	Healthy     bool   `json:"healthy"`
	State       string `json:"state"`
	StableSince string `json:"stable_since,omitempty"`
	Failed      bool   `json:"failed"`
	LastContact string `json:"last_contact"`
	LastIndex   uint64 `json:"last_index"`
	LastTerm    uint64 `json:"last_term"`
}

// health is how the members table shows a member's health: failed (the
// leader has not reached it for the dead-server threshold), healthy or
// unhealthy.
func (m memberJSON) health() string {
	switch {
	case m.Autopilot != nil && m.Autopilot.Failed:
		return "failed"
	case m.Healthy:
		return "healthy"
	default:
		return "unhealthy"
	}
}

// role names a member's part in the cluster, autopilot's word first.
func (m memberJSON) role() string {
	switch {
	case m.Leader:
		return "leader"
	case m.Autopilot != nil && m.Autopilot.State != "":
		return m.Autopilot.State
	case m.Voter:
		return "voter"
	case m.ReadReplica:
		return "read-replica"
	default:
		return "non-voter"
	}
}

func (a *app) membersCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the nodes of the cluster",
		Long: `members lists the nodes of the cluster as the leader sees them (a follower
relays the call; without a leader it answers from its own view): addresses,
role, health and, from the leader's autopilot, since when each has had it.

ROLE is leader, voter, staging (joined to vote; autopilot promotes it once
it has been healthy for the stabilization time), read-replica or non-voter.
HEALTH is healthy or unhealthy, by autopilot's verdict when it runs (heard
from within the last-contact threshold, on the leader's term, not too far
behind), otherwise by whether the leader hears from it; or failed: the
leader has not reached it for the dead-server threshold, and autopilot
removes it unless that would leave fewer voters than the minimum quorum.
SINCE is when autopilot last saw its health change (for a failed server,
when it became unhealthy).

-o json prints {"members": [{"node_id", "raft_addr", "api_addr", "voter",
"leader", "healthy", "read_replica", "autopilot": {"healthy", "state",
"stable_since", "failed", "last_contact", "last_index", "last_term"}}],
"autopilot_healthy", "failure_tolerance"}; "stable_since" is SINCE, whichever
way the health went.`,
		Example: `  roster members -o json`,
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Members(ctx, &rosterv1.MembersRequest{})
				if err != nil {
					return err
				}
				out := membersJSON{Members: []memberJSON{}}
				for _, m := range resp.GetMembers() {
					mj := memberJSON{
						NodeID: m.GetNodeId(), RaftAddr: m.GetRaftAddr(), APIAddr: m.GetApiAddr(),
						Voter: m.GetVoter(), Leader: m.GetLeader(), Healthy: m.GetHealthy(), ReadReplica: m.GetReadReplica(),
					}
					if ap := m.GetAutopilot(); ap != nil {
						mj.Autopilot = &autopilotJSON{
							Healthy: ap.GetHealthy(), State: ap.GetState(), Failed: ap.GetFailed(),
							LastContact: ap.GetLastContact().AsDuration().String(), LastIndex: ap.GetLastIndex(), LastTerm: ap.GetLastTerm(),
						}
						if ap.GetStableSince() != nil {
							mj.Autopilot.StableSince = ap.GetStableSince().AsTime().UTC().Format(time.RFC3339)
						}
					}
					out.Members = append(out.Members, mj)
				}
				if resp.AutopilotHealthy != nil {
					h, ft := resp.GetAutopilotHealthy(), int(resp.GetFailureTolerance())
					out.AutopilotHealthy, out.FailureTolerance = &h, &ft
				}
				if a.json() {
					return writeJSON(a.stdout, out)
				}
				t := newTable(a.stdout, "NODE", "RAFT ADDR", "API ADDR", "ROLE", "HEALTH", "SINCE")
				for _, m := range out.Members {
					since := "-"
					if ap := m.Autopilot; ap != nil {
						since = orDash(ap.StableSince)
					}
					t.row(m.NodeID, orDash(m.RaftAddr), orDash(m.APIAddr), m.role(), m.health(), since)
				}
				if err := t.flush(); err != nil {
					return err
				}
				if out.AutopilotHealthy != nil {
					_, err := fmt.Fprintf(a.stdout, "autopilot: healthy=%t failure_tolerance=%d\n", *out.AutopilotHealthy, *out.FailureTolerance)
					return err
				}
				return nil
			})
		},
	}
}

// nodeJSON is what remove-node prints with -o json.
type nodeJSON struct {
	NodeID string `json:"node_id"`
}

func (a *app) removeNodeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "remove-node ID",
		Short: "Remove a node from the cluster",
		Long: `remove-node removes node ID from the Raft configuration (the leader does it).
It is not retried on another node once sent. The only voter cannot be
removed. -o json prints {"node_id": ID}.`,
		Example: `  roster remove-node n3`,
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				if _, err := c.RemoveNode(ctx, &rosterv1.RemoveNodeRequest{NodeId: args[0]}); err != nil {
					return err
				}
				if a.json() {
					return writeJSON(a.stdout, nodeJSON{NodeID: args[0]})
				}
				_, err := fmt.Fprintf(a.stdout, "removed node %s\n", args[0])
				return err
			})
		},
	}
}

// leaderJSON is what transfer-leadership prints with -o json.
type leaderJSON struct {
	LeaderID string `json:"leader_id"`
}

func (a *app) transferLeadershipCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "transfer-leadership [ID]",
		Short: "Ask the leader to hand leadership to another voter",
		Long: `transfer-leadership asks the leader to hand over to voter ID, or to a voter
Raft chooses when ID is not given, and prints the new leader once it is known.
A read replica, the leader itself or an unknown ID is refused and nothing
changes. When another transfer is under way, when Raft gives up on this one,
or when no new leader has been heard from by the time the wait ends, it exits
1 with a line saying which, and who leads if that is known.
-o json prints {"leader_id": ID}.`,
		Example: `  roster transfer-leadership
  roster transfer-leadership n2`,
		Args: rangeArgs(0, 1, "at most one argument, ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var id string
			if len(args) == 1 {
				id = args[0]
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.TransferLeadership(ctx, &rosterv1.TransferLeadershipRequest{NodeId: id})
				if err != nil {
					return err
				}
				if a.json() {
					return writeJSON(a.stdout, leaderJSON{LeaderID: resp.GetLeaderId()})
				}
				_, err = fmt.Fprintf(a.stdout, "leadership transferred to %s\n", resp.GetLeaderId())
				return err
			})
		},
	}
}
