package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roster-registry/roster/internal/testcluster"
	"github.com/roster-registry/roster/rpc"
)

// namespacesOf returns the namespaces a /api/v1/watch/namespaces event is for.
func namespacesOf(ev sseEvent) []string {
	var out []string
	list, _ := ev.data["namespaces"].([]any)
	for _, n := range list {
		out = append(out, n.(string))
	}
	slices.Sort(out)
	return out
}

// responseOf returns the WatchResponse of a /api/v1/watch/namespaces event
// as an event of /api/v1/watch, for changes.
func responseOf(ev sseEvent) sseEvent {
	r, _ := ev.data["response"].(map[string]any)
	return sseEvent{event: ev.event, id: ev.id, data: r}
}

// errorReason returns the ErrorInfo reason of an error body.
func errorReason(body map[string]any) string {
	ds, _ := body["details"].([]any)
	for _, d := range ds {
		if r, ok := d.(map[string]any)["reason"].(string); ok {
			return r
		}
	}
	return ""
}

// TestWatchNamespacesOneStream: /api/v1/watch/namespaces carries the
// watches of several namespaces over one event stream: a reset for each,
// then each change tagged with its namespace; the id resumes with
// Last-Event-ID after what every namespace has reached; a change in an
// unnamed namespace is not sent. Bad requests are 400.
func TestWatchNamespacesOneStream(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitLeader()
	base := serve(t, c.Followers()[0]).URL + "/api/v1"
	register := func(ns, id string) {
		t.Helper()
		call(t, "POST", base+"/instances", `{"instance": {"namespace": "`+ns+`", "service": "web", "id": "`+id+`", "address": "10.0.0.1", "port": 80}}`).must(t, http.StatusOK)
	}
	register("a", "a-1")
	register("b", "b-1")

	s := openWatch(t, base+"/watch/namespaces?namespace=a&namespace=b&namespace=c&consistency=linearizable&progress_interval=1s", "")
	resets := map[string][]string{}
	for len(resets) < 3 {
		ev := s.next()
		if ev.event != "reset" {
			t.Fatalf("before every reset: %s %v", ev.event, ev.data)
		}
		for _, ns := range namespacesOf(ev) {
			resets[ns] = changes(responseOf(ev))
		}
	}
	if !slices.Equal(resets["a"], []string{"PUT a-1"}) || !slices.Equal(resets["b"], []string{"PUT b-1"}) || len(resets["c"]) != 0 {
		t.Fatalf("resets %v", resets)
	}
	register("d", "d-1") // not watched
	register("b", "b-2")
	ev := s.next()
	if ev.event != "events" || !slices.Equal(namespacesOf(ev), []string{"b"}) || !slices.Equal(changes(responseOf(ev)), []string{"PUT b-2"}) {
		t.Fatalf("after a change in b: %s %v", ev.event, ev.data)
	}
	// The id is where every namespace has got to: a progress bookmark
	// brings the others there, so wait for an id at b-2's revision.
	b2 := responseOf(ev).data["revision"].(string)
	last := ev.id
	for last != b2 {
		select {
		case ev := <-s.events:
			if ev.id != "" {
				last = ev.id
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no event with id %s (last %s)", b2, last)
		}
	}
	s.close()
	register("a", "a-2")
	r := openWatch(t, base+"/watch/namespaces?namespace=a&namespace=b&namespace=c", last)
	ev = r.next()
	if ev.event != "events" || !slices.Equal(namespacesOf(ev), []string{"a"}) || !slices.Equal(changes(responseOf(ev)), []string{"PUT a-2"}) {
		t.Fatalf("resumed after %s: %s %v", last, ev.event, ev.data)
	}

	for _, q := range []string{"", "?namespace=a&service=web", "?namespace=a&bogus=1", "?namespace=a&require_leader=maybe",
		"?" + manyNamespaces(101)} {
		if code, body := openStatus(t, base+"/watch/namespaces"+q); code != http.StatusBadRequest {
			t.Errorf("watch/namespaces%s: %d %v, want 400", q, code, body)
		}
	}
}

// openStatus GETs a watch URL: 200 and no body when it opens (the stream
// is closed at once), else the status and the error body.
func openStatus(t *testing.T, u string) (int, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, nil
	}
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: %d, body is not JSON: %v", u, resp.StatusCode, err)
	}
	return resp.StatusCode, body
}

