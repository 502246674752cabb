package checker

import "testing"

// getOn is a linearizable get of service s served by node n.
func getOn(client int, s, n string, call, ret int64, rev uint64) Op {
	op := get(client, map[string]string{}, call, ret, rev)
	op.Service, op.Node = s, n
	return op
}

func TestReadOrderGoodHistory(t *testing.T) {
	r := CheckReadOrder(goodHistory())
	wantOK(t, r)
	if r.Short != "R ok reads=3" {
		t.Fatalf("short %q", r.Short)
	}
}

func TestReadOrderBackInTimeAcrossServices(t *testing.T) {
	// The case: n3 returns revision 65 for one service, then a get
	// of another service on the leader n1 starts and reports 62. Each key's
	// history alone is linearizable; only the order across reads is wrong.
	h := &History{Ops: []Op{
		getOn(0, "default/web", "n3", 0, 10, 65),
		getOn(1, "default/api", "n1", 20, 30, 62),
	}}
	wantViolation(t, CheckReadOrder(h),
		"get of default/api by client 1 on n1 called at 20ms reports revision 62, but a get of default/web by client 0 on n3 had already returned revision 65 at 10ms")
}

func TestReadOrderOverlappingReadsMayDisagree(t *testing.T) {
	// Concurrent gets may be ordered either way; a later get that matches
	// or passes the newest earlier one is fine.
	h := &History{Ops: []Op{
		getOn(0, "default/web", "n1", 0, 10, 720),
		getOn(1, "default/api", "n2", 5, 15, 719),
		getOn(2, "default/api", "n2", 10, 20, 719), // called exactly at the return: not after it
		getOn(3, "default/web", "n3", 30, 40, 720),
		getOn(4, "default/web", "n3", 50, 60, 800),
	}}
	wantOK(t, CheckReadOrder(h))
	h.Ops = append(h.Ops, getOn(5, "default/api", "n2", 61, 70, 799))
	wantViolation(t, CheckReadOrder(h), "reports revision 799, but a get of default/web by client 4 on n3 had already returned revision 800")
}

func TestReadOrderIgnoresStaleFailedAndUnknownRevisions(t *testing.T) {
	stale := getOn(1, "default/api", "n2", 20, 30, 3)
	stale.Stale = true
	failed := getOn(2, "default/api", "n2", 20, 30, 0)
	failed.Outcome = OutcomeFail
	h := &History{Ops: []Op{
		getOn(0, "default/web", "n1", 0, 10, 9),
		stale, failed,
		getOn(3, "default/api", "n2", 40, 50, 0),
		register(4, keyA, "v1", 60, 70, 2),
	}}
	r := CheckReadOrder(h)
	wantOK(t, r)
	if r.Short != "R ok reads=1" {
		t.Fatalf("short %q", r.Short)
	}
}
