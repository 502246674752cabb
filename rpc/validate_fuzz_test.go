package rpc

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
	"github.com/roster-registry/roster/store"
)

// FuzzValidateRegister decodes arbitrary bytes as a RegisterRequest and
// runs the validation every front end shares. It must never panic, and what
// it accepts must be within every limit.
//
//	go test -run '^$' -fuzz '^FuzzValidateRegister$' -fuzztime 30s ./rpc
func FuzzValidateRegister(f *testing.F) {
	for _, s := range validateSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req rosterv1.RegisterRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			return
		}
		if err := rejectUnknownFields(req.ProtoReflect()); err != nil {
			return
		}
		if _, err := requestID(req.RequestId); err != nil {
			return
		}
		inst, err := validateInstance(req.Instance)
		if err != nil {
			if _, ok := err.(*invalidError); !ok {
				t.Fatalf("validation failed with %T, not an InvalidArgument: %v", err, err)
			}
			return
		}
		switch {
		case store.CheckNamespace(inst.Namespace) != nil || store.CheckService(inst.Service) != nil:
			t.Fatalf("accepted names %q/%q", inst.Namespace, inst.Service)
		case len(inst.ID) == 0 || len(inst.ID) > MaxIDLen:
			t.Fatalf("accepted id of %d bytes", len(inst.ID))
		case len(inst.Tags()) > MaxTags || len(inst.Metadata()) > MaxMetadataKeys:
			t.Fatalf("accepted %d tags, %d metadata keys", len(inst.Tags()), len(inst.Metadata()))
		case inst.TTL != 0 && (inst.TTL < MinTTL || inst.TTL > MaxTTL):
			t.Fatalf("accepted ttl %s", inst.TTL)
		case inst.Check() != nil && (inst.Check().Interval < MinCheckInterval || inst.Check().Interval > MaxCheckInterval):
			t.Fatalf("accepted check interval %s", inst.Check().Interval)
		}
		for k, v := range inst.Metadata() {
			if len(k) > MaxMetadataKey || len(v) > MaxMetadataValue {
				t.Fatalf("accepted metadata %q of %d bytes", k, len(v))
			}
		}
		for _, tag := range inst.Tags() {
			if len(tag) > MaxTagLen {
				t.Fatalf("accepted tag of %d bytes", len(tag))
			}
		}
	})
}

func validateSeeds(t testing.TB) [][]byte {
	reqs := []*rosterv1.RegisterRequest{
		{Instance: &rosterv1.Instance{Service: "web", Id: "a", Address: "10.0.0.1", Port: 80}},
		{RequestId: "r-1", Instance: &rosterv1.Instance{Namespace: "prod", Service: "web", Id: "a:1", Address: "db.internal", Port: 5432,
			Tags: []string{"primary"}, Metadata: map[string]string{"version": "1.2"}, Ttl: durationpb.New(10e9), Zone: "eu-1"}},
		{Instance: &rosterv1.Instance{Service: "web", Id: "a", Address: "10.0.0.1", Port: 80,
			Check:                   &rosterv1.HealthCheck{Target: &rosterv1.HealthCheck_Http{Http: "http://10.0.0.1/health"}, Interval: durationpb.New(5e9)},
			DeregisterCriticalAfter: durationpb.New(60e9)}},
		{Instance: &rosterv1.Instance{Service: "Web", Id: "", Address: "", Port: 70000}},
	}
	var out [][]byte
	for _, r := range reqs {
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return append(out, []byte{0x0a, 0x03, 0xff, 0xff}, []byte{})
}

// TestWriteFuzzSeeds writes the seeds above as the committed corpus.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("ROSTER_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set ROSTER_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzValidateRegister")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range validateSeeds(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
