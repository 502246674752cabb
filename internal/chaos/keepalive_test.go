package chaos

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/internal/checker"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// TestKeepAliveLogPairsAnswersWithRenewalsInOrder: a stream's answers come
// in the order its renewals were sent, so each is recorded as a heartbeat
// called when its renewal was sent, whenever the answer arrived; answers
// that refuse are not acknowledgements, and renewals never answered are
// unknown.
func TestKeepAliveLogPairsAnswersWithRenewalsInOrder(t *testing.T) {
	key := checker.InstanceKey(namespace, leasedService, "k0")
	l := newKeepAliveLog(7, key, &node{id: "n1"})
	if _, ok := l.oldest(); ok {
		t.Fatal("oldest renewal of a fresh stream: want none")
	}
	for _, at := range []int64{100, 200, 300, 400} {
		l.sent(at)
	}
	if at, ok := l.oldest(); !ok || at != 100 {
		t.Fatalf("oldest renewal: %d %v, want 100", at, ok)
	}

	want := func(op checker.Op, call, ret int64, o checker.Outcome, code string, ttl time.Duration) {
		t.Helper()
		if op.Kind != checker.KindHeartbeat || !op.Stream || op.Key != key || op.Node != "n1" || op.ClientID != 7 {
			t.Errorf("renewal %+v: want a stream heartbeat of %s by client 7 on n1", op, key)
		}
		if op.Call != call || op.Return != ret || op.Outcome != o || op.Code != code || op.TTL != ttl {
			t.Errorf("renewal called %d returned %d %s %q ttl %s, want %d %d %s %q %s",
				op.Call, op.Return, op.Outcome, op.Code, op.TTL, call, ret, o, code, ttl)
		}
	}
	// Acknowledged long after it was sent (queued at a paused node): it
	// still counts from its send time.
	op, ok := l.answered(&rosterv1.HeartbeatResponse{Ttl: durationpb.New(8 * time.Second)}, 5000)
	if !ok {
		t.Fatal("answer to the first renewal: not paired")
	}
	want(op, 100, 5000, checker.OutcomeOK, "", 8*time.Second)
	// Refused as by a node that does not lead: it may have been relayed.
	op, _ = l.answered(&rosterv1.HeartbeatResponse{Code: int32(codes.Unavailable), Error: "not the leader"}, 5001)
	want(op, 200, 5001, checker.OutcomeUnknown, "Unavailable", 0)
	// Gone: it renewed nothing.
	op, _ = l.answered(&rosterv1.HeartbeatResponse{Code: int32(codes.NotFound), Error: "not found"}, 5002)
	want(op, 300, 5002, checker.OutcomeFail, "NotFound", 0)

	ended := l.ended(status.Error(codes.Unavailable, "stream reset"), 6000)
	if len(ended) != 1 {
		t.Fatalf("renewals left unanswered: %d, want 1", len(ended))
	}
	want(ended[0], 400, 6000, checker.OutcomeUnknown, "Unavailable", 0)
	if _, ok := l.answered(&rosterv1.HeartbeatResponse{}, 7000); ok {
		t.Error("an answer with no renewal waiting was paired")
	}
	if len(l.ended(status.Error(codes.Canceled, "done"), 7000)) != 0 {
		t.Error("a stream ended twice recorded its renewals twice")
	}
}
