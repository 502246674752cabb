package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

func TestWatchJSON(t *testing.T) {
	f := startFake(t)
	p1 := &rosterv1.Instance{Namespace: "default", Service: "payments", Id: "p1", Address: "10.0.0.5", Port: 8080,
		Status: rosterv1.HealthStatus_HEALTH_STATUS_PASSING, Enabled: true}
	f.mu.Lock()
	f.watch = []*rosterv1.WatchResponse{
		{Reset_: true, Revision: 5, Events: []*rosterv1.Event{{Type: rosterv1.Event_TYPE_PUT, Revision: 4, Instance: p1}}},
		{Revision: 6, Events: []*rosterv1.Event{{Type: rosterv1.Event_TYPE_PUT, Revision: 6, Instance: p1}}},
		{Revision: 7, Events: []*rosterv1.Event{{Type: rosterv1.Event_TYPE_DELETE, Revision: 7,
			Instance: &rosterv1.Instance{Namespace: "default", Service: "payments", Id: "p1"}}}},
		{Progress: true, Revision: 8},
	}
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	done, stdout, stderr := runInBackground(ctx, "--addr", f.addr, "watch", "payments", "-o", "json")
	waitFor(t, "four watch lines", func() bool { return len(stdout.lines()) >= 4 })
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("watch exit %d, stderr %q", code, stderr.String())
	}

	lines := stdout.lines()
	var types []string
	for _, line := range lines {
		var out map[string]any
		if err := json.Unmarshal([]byte(line), &out); err != nil {
			t.Fatalf("line %q is not JSON: %v", line, err)
		}
		for _, k := range []string{"type", "revision", "namespace", "service", "id"} {
			if _, ok := out[k]; !ok {
				t.Fatalf("line %q has no %q", line, k)
			}
		}
		types = append(types, out["type"].(string))
	}
	if want := []string{"RESET", "PUT", "DELETE", "PROGRESS"}; !slices.Equal(types, want) {
		t.Fatalf("types %v, want %v", types, want)
	}
	var reset struct {
		Revision  uint64           `json:"revision"`
		Instances []map[string]any `json:"instances"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &reset); err != nil || reset.Revision != 5 || len(reset.Instances) != 1 || reset.Instances[0]["id"] != "p1" {
		t.Fatalf("reset line %q", lines[0])
	}
	if req := f.calls("Watch")[0].(*rosterv1.WatchRequest); req.GetService() != "payments" || req.GetStartRevision() != 0 {
		t.Fatalf("watch request %v", req)
	}
}

func TestRegisterKeepAlive(t *testing.T) {
	f := startFake(t)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	done, stdout, stderr := runInBackground(ctx, "--addr", f.addr, "register", "payments", "p1", "10.0.0.5:8080", "--ttl", "300ms", "--keepalive")
	waitFor(t, "renewals", func() bool { return len(f.calls("KeepAlive")) >= 2 })

	// The server forgets the instance: the lease is lost, the CLI registers
	// again, and the lease is re-established.
	f.setInstance("p1", false)
	waitFor(t, "lease re-established", func() bool { return strings.Contains(stdout.String(), "lease re-established for payments/p1") })
	if got := len(f.calls("Register")); got != 2 {
		t.Fatalf("registered %d times, want 2", got)
	}

	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("keepalive exit %d, stderr %q", code, stderr.String())
	}
	if got := len(f.calls("Deregister")); got != 1 {
		t.Fatalf("deregistered %d times on shutdown, want 1", got)
	}
	out := stdout.String()
	for _, want := range []string{
		"registered payments/p1 at revision 7\n",
		"lease lost for payments/p1: not found: instance not found; registering again\n",
		"registered payments/p1 again at revision 7\n",
		"lease re-established for payments/p1\n",
		"deregistered payments/p1\n",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("stdout has no %q:\n%s", want, out)
		}
	}
}

// TestKeepAliveEndsWithNothingToDeregister: when the instance is already
// gone at shutdown (Deregister answers NotFound), the keepalive says so,
// in text and as a JSON event, instead of claiming it deregistered it;
// it still exits 0, since the instance is gone as asked.
func TestKeepAliveEndsWithNothingToDeregister(t *testing.T) {
	for _, output := range []string{"table", "json"} {
		f := startFake(t)
		ctx, cancel := context.WithCancel(testContext(t))
		done, stdout, stderr := runInBackground(ctx, "--addr", f.addr, "-o", output, "register", "payments", "p1", "10.0.0.5:8080", "--ttl", "300ms", "--keepalive")
		waitFor(t, "renewals", func() bool { return len(f.calls("KeepAlive")) >= 1 })
		f.setFail("Deregister", status.Error(codes.NotFound, "instance not found"))
		cancel()
		if code := <-done; code != 0 {
			t.Fatalf("%s: keepalive exit %d, stderr %q", output, code, stderr.String())
		}
		out := stdout.String()
		want := "payments/p1 was already gone (its lease expired or it was deregistered elsewhere); nothing to deregister\n"
		if output == "json" {
			want = `"event": "already_gone"`
		}
		if !strings.Contains(out, want) || strings.Contains(out, "deregistered payments/p1") || strings.Contains(out, `"deregistered"`) {
			t.Fatalf("%s: stdout lacks %q or claims a deregistration:\n%s", output, want, out)
		}
	}
}

// runInBackground runs the command line args under ctx in a goroutine;
// done answers its exit code once it returns.
func runInBackground(ctx context.Context, args ...string) (done <-chan int, stdout, stderr *syncBuffer) {
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	ch := make(chan int, 1)
	go func() { ch <- run(ctx, args, stdout, stderr, func(string) string { return "" }) }()
	return ch, stdout, stderr
}
