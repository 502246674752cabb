package httpapi

import (
	"bytes"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// The HTTP JSON decoders must never panic on any body; they either decode
// or say why not. Explore with
//
//	go test -run '^$' -fuzz '^FuzzGatewayBody$' -fuzztime 30s ./httpapi
//	go test -run '^$' -fuzz '^FuzzConsulRegisterBody$' -fuzztime 30s ./httpapi

var gatewaySeeds = []string{
	`{"instance":{"service":"web","id":"a","address":"10.0.0.1","port":80}}`,
	`{"service":"web","id":"a","address":"10.0.0.1","port":80,"ttl":"10s","metadata":{"v":"1"},"tags":["x"]}`,
	`{"instance":{"check":{"http":"http://x/","interval":"1s"}},"request_id":"r"}`,
	`{"unknown":1}`, `{"port":"80"}`, `{"ttl":"-1s"}`, `[]`, `{`, ``, `null`,
}

var consulSeeds = []string{
	`{"Name":"web","ID":"web-1","Address":"10.0.0.1","Port":80,"Tags":["a"],"Meta":{"v":"1"}}`,
	`{"Name":"web","Check":{"TTL":"10s","DeregisterCriticalServiceAfter":"1m"}}`,
	`{"Name":"web","Checks":[{"HTTP":"http://10.0.0.1/","Interval":"10s"},{"TCP":"10.0.0.1:80","Interval":5000000000}]}`,
	`{"Name":"web","Kind":"connect-proxy"}`, `{"Name":"web","Weights":{"Passing":3}}`, `{"Name":"web"} {}`,
	`{"Name":1}`, `{`, ``,
}

// FuzzGatewayBody decodes bodies the way the JSON API's gateway does, into
// the request of a route with body "*" and the instance of one with body
// "instance".
func FuzzGatewayBody(f *testing.F) {
	for _, s := range gatewaySeeds {
		f.Add([]byte(s))
	}
	m := &jsonMarshaler{runtime.JSONPb{MarshalOptions: jsonOptions, UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false}}}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req rosterv1.RegisterRequest
		if err := m.NewDecoder(bytes.NewReader(body)).Decode(&req); err == nil {
			if _, err := m.Marshal(&req); err != nil {
				t.Fatalf("a decoded request does not marshal: %v", err)
			}
		}
		var inst rosterv1.Instance
		_ = m.NewDecoder(bytes.NewReader(body)).Decode(&inst)
	})
}

// FuzzConsulRegisterBody decodes bodies of PUT /v1/agent/service/register
// and maps them onto an instance, as the handler does before it calls the
// Registry.
func FuzzConsulRegisterBody(f *testing.F) {
	for _, s := range consulSeeds {
		f.Add([]byte(s))
	}
	c := &consulAPI{}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("PUT", "/v1/agent/service/register?ns=default", bytes.NewReader(body))
		var reg consulServiceRegistration
		if err := decodeConsulBody(w, r, &reg); err != nil {
			if _, ok := err.(*consulError); !ok {
				t.Fatalf("decode error %T: %v", err, err)
			}
			return
		}
		inst, err := c.instance(&reg, r)
		if err == nil && inst == nil {
			t.Fatal("no instance and no error")
		}
	})
}

// TestWriteFuzzSeeds writes the seeds above as the committed corpus.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("ROSTER_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set ROSTER_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz")
	}
	for target, seeds := range map[string][]string{"FuzzGatewayBody": gatewaySeeds, "FuzzConsulRegisterBody": consulSeeds} {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
