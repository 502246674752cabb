package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// TestConsulQueryOptions: Consul's read parameters map onto Roster's read
// levels and blocking-query bounds.
func TestConsulQueryOptions(t *testing.T) {
	for _, tc := range []struct {
		query       string
		consistency rosterv1.Consistency
		index       uint64
		wait        time.Duration
		bad         bool
	}{
		{"", rosterv1.Consistency_CONSISTENCY_LINEARIZABLE, 0, 5 * time.Minute, false},
		{"stale", rosterv1.Consistency_CONSISTENCY_STALE, 0, 5 * time.Minute, false},
		{"consistent&index=42&wait=30s", rosterv1.Consistency_CONSISTENCY_LINEARIZABLE, 42, 30 * time.Second, false},
		{"index=7&wait=1m", rosterv1.Consistency_CONSISTENCY_LINEARIZABLE, 7, time.Minute, false},
		{"wait=90s", rosterv1.Consistency_CONSISTENCY_LINEARIZABLE, 0, 90 * time.Second, false},
		{"wait=10000ms", rosterv1.Consistency_CONSISTENCY_LINEARIZABLE, 0, 10 * time.Second, false},
		{"wait=1h", rosterv1.Consistency_CONSISTENCY_LINEARIZABLE, 0, 10 * time.Minute, false},
		{"wait=2562047h", rosterv1.Consistency_CONSISTENCY_LINEARIZABLE, 0, 10 * time.Minute, false},
		// Consul's parser wants a unit, and refuses what overflows.
		{"wait=90", 0, 0, 0, true},
		{"wait=18446744074", 0, 0, 0, true},
		{"wait=9223372037", 0, 0, 0, true},
		{"wait=2562048h", 0, 0, 0, true},
		{"wait=0", 0, 0, 0, true},
		{"dc=elsewhere&near=_agent", rosterv1.Consistency_CONSISTENCY_LINEARIZABLE, 0, 5 * time.Minute, false},
		{"wait=-1s", 0, 0, 0, true},
		{"wait=soon", 0, 0, 0, true},
		{"index=-1", 0, 0, 0, true},
		{"stale&consistent", 0, 0, 0, true},
	} {
		o, err := parseQueryOptions(httptest.NewRequest("GET", "/v1/health/service/web?"+tc.query, nil))
		if tc.bad {
			if err == nil {
				t.Errorf("%q: accepted", tc.query)
			}
			continue
		}
		if err != nil || o.read.Consistency != tc.consistency || o.index != tc.index || o.wait != tc.wait {
			t.Errorf("%q: %+v %v; want %s index %d wait %s", tc.query, o, err, tc.consistency, tc.index, tc.wait)
		}
	}
}

// TestConsulFilterParse: the parser accepts the documented forms and
// refuses the rest with a reason.
func TestConsulFilterParse(t *testing.T) {
	ok := []string{
		`Service.Tags contains "x"`,
		`Service.Tags not contains x`,
		"Service.Meta.k == `v`",
		`Service.Meta.k != "v \"quoted\""`,
		`"k" in Service.Meta`,
		`x not in Service.Tags`,
		`Service.Tags is empty or Service.Meta is not empty`,
		`not (Service.ID == a and Service.Port == 80) or Node.Node == "n"`,
	}
	for _, f := range ok {
		if _, err := compileFilter(f, healthSelectors.known); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	bad := []string{
		``, `Service.ID`, `Service.ID ==`, `Service.ID = "a"`, `Service.ID < 3`, `Service.ID == "a" and`,
		`(Service.ID == "a"`, `Service.ID == "a")`, `"a" == Service.ID`, `Service.Tags == "a"`,
		`Service.Meta == "a"`, `Service.Nope == "a"`, `Service.ID matches "a.*"`, `Service.ID == "a`,
	}
	for _, f := range bad {
		if _, err := compileFilter(f, healthSelectors.known); err == nil {
			t.Errorf("%q: accepted", f)
		}
	}
	// A missing map key is not equal to anything, and != holds.
	e, _ := compileFilter(`Service.Meta.k != "v"`, healthSelectors.known)
	if !e.eval(resolveFrom(nil, nil, map[string]map[string]string{"Service.Meta": {}})) {
		t.Error("a missing key should satisfy !=")
	}
}

// TestRetryAfter: a 429 says when to retry, from the status's RetryInfo
// when it has one (rounded up to whole seconds), else 1; other statuses
// say nothing.
func TestRetryAfter(t *testing.T) {
	withDelay := func(d time.Duration) *status.Status {
		st, err := status.New(codes.ResourceExhausted, "slow down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	for _, tc := range []struct {
		code int
		st   *status.Status
		want string
	}{
		{http.StatusTooManyRequests, status.New(codes.ResourceExhausted, "slow down"), "1"},
		{http.StatusTooManyRequests, withDelay(2500 * time.Millisecond), "3"},
		{http.StatusTooManyRequests, withDelay(time.Millisecond), "1"},
		{http.StatusServiceUnavailable, withDelay(5 * time.Second), ""},
	} {
		w := httptest.NewRecorder()
		setRetryAfter(w, tc.code, tc.st)
		if got := w.Header().Get("Retry-After"); got != tc.want {
			t.Errorf("%d %v: Retry-After %q, want %q", tc.code, tc.st.Details(), got, tc.want)
		}
	}
}
