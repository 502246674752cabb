package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// The HTTP JSON decoders must never panic on any body; they either decode
// or say why not. Explore with
//
//	go test -run '^$' -fuzz '^FuzzGatewayBody$' -fuzztime 30s ./httpapi
//	go test -run '^$' -fuzz '^FuzzConsulRegisterBody$' -fuzztime 30s ./httpapi
//	go test -run '^$' -fuzz '^FuzzRequestTarget$' -fuzztime 30s ./httpapi

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

var targetSeeds = []string{
	"GET /v1/health/service/web?ns=default&tag=a&passing", "GET /v1/health/service/%FF", "GET /v1/catalog/services?ns=%FF",
	"PUT /v1/agent/check/pass/service:%C3%28?note=x", "PUT /v1/agent/service/maintenance/a?enable=true&reason=%FE",
	"GET /api/v1/services/default/web?tags=%FF", "GET /api/v1/watch?service=%FF", "PUT /api/v1/services/default/web/instances/%FF/heartbeat",
	"DELETE /api/v1/services/default/web/instances/a?request_id=%80", "GET /api/v1/services?%FF=1", "GET /ready",
}

// marshalCheck is a gRPC connection that marshals every request as the
// in-process connection does, records what fails to marshal, and answers
// every call Unavailable.
type marshalCheck struct {
	mu     sync.Mutex
	failed []string
}

func (m *marshalCheck) check(method string, msg any) {
	if pm, ok := msg.(proto.Message); ok {
		if _, err := proto.Marshal(pm); err != nil {
			m.mu.Lock()
			m.failed = append(m.failed, fmt.Sprintf("%s: %v", method, err))
			m.mu.Unlock()
		}
	}
}

func (m *marshalCheck) Invoke(_ context.Context, method string, args, _ any, _ ...grpc.CallOption) error {
	m.check(method, args)
	return status.Error(codes.Unavailable, "no server")
}

func (m *marshalCheck) NewStream(ctx context.Context, _ *grpc.StreamDesc, method string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	return &checkStream{ctx: ctx, m: m, method: method}, nil
}

type checkStream struct {
	ctx    context.Context
	m      *marshalCheck
	method string
}

func (s *checkStream) Header() (metadata.MD, error) { return nil, nil }
func (s *checkStream) Trailer() metadata.MD         { return nil }
func (s *checkStream) CloseSend() error             { return nil }
func (s *checkStream) Context() context.Context     { return s.ctx }
func (s *checkStream) SendMsg(m any) error          { s.m.check(s.method, m); return nil }
func (s *checkStream) RecvMsg(any) error            { return status.Error(codes.Unavailable, "no server") }

// FuzzRequestTarget serves any request line through the whole front end
// over a connection that marshals each gRPC request: no path or query may
// put a string protobuf cannot marshal (invalid UTF-8) into a request, and
// none may be answered 500.
func FuzzRequestTarget(f *testing.F) {
	for _, s := range targetSeeds {
		f.Add(s)
	}
	conn := &marshalCheck{}
	h, err := New(Config{Conn: conn})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(line + " HTTP/1.1\r\nHost: x\r\n\r\n")))
		if err != nil {
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r = r.WithContext(ctx)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		conn.mu.Lock()
		failed := conn.failed
		conn.failed = nil
		conn.mu.Unlock()
		if len(failed) > 0 {
			t.Fatalf("%q put what cannot be marshalled into a request: %v", line, failed)
		}
		if w.Code == http.StatusInternalServerError {
			t.Fatalf("%q: 500 %s", line, w.Body.String())
		}
	})
}

// TestWriteFuzzSeeds writes the seeds above as the committed corpus.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("ROSTER_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set ROSTER_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz")
	}
	for target, seeds := range map[string][]string{"FuzzGatewayBody": gatewaySeeds, "FuzzConsulRegisterBody": consulSeeds, "FuzzRequestTarget": targetSeeds} {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if target == "FuzzRequestTarget" {
				body = fmt.Sprintf("go test fuzz v1\nstring(%q)\n", s)
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
