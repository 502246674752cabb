package checker

import (
	"testing"
	"time"
)

func TestDurableGoodHistory(t *testing.T) {
	wantOK(t, CheckDurable(goodHistory()))
}

func TestDurableLostAcknowledgedRegister(t *testing.T) {
	h := goodHistory()
	h.Final[0].Instances = map[string]string{}
	wantViolation(t, CheckDurable(h), `key default/web/b: acknowledged register("w2") by client 0`)

	h.Final[0].Instances = map[string]string{keyB: "w1"}
	wantViolation(t, CheckDurable(h), `the final list at revision 9 has "w1"`)
}

func TestDurableLostAcknowledgedDeregister(t *testing.T) {
	h := goodHistory()
	h.Final[0].Instances[keyA] = "v1"
	wantViolation(t, CheckDurable(h), `key default/web/a: acknowledged deregister by client 0`)
}

func TestDurableSkipsUnknownAndConcurrentWrites(t *testing.T) {
	h := &History{
		Ops: []Op{
			register(0, keyA, "v1", 0, 10, 5),
			unknown(register(0, keyA, "v2", 20, 0, 0)),
			register(1, keyB, "w1", 0, 30, 6),
			register(2, keyB, "w2", 10, 40, 7),
		},
		Final: []Snapshot{{Namespace: "default", Revision: 7, Call: ms(100), Return: ms(110),
			Instances: map[string]string{}}},
	}
	wantOK(t, CheckDurable(h))
}

func TestDurableLeasedRegister(t *testing.T) {
	leased := register(0, keyA, "v1", 0, 10, 5)
	leased.TTL = 100 * time.Millisecond
	h := &History{
		Ops: []Op{leased},
		Final: []Snapshot{{Namespace: "default", Service: "web", Revision: 6, Call: ms(200), Return: ms(210),
			Instances: map[string]string{}}},
	}
	// Gone after its lease could have run out: not D's concern.
	wantOK(t, CheckDurable(h))

	// Gone while the lease still held: lost.
	h.Ops = append(h.Ops, Op{ClientID: 0, Kind: KindHeartbeat, Key: keyA, Call: ms(150), Return: ms(160),
		Outcome: OutcomeOK, TTL: 100 * time.Millisecond})
	wantViolation(t, CheckDurable(h), "lacks the key")
}

func TestDurableNodeHashes(t *testing.T) {
	h := goodHistory()
	h.NodeHashes = append(h.NodeHashes, NodeHash{"n2", 12, "xyz"})
	wantViolation(t, CheckDurable(h), "applied index 12: nodes report different state hashes: n3=def, n2=xyz")
}

func TestDurableUnknownRegisterSeenApplied(t *testing.T) {
	h := &History{
		Ops: []Op{
			register(0, keyA, "v1", 0, 10, 5),
			unknown(register(0, keyA, "v2", 20, 0, 0)),
			get(1, map[string]string{"a": "v2"}, 40, 50, 6),
		},
		Final: []Snapshot{{Namespace: "default", Revision: 7, Call: ms(100), Return: ms(110),
			Instances: map[string]string{keyA: "v2"}}},
	}
	wantOK(t, CheckDurable(h))
	h.Final[0].Instances[keyA] = "v1"
	wantViolation(t, CheckDurable(h), `acknowledged register("v2") by client 0 (call at 20ms`)
}
