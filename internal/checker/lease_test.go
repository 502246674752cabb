package checker

import (
	"testing"
	"time"
)

const ttl = time.Second

// leaseHistory registers a with a one-second lease at 0 and heartbeats it
// at 500ms (returning at 900ms); the expiry is observed at seenAt.
func leaseHistory(seenAt int64) *History {
	reg := register(0, keyA, "v1", 0, 10, 5)
	reg.TTL = ttl
	return &History{
		Ops: []Op{
			reg,
			{ClientID: 0, Kind: KindHeartbeat, Key: keyA, Call: ms(500), Return: ms(900),
				Outcome: OutcomeOK, TTL: ttl},
			// Failed heartbeats renew nothing.
			{ClientID: 0, Kind: KindHeartbeat, Key: keyA, Call: ms(1000), Return: ms(1001),
				Outcome: OutcomeFail, Code: "Unavailable", TTL: ttl},
		},
		Expiries: []Expiry{{Key: keyA, Time: ms(seenAt), Revision: 9, Source: "watch:w1"}},
	}
}

func TestLeaseExpiryAfterDeadline(t *testing.T) {
	wantOK(t, CheckLeases(leaseHistory(2000), 0))
	// After call+TTL (1.5s) but before return+TTL (1.9s): the leader may
	// have applied the heartbeat at its call, so this is legitimate.
	wantOK(t, CheckLeases(leaseHistory(1600), 0))
}

func TestLeaseEarlyExpiry(t *testing.T) {
	wantViolation(t, CheckLeases(leaseHistory(1200), 0),
		"key default/web/a seen gone at 1.2s (watch:w1, revision 9), 300ms before its lease could end at 1.5s (heartbeat by client 0 called at 500ms + ttl 1s)")
	// Slack forgives clock disagreement.
	wantOK(t, CheckLeases(leaseHistory(1200), 400*time.Millisecond))
}

func TestLeaseLateExpireOfOlderRegistration(t *testing.T) {
	h := leaseHistory(5500)
	again := register(1, keyA, "v2", 5000, 5010, 8)
	again.TTL = ttl
	h.Ops = append(h.Ops, again)
	wantViolation(t, CheckLeases(h, 0), "late expire of the older registration")

	// Re-registered without a lease: it must never expire.
	h.Ops[len(h.Ops)-1].TTL = 0
	h.Expiries[0].Time = ms(60000)
	wantViolation(t, CheckLeases(h, 0), "holds no lease")
}

func TestLeaseSkipsWhatADeregisterExplains(t *testing.T) {
	h := leaseHistory(1200)
	h.Ops = append(h.Ops, unknown(deregister(1, keyA, 1100, 0, 0)))
	wantOK(t, CheckLeases(h, 0))
}

func TestLeaseAmbiguousRegisterGivesItsOwnLease(t *testing.T) {
	// An unknown-outcome re-register with a short lease may be the one
	// that expired; its lease began no earlier than the last acked
	// register's call.
	h := leaseHistory(700)
	short := unknown(register(1, keyA, "v2", 100, 0, 0))
	short.TTL = 500 * time.Millisecond
	h.Ops = append(h.Ops, short)
	wantOK(t, CheckLeases(h, 0))
	h.Expiries[0].Time = ms(550)
	wantViolation(t, CheckLeases(h, 0), "register by client 1 called at 100ms + ttl 500ms")
}

// streamHistory registers a with a one-second lease at 0 and renews it over
// a KeepAlive stream: messages sent at 300ms (answered at once), at 600ms
// and 900ms (queued at a paused node and answered together at 1.7s), and
// at 1.2s (never answered). A get called at seenFrom misses a.
func streamHistory(seenFrom int64) *History {
	reg := register(0, keyA, "v1", 0, 10, 5)
	reg.TTL = ttl
	renewal := func(sent, answered int64, o Outcome) Op {
		return Op{ClientID: 0, Kind: KindHeartbeat, Key: keyA, Call: ms(sent), Return: ms(answered),
			Outcome: o, TTL: ttl, Stream: true}
	}
	return &History{
		Ops: []Op{
			reg,
			renewal(300, 320, OutcomeOK),
			renewal(600, 1700, OutcomeOK),
			renewal(900, 1701, OutcomeOK),
			renewal(1200, 1800, OutcomeUnknown),
		},
		Expiries: []Expiry{{Key: keyA, Time: ms(seenFrom + 10), NotBefore: ms(seenFrom), Source: "get"}},
	}
}

func TestLeaseStreamRenewalsCountFromTheirSendTime(t *testing.T) {
	// Seen gone before the queued answers arrived: only the renewal
	// answered by then counts (lease to 1.3s), so 1.5s is legitimate.
	wantOK(t, CheckLeases(streamHistory(1500), 0))
	// Seen gone after the queued answers arrived: the renewal sent at
	// 900ms was acknowledged, so the lease ran to 1.9s.
	wantViolation(t, CheckLeases(streamHistory(1750), 0),
		"key default/web/a seen gone at 1.76s (get, revision 0), 140ms before its lease could end at 1.9s (keepalive by client 0 called at 900ms + ttl 1s)")
	// The unanswered renewal sent at 1.2s renews nothing.
	wantOK(t, CheckLeases(streamHistory(2000), 0))
}
