package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roster-registry/roster/internal/testcluster"
	"github.com/roster-registry/roster/rpc"
)

// sseEvent is one server-sent event.
type sseEvent struct {
	event, id string
	data      map[string]any
}

// sseStream reads the events of one open watch.
type sseStream struct {
	t      *testing.T
	resp   *http.Response
	cancel context.CancelFunc
	events chan sseEvent
	// done is closed when the body ends.
	done chan struct{}
}

// openWatch GETs url (the watch endpoint) with the Last-Event-ID header
// when lastID is set, requires a 200 event stream and reads its events.
func openWatch(t *testing.T, url, lastID string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		t.Fatalf("watch %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := readEvents(t, resp)
	s.cancel = cancel
	return s
}

// readEvents reads the events of resp, an open event stream.
func readEvents(t *testing.T, resp *http.Response) *sseStream {
	t.Helper()
	s := &sseStream{t: t, resp: resp, cancel: func() {}, events: make(chan sseEvent, 100), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		var data string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.event != "" || data != "" {
					if err := json.Unmarshal([]byte(data), &ev.data); err != nil {
						ev.data = map[string]any{"unparsed": data}
					}
					s.events <- ev
				}
				ev, data = sseEvent{}, ""
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "event: "):
				ev.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				data += strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *sseStream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next returns the next event that is not a progress bookmark.
func (s *sseStream) next() sseEvent {
	s.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev := <-s.events:
			if ev.event == "progress" {
				continue
			}
			return ev
		case <-s.done:
			select {
			case ev := <-s.events:
				return ev
			default:
			}
			s.t.Fatal("the event stream ended")
		case <-timeout:
			s.t.Fatal("no event within 20s")
		}
	}
}

// changes returns the (type id) pairs of an events or reset event.
func changes(ev sseEvent) []string {
	var out []string
	list, _ := ev.data["events"].([]any)
	for _, e := range list {
		m := e.(map[string]any)
		out = append(out, strings.TrimPrefix(m["type"].(string), "TYPE_")+" "+m["instance"].(map[string]any)["id"].(string))
	}
	return out
}

// TestWatchServerSentEvents: a watch through a follower's HTTP front end
// starts with a reset holding what exists, then carries each change as an
// event whose id is its revision; reconnecting with Last-Event-ID resumes
// after that revision with nothing lost or repeated; the server's stream
// ends when the client goes away; draining the node ends the event stream
// with an error event.
func TestWatchServerSentEvents(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{})
	c.WaitLeader()
	fs := c.Followers()
	watchNode := fs[0]
	a, b := serve(t, watchNode).URL+"/api/v1", serve(t, fs[1]).URL+"/api/v1"
	register := func(api, id string) uint64 {
		t.Helper()
		r := call(t, "POST", api+"/instances", `{"instance": {"service": "web", "id": "`+id+`", "address": "10.0.0.1", "port": 80}}`).must(t, http.StatusOK)
		return num(t, r["revision"])
	}
	register(b, "w1")
	// Another service's changes do not reach a watch of web.
	call(t, "POST", b+"/instances", `{"instance": {"service": "db", "id": "d1", "address": "10.0.0.5", "port": 5432}}`).must(t, http.StatusOK)

	w := openWatch(t, a+"/watch?namespace=default&service=web&consistency=linearizable&progress_interval=200ms", "")
	ev := w.next()
	if ev.event != "reset" || ev.data["reset"] != true || strings.Join(changes(ev), ",") != "PUT w1" || ev.id != ev.data["revision"] {
		t.Fatalf("first event: %+v", ev)
	}
	rev2 := register(b, "w2")
	ev = w.next()
	if ev.event != "events" || strings.Join(changes(ev), ",") != "PUT w2" || ev.id != strconv.FormatUint(rev2, 10) {
		t.Fatalf("second event (revision %d): %+v", rev2, ev)
	}
	// Progress bookmarks arrive between changes, with ids too.
	select {
	case ev := <-w.events:
		if ev.event != "progress" || ev.data["progress"] != true || ev.id == "" {
			t.Fatalf("want a bookmark, got %+v", ev)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no bookmark within 20s")
	}
	w.close()
	c.Eventually("the follower's watch stream to end after the client left", 10*time.Second, func() bool {
		return watchNode.Server.WatchStats().Active == 0
	})

	// Changes while disconnected, then a resume from the last id seen: the
	// URL's start_revision=0 is what EventSource repeats; the header wins.
	register(b, "w3")
	r := call(t, "DELETE", b+"/services/default/web/instances/w1", "").must(t, http.StatusOK)
	revDel := num(t, r["revision"])
	w = openWatch(t, a+"/watch?service=web&start_revision=0", strconv.FormatUint(rev2, 10))
	var seen []string
	var last string
	for len(seen) < 2 {
		ev := w.next()
		if ev.event != "events" {
			t.Fatalf("resumed stream sent %+v", ev)
		}
		seen = append(seen, changes(ev)...)
		last = ev.id
	}
	if strings.Join(seen, ",") != "PUT w3,DELETE w1" || last != strconv.FormatUint(revDel, 10) {
		t.Fatalf("resumed after %d: %v, last id %s (want %d)", rev2, seen, last, revDel)
	}

	// A watch resumed at the head has nothing to send at first: it opens
	// all the same, and carries the next change.
	head := openWatch(t, a+"/watch?service=web&progress_interval=10m", last)
	rev4 := register(b, "w4")
	if ev := head.next(); ev.event != "events" || strings.Join(changes(ev), ",") != "PUT w4" || ev.id != strconv.FormatUint(rev4, 10) {
		t.Fatalf("watch from the head (%s): %+v", last, ev)
	}
	if ev := w.next(); strings.Join(changes(ev), ",") != "PUT w4" {
		t.Fatalf("resumed watch: %+v", ev)
	}

	// omit_prev_instance=true: an update's event carries no prev_instance;
	// a watch without it gets the replaced instance too.
	bare := openWatch(t, a+"/watch?service=web&omit_prev_instance=true&progress_interval=10m", strconv.FormatUint(rev4, 10))
	r = call(t, "POST", b+"/instances", `{"instance": {"service": "web", "id": "w4", "address": "10.0.0.1", "port": 81}}`).must(t, http.StatusOK)
	rev5 := strconv.FormatUint(num(t, r["revision"]), 10)
	prev := func(ev sseEvent) any {
		t.Helper()
		evs, _ := ev.data["events"].([]any)
		if ev.event != "events" || ev.id != rev5 || len(evs) != 1 {
			t.Fatalf("the update of w4 (revision %s) arrived as %+v", rev5, ev)
		}
		return evs[0].(map[string]any)["prev_instance"]
	}
	if p := prev(bare.next()); p != nil {
		t.Fatalf("omit_prev_instance=true, yet the update carries prev_instance %v", p)
	}
	if p, _ := prev(head.next()).(map[string]any); p["port"] != float64(80) {
		t.Fatalf("without omit_prev_instance the update carries prev_instance %v, want the instance on port 80", p)
	}
	bare.close()
	head.close()
	if ev := w.next(); strings.Join(changes(ev), ",") != "PUT w4" {
		t.Fatalf("resumed watch: %+v", ev)
	}

	// Draining the node ends the stream with an error event naming why.
	watchNode.Server.Drain()
	ev = w.next()
	if ev.event != "error" || ev.data["status"] != "UNAVAILABLE" || !strings.Contains(mustJSON(t, ev.data["details"]), "NODE_DRAINING") {
		t.Fatalf("on drain: %+v", ev)
	}
	select {
	case <-w.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the event stream did not end after the drain")
	}
}

