package raft

import "time"

// Roster: quorum contact. The leader's lease in upstream raft
// (checkLeaderLease) steps a leader down once it has not heard from a
// quorum of voters within LeaderLeaseTimeout, but it runs on the main
// thread, only every so often, and not at all while the process is paused.
// A leader resumed from a pause (SIGSTOP, a frozen VM, a long GC) is still
// Leader until it runs, though a newer leader may have been elected
// meanwhile. QuorumContact lets the application ask, at the moment it is
// about to promise something only a current leader may promise, when a
// quorum last vouched for this leader.
//
// The contact it counts is stricter than upstream's lastContact, which is
// when any answer was received: an answer that refused this leader's term
// is contact too there, and an answer received after a pause may have been
// given before it. Here a follower's contact is the send time of the
// newest request it answered without a newer term (contactSent): it
// answered at or after that moment, and a voter that has answered in this
// term has not voted in a newer one yet. So no leader of a newer term can
// have been elected before the time QuorumContact returns.

// leaderVoters is what QuorumContact reads: the voters of the leader's
// latest configuration. The leader loop publishes it whenever the
// configuration or the replication changes (startStopReplication) and
// clears it when the leader steps down.
type leaderVoters struct {
	count  int                    // voters, this server included when it is one
	self   bool                   // this server is a voter
	others []*followerReplication // the replication to every other voter
}

// QuorumContact returns, on the leader, the latest time by which a quorum
// of the voters in its latest configuration had answered it in its current
// term. A follower's contact is the send time of the newest request it
// answered without a newer term; this server, when it is a voter, is in
// contact now, so a single-voter cluster is always in contact. No leader of
// a newer term can have been elected before the time returned: any quorum
// that elects one includes a voter that answered this leader in its term
// after that time, and so had not voted in a newer term yet.
//
// It returns the zero Time when this server is not the leader. The Time
// carries a monotonic clock reading: measure its age with time.Since, and
// compare that with LeaderLeaseTimeout for checkLeaderLease's rule. It is
// safe to call from any goroutine.
func (r *Raft) QuorumContact() time.Time {
	v := r.leaderVoters.Load()
	if v == nil || r.getState() != Leader {
		return time.Time{}
	}
	var buf [16]time.Time
	times := buf[:0]
	if v.self {
		times = append(times, time.Now())
	}
	for _, f := range v.others {
		times = append(times, f.ContactSent())
	}
	quorum := v.count/2 + 1
	if len(times) < quorum {
		return time.Time{}
	}
	// The quorum-th newest contact: sort newest first (a handful of
	// voters, so an insertion sort).
	for i := 1; i < len(times); i++ {
		for j := i; j > 0 && times[j].After(times[j-1]); j-- {
			times[j], times[j-1] = times[j-1], times[j]
		}
	}
	return times[quorum-1]
}

// publishVoters publishes the voters of the latest configuration for
// QuorumContact. It must only be called from the main thread, while leader.
func (r *Raft) publishVoters() {
	v := &leaderVoters{}
	for _, server := range r.configurations.latest.Servers {
		if server.Suffrage != Voter {
			continue
		}
		v.count++
		if server.ID == r.localID {
			v.self = true
			continue
		}
		if f := r.leaderState.replState[server.ID]; f != nil {
			v.others = append(v.others, f)
		}
	}
	r.leaderVoters.Store(v)
}

// ContactSent returns the send time of the newest request the follower
// answered in this leader's term, or the zero Time when none was.
func (s *followerReplication) ContactSent() time.Time {
	s.lastContactLock.RLock()
	defer s.lastContactLock.RUnlock()
	return s.contactSent
}

// setContactSent records that the follower answered, in this leader's
// term, a request sent at sent. Answers from the heartbeat and the
// replication goroutines arrive in any order; the newest send time stays.
func (s *followerReplication) setContactSent(sent time.Time) {
	s.lastContactLock.Lock()
	if sent.After(s.contactSent) {
		s.contactSent = sent
	}
	s.lastContactLock.Unlock()
}
