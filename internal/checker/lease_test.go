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