// manyNamespaces returns a query naming n different namespaces.
func manyNamespaces(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString("namespace=n")
		b.WriteString(strings.Repeat("x", i%5+1))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(string(rune('a' + i/26)))
	}
	return b.String()
}

// TestWatchNamespacesRefusedNamespace: a namespace the token may not watch
// whole ends with an ended event saying why, and the stream goes on for
// the others.
func TestWatchNamespacesRefusedNamespace(t *testing.T) {
	_, f, tok := aclCluster(t, "namespace:open:service::read")
	srv := serve(t, f)
	req, _ := http.NewRequestWithContext(context.Background(), "GET", srv.URL+"/api/v1/watch/namespaces?namespace=open&namespace=closed", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer hr.Body.Close()
	if hr.StatusCode != http.StatusOK {
		t.Fatalf("watch: %d", hr.StatusCode)
	}
	s := readEvents(t, hr)
	var sawEnded, sawReset bool
	for !sawEnded || !sawReset {
		ev := s.next()
		switch ev.event {
		case "ended":
			errBody, _ := ev.data["error"].(map[string]any)
			if ev.data["namespace"] != "closed" || errBody["status"] != "PERMISSION_DENIED" {
				t.Fatalf("ended %v", ev.data)
			}
			sawEnded = true
		case "reset":
			if !slices.Equal(namespacesOf(ev), []string{"open"}) {
				t.Fatalf("reset %v", ev.data)
			}
			sawReset = true
		default:
			t.Fatalf("unexpected %s %v", ev.event, ev.data)
		}
	}
}

// TestWatchRequireLeader: require_leader=true on either watch endpoint
// asks for a node in touch with a leader (rpc.RequireLeaderKey): on a
// follower cut off from the others the open stream ends with an error
// event, reason NO_LEADER, and a new one is refused with 503 NO_LEADER,
// where a watch without it would go on as if live.
func TestWatchRequireLeader(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{Server: func(o *rpc.Options) {
		o.Watch.LeaderlessTimeout = 300 * time.Millisecond
	}})
	c.WaitLeader()
	f := c.Followers()[0]
	base := serve(t, f).URL + "/api/v1"
	urls := []string{
		base + "/watch?service=web&require_leader=true&progress_interval=200ms",
		base + "/watch/namespaces?namespace=a&namespace=b&require_leader=true&progress_interval=200ms",
	}
	var streams []*sseStream
	for _, u := range urls {
		streams = append(streams, openWatch(t, u, ""))
	}
	c.Partition(f)
	for i, s := range streams {
		var ev sseEvent
		for ev = s.next(); ev.event != "error"; ev = s.next() {
		}
		if errorReason(ev.data) != "NO_LEADER" {
			t.Fatalf("%s: error event %v, want NO_LEADER", urls[i], ev.data)
		}
	}
	for _, u := range urls {
		var code int
		var body map[string]any
		c.Eventually("a refusal without a leader", 20*time.Second, func() bool {
			code, body = openStatus(t, u)
			return code != http.StatusOK
		})
		if code != http.StatusServiceUnavailable || errorReason(body) != "NO_LEADER" {
			t.Fatalf("%s without a leader: %d %v", u, code, body)
		}
	}
	c.Heal()
	c.Eventually("the watch opens again with a leader", 20*time.Second, func() bool {
		code, _ := openStatus(t, urls[0])
		return code == http.StatusOK
	})
}
