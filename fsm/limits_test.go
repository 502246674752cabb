package fsm

import (
	"errors"
	"testing"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
	"github.com/roster-registry/roster/store"
)

func limitedReg(t testing.TB, ns, svc, id string, perService, perNamespace uint32) []byte {
	return mustEncode(t, RegisterType, &raftcmdv1.Register{
		Instance:  &raftcmdv1.Instance{Namespace: ns, Service: svc, Id: id, Address: "10.1.1.1", Port: 80, Weight: 100},
		NowUnixNs: 1000,
		Limits:    &raftcmdv1.InstanceLimits{PerService: perService, PerNamespace: perNamespace},
	})
}

func TestApplyRefusesRegistrationsBeyondTheStampedLimits(t *testing.T) {
	f := newFSM()
	index := uint64(0)
	step := func(data []byte) Result {
		index++
		return apply(f, index, data).(Result)
	}
	for _, id := range []string{"a", "b"} {
		if r := step(limitedReg(t, "default", "web", id, 2, 3)); r.Err != nil {
			t.Fatalf("register %s: %v", id, r.Err)
		}
	}
	before := dump(t, f)
	r := step(limitedReg(t, "default", "web", "c", 2, 3))
	if !errors.Is(r.Err, store.ErrLimitExceeded) {
		t.Fatalf("third instance of web with 2 per service: %v", r.Err)
	}
	if dump(t, f) != before {
		t.Fatal("a refused registration changed the state")
	}
	// Re-registering an existing instance is never refused.
	if r := step(limitedReg(t, "default", "web", "a", 2, 3)); r.Err != nil {
		t.Fatalf("re-register a at the limit: %v", r.Err)
	}
	if r := step(limitedReg(t, "default", "api", "a", 2, 3)); r.Err != nil {
		t.Fatalf("third instance of the namespace: %v", r.Err)
	}
	r = step(limitedReg(t, "default", "db", "a", 2, 3))
	if !errors.Is(r.Err, store.ErrLimitExceeded) {
		t.Fatalf("fourth instance of the namespace with 3 per namespace: %v", r.Err)
	}
	// Another namespace has its own count; no limits stamped is no limit.
	if r := step(limitedReg(t, "other", "db", "a", 2, 3)); r.Err != nil {
		t.Fatalf("other namespace: %v", r.Err)
	}
	if r := step(regCmd(t, "web", "c", 80)); r.Err != nil {
		t.Fatalf("register without limits: %v", r.Err)
	}
}

func TestRefusedRequestIsRememberedAsRefused(t *testing.T) {
	f := newFSM()
	enc := func(id string) []byte {
		b, err := EncodeRequest("req-"+id, 1000, RegisterType, &raftcmdv1.Register{
			Instance:  &raftcmdv1.Instance{Namespace: "default", Service: "web", Id: id, Address: "10.1.1.1", Port: 80, Weight: 100},
			NowUnixNs: 1000,
			Limits:    &raftcmdv1.InstanceLimits{PerService: 1},
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if r := apply(f, 1, enc("a")).(Result); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := apply(f, 2, enc("b")).(Result); !errors.Is(r.Err, store.ErrLimitExceeded) {
		t.Fatalf("want limit: %v", r.Err)
	}
	apply(f, 3, mustEncode(t, DeregisterType, &raftcmdv1.Deregister{Namespace: "default", Service: "web", Id: "a"}))
	// The same request again answers its first result, not a fresh apply.
	if r := apply(f, 4, enc("b")).(Result); !errors.Is(r.Err, store.ErrLimitExceeded) {
		t.Fatalf("repeated request: %v", r.Err)
	}
	if n := f.Store().View().ServiceCount("default", "web"); n != 0 {
		t.Fatalf("web has %d instances", n)
	}
}