// TestWatchFromAnotherHistoryResets: an EventSource that reconnects with a
// Last-Event-ID beyond anything the node has (its revision came from
// another history, such as a dev node before a restart) gets, once the node
// has not reached it within the read timeout, a reset of the node's state at
// the node's own revision, and then its changes; bookmarks never name the
// foreign revision.
func TestWatchFromAnotherHistoryResets(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{Server: func(o *rpc.Options) { o.ReadTimeout = 100 * time.Millisecond }})
	nd := c.WaitLeader()
	api := serve(t, nd).URL + "/api/v1"
	call(t, "POST", api+"/instances", `{"instance": {"service": "hb", "id": "f1", "address": "10.3.0.1", "port": 1}}`).must(t, http.StatusOK)
	const foreign = "99999999999"
	w := openWatch(t, api+"/watch?service=hb&progress_interval=100ms", foreign)
	var ev sseEvent
	for {
		select {
		case ev = <-w.events:
		case <-w.done:
			t.Fatal("the event stream ended")
		}
		if ev.event != "progress" {
			break
		}
		if ev.id == foreign {
			t.Fatalf("bookmark at the foreign revision: %+v", ev)
		}
	}
	if ev.event != "reset" || strings.Join(changes(ev), ",") != "PUT f1" || ev.id == foreign || ev.id != ev.data["revision"] {
		t.Fatalf("first event of a watch from another history: %+v; want a reset at the node's revision", ev)
	}
	r := call(t, "POST", api+"/instances", `{"instance": {"service": "hb", "id": "f2", "address": "10.3.0.1", "port": 1}}`).must(t, http.StatusOK)
	ev = w.next()
	if ev.event != "events" || strings.Join(changes(ev), ",") != "PUT f2" || ev.id != strconv.FormatUint(num(t, r["revision"]), 10) {
		t.Fatalf("after the reset: %+v", ev)
	}
}

// TestWatchNamespacesFromAnotherHistoryResets: the same over the
// several-namespaces stream, whose id is the lowest revision its watches
// reached: after a reset below the foreign Last-Event-ID the ids follow
// the node's revisions, so a later resume misses nothing.
func TestWatchNamespacesFromAnotherHistoryResets(t *testing.T) {
	c := testcluster.New(t, 1, testcluster.Options{Server: func(o *rpc.Options) { o.ReadTimeout = 100 * time.Millisecond }})
	nd := c.WaitLeader()
	api := serve(t, nd).URL + "/api/v1"
	call(t, "POST", api+"/instances", `{"instance": {"service": "hb", "id": "f1", "address": "10.3.0.1", "port": 1}}`).must(t, http.StatusOK)
	const foreign = "99999999999"
	w := openWatch(t, api+"/watch/namespaces?namespace=default&progress_interval=10m", foreign)
	ev := w.next()
	resp, _ := ev.data["response"].(map[string]any)
	if ev.event != "reset" || ev.id == foreign || ev.id != resp["revision"] {
		t.Fatalf("first event of a watch from another history: %+v; want a reset with the node's revision as its id", ev)
	}
	r := call(t, "POST", api+"/instances", `{"instance": {"service": "hb", "id": "f2", "address": "10.3.0.1", "port": 1}}`).must(t, http.StatusOK)
	ev = w.next()
	for ev.event == "progress" {
		ev = w.next()
	}
	if ev.event != "events" || ev.id != strconv.FormatUint(num(t, r["revision"]), 10) {
		t.Fatalf("after the reset: %+v; want the events at the write's revision", ev)
	}
}
