package checker

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Kind is the kind of one client call.
type Kind string

// The kinds of client call a history records.
const (
	KindRegister   Kind = "register"
	KindDeregister Kind = "deregister"
	KindGet        Kind = "get"
	KindHeartbeat  Kind = "heartbeat"
)

// Outcome is what the client learned about a call.
type Outcome string

// The outcomes of a call.
const (
	// OutcomeOK: the call succeeded and, for a write, was applied.
	OutcomeOK Outcome = "ok"
	// OutcomeFail: the call definitely did not change anything
	// (InvalidArgument, NotFound, FailedPrecondition, ...). Set Op.Code to the
	// gRPC code name: a deregister failing with "NotFound" is still an
	// observation that the key was absent.
	OutcomeFail Outcome = "fail"
	// OutcomeUnknown: the call may or may not have happened (deadline
	// exceeded, Unavailable, connection lost after sending).
	OutcomeUnknown Outcome = "unknown"
)

// CodeNotFound is the gRPC code name that makes a failed deregister an
// observation of absence.
const CodeNotFound = "NotFound"

// Op records one client call. Each client has at most one call in flight,
// except the renewals of a KeepAlive stream (Stream), which are pipelined.
type Op struct {
	// ClientID identifies the calling client, zero-based.
	ClientID int `json:"client"`
	// Kind of call.
	Kind Kind `json:"kind"`
	// Key is the instance key "namespace/service/id" of a register,
	// deregister or heartbeat (see InstanceKey).
	Key string `json:"key,omitempty"`
	// Service is "namespace/service" for a get (see ServiceKey).
	Service string `json:"service,omitempty"`
	// Value of a register, unique per register (the workload writes
	// address:port).
	Value string `json:"value,omitempty"`
	// TTL of a register's lease (zero: no lease), or the TTL a heartbeat
	// reported renewing.
	TTL time.Duration `json:"ttl,omitempty"`
	// Call and Return are monotonic client times in nanoseconds. Return is
	// ignored for an unknown outcome.
	Call   int64 `json:"call"`
	Return int64 `json:"return"`
	// Outcome of the call.
	Outcome Outcome `json:"outcome"`
	// Code is the gRPC code name of a failed or unknown call.
	Code string `json:"code,omitempty"`
	// Revision made by an acknowledged write, or the revision a get reflects;
	// zero when not known.
	Revision uint64 `json:"revision,omitempty"`
	// Observed is what a successful get saw: instance id → value.
	Observed map[string]string `json:"observed,omitempty"`
	// Stale marks a get made at stale consistency; L ignores it.
	Stale bool `json:"stale,omitempty"`
	// Node that served the call, for people reading the history.
	Node string `json:"node,omitempty"`
	// Stream marks a heartbeat sent as one message of a KeepAlive stream:
	// Call is when the message was sent, Return when its answer arrived (or,
	// unanswered, when the stream ended). A stream's renewals overlap.
	Stream bool `json:"stream,omitempty"`
}

// EventType is the type of one watch event.
type EventType string

// The watch event types.
const (
	EventPut    EventType = "PUT"
	EventDelete EventType = "DELETE"
)

// WatchEvent is one change to one instance as a watcher received it.
type WatchEvent struct {
	Type     EventType `json:"type"`
	Revision uint64    `json:"revision"`
	Key      string    `json:"key"`
	// Value after a PUT (address:port); empty for a DELETE.
	Value string `json:"value,omitempty"`
}

// WatchMessage is one WatchResponse as a watcher received it.
type WatchMessage struct {
	// Revision is the last revision the message completes.
	Revision uint64 `json:"revision"`
	// Reset: Events are the whole state at Revision.
	Reset bool `json:"reset,omitempty"`
	// Progress: a bookmark; every change up to Revision has been sent.
	Progress bool         `json:"progress,omitempty"`
	Events   []WatchEvent `json:"events,omitempty"`
	// Time the client received the message (monotonic ns).
	Time int64 `json:"time"`
}

// Subscription is one Watch call of a watcher: the first, or a resume after
// the previous stream ended.
type Subscription struct {
	// StartRevision requested: 0 asks for a reset first, N for every change
	// after N. A resume should ask for the last revision received.
	StartRevision uint64 `json:"start_revision"`
	// Node the call went to.
	Node string `json:"node,omitempty"`
	// Time the call was made (monotonic ns).
	Time int64 `json:"time"`
	// Messages received on this stream, in order.
	Messages []WatchMessage `json:"messages,omitempty"`
	// Err that ended the stream, if any.
	Err string `json:"err,omitempty"`
}

// WatchStream is everything one watcher received, across resumes.
type WatchStream struct {
	// Watcher names the watcher.
	Watcher string `json:"watcher"`
	// Namespace and Service are the watch filter; an empty Service watches
	// the whole namespace.
	Namespace string `json:"namespace"`
	Service   string `json:"service,omitempty"`
	// HealthyOnly watchers see unhealthy instances as deletes, so W checks
	// their order and uniqueness but not gaps or replayed state.
	HealthyOnly   bool           `json:"healthy_only,omitempty"`
	Subscriptions []Subscription `json:"subscriptions"`
}

// Snapshot is a final linearizable list taken after the workload stopped.
type Snapshot struct {
	// Namespace and Service scope the list; an empty Service lists the
	// namespace, an empty Namespace everything.
	Namespace string `json:"namespace,omitempty"`
	Service   string `json:"service,omitempty"`
	// Revision the list reflects.
	Revision uint64 `json:"revision"`
	// Call and Return times of the read (monotonic ns).
	Call   int64 `json:"call"`
	Return int64 `json:"return"`
	// Instances maps instance key → value.
	Instances map[string]string `json:"instances"`
}

// NodeHash is one node's report of its state hash at an applied index.
type NodeHash struct {
	Node         string `json:"node"`
	AppliedIndex uint64 `json:"applied_index"`
	Hash         string `json:"hash"`
}

// Expiry is one observation that an instance was gone (or critical) while
// the workload had not deregistered it.
type Expiry struct {
	Key string `json:"key"`
	// Time is the earliest client time it was seen gone: the return time of
	// the get that missed it, or the receive time of the watch DELETE. It
	// bounds the deletion from above.
	Time int64 `json:"time"`
	// NotBefore is the earliest time the observation can describe (the
	// get's call time); zero when Revision orders it instead.
	NotBefore int64 `json:"not_before,omitempty"`
	// Revision of the DELETE, or of the get that missed it; zero if unknown.
	Revision uint64 `json:"revision,omitempty"`
	// Critical: seen critical rather than gone.
	Critical bool `json:"critical,omitempty"`
	// Source is "get" or "watch:<watcher>", for people.
	Source string `json:"source,omitempty"`
}

// History is everything a chaos run recorded.
type History struct {
	// Ops are the client calls, in any order.
	Ops []Op `json:"ops"`
	// KeySpace lists every instance key the workload may touch; a get on a
	// service observes each of them. Keys written or observed are added.
	KeySpace []string `json:"key_space,omitempty"`
	// Initial is the state before the workload (key → value), usually empty.
	Initial map[string]string `json:"initial,omitempty"`
	// Watches are the watchers' streams.
	Watches []WatchStream `json:"watches,omitempty"`
	// Final are the final linearizable lists.
	Final []Snapshot `json:"final,omitempty"`
	// NodeHashes are the nodes' state hashes at the end.
	NodeHashes []NodeHash `json:"node_hashes,omitempty"`
	// Expiries are observed lease expiries.
	Expiries []Expiry `json:"expiries,omitempty"`
}

// InstanceKey returns the key "namespace/service/id" of an instance.
func InstanceKey(namespace, service, id string) string {
	return namespace + "/" + service + "/" + id
}

// ServiceKey returns "namespace/service", the Service of a get.
func ServiceKey(namespace, service string) string {
	return namespace + "/" + service
}

// serviceOf returns the "namespace/service" part of an instance key.
func serviceOf(key string) string {
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		return key[:i]
	}
	return ""
}

// scopePrefix returns the key prefix a namespace/service filter matches;
// empty matches every key.
func scopePrefix(namespace, service string) string {
	switch {
	case namespace == "":
		return ""
	case service == "":
		return namespace + "/"
	default:
		return namespace + "/" + service + "/"
	}
}

// end returns a time after every call and return in the history, used as
// the open return of unknown-outcome calls.
func (h *History) end() int64 {
	var end int64
	for _, op := range h.Ops {
		end = max(end, op.Call, op.Return)
	}
	for _, w := range h.Watches {
		for _, s := range w.Subscriptions {
			end = max(end, s.Time)
			for _, m := range s.Messages {
				end = max(end, m.Time)
			}
		}
	}
	for _, s := range h.Final {
		end = max(end, s.Call, s.Return)
	}
	return end + 1
}

// Save writes the history as indented JSON to path, atomically.
func (h *History) Save(path string) error {
	data, err := json.MarshalIndent(h, "", " ")
	if err != nil {
		return fmt.Errorf("encode history: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".history-*.json")
	if err != nil {
		return fmt.Errorf("save history: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save history: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save history: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save history: %w", err)
	}
	return nil
}

// Load reads a history written by Save.
func Load(path string) (*History, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	var h History
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("load history %s: %w", path, err)
	}
	return &h, nil
}

// start returns the earliest call in the history, the zero of the times
// checkers print.
func (h *History) start() int64 {
	start := h.end()
	for _, op := range h.Ops {
		start = min(start, op.Call)
	}
	return start
}

// since formats a history time relative to the first call.
func (h *History) since(t int64) time.Duration { return time.Duration(t - h.start()) }

// firstSeen returns, per (key, value), the earliest time any read, watch
// message or final list showed that value. Values are unique per register,
// so an unknown-outcome register whose value was seen had been applied by
// then; this assumes each recorded call is applied at most once (a client
// that retries a register internally must record each attempt as an op).
func firstSeen(h *History) map[[2]string]int64 {
	seen := map[[2]string]int64{}
	note := func(key, value string, t int64) {
		k := [2]string{key, value}
		if old, ok := seen[k]; !ok || t < old {
			seen[k] = t
		}
	}
	for _, op := range h.Ops {
		if op.Kind == KindGet && op.Outcome == OutcomeOK {
			for id, v := range op.Observed {
				note(op.Service+"/"+id, v, op.Return)
			}
		}
	}
	for _, w := range h.Watches {
		for _, s := range w.Subscriptions {
			for _, m := range s.Messages {
				for _, e := range m.Events {
					if e.Type == EventPut {
						note(e.Key, e.Value, m.Time)
					}
				}
			}
		}
	}
	for _, s := range h.Final {
		for k, v := range s.Instances {
			note(k, v, s.Return)
		}
	}
	return seen
}

// watchCoverage is what one watcher proves it saw: every change in its
// scope within each covered range of revisions, and when each revision had
// reached it.
type watchCoverage struct {
	namespace, service string
	// ranges are (from, to] revision ranges in which every change in scope
	// was delivered as an event, in order.
	ranges [][2]uint64
	// times and revs: message receive times and the revision each message
	// completed, in order.
	times []int64
	revs  []uint64
}

// coverage lists, per watcher that sees every change (not healthy-only),
// the revision ranges it saw whole. A reset proves the state at its
// revision but not the changes before it, so it starts a new range; a
// resume from revision N continues a range only when N is the last
// revision received.
func coverage(h *History) []watchCoverage {
	var out []watchCoverage
	for _, w := range h.Watches {
		if w.HealthyOnly {
			continue
		}
		c := watchCoverage{namespace: w.Namespace, service: w.Service}
		var last uint64
		open := false // a range is open at last
		for _, s := range w.Subscriptions {
			if s.StartRevision == 0 || !open || s.StartRevision != last {
				open = false
			}
			for _, m := range s.Messages {
				c.times = append(c.times, m.Time)
				c.revs = append(c.revs, m.Revision)
				switch {
				case m.Reset:
					c.ranges = append(c.ranges, [2]uint64{m.Revision, m.Revision})
					open = true
				case open && m.Revision >= last:
					c.ranges[len(c.ranges)-1][1] = m.Revision
				case !open && s.StartRevision > 0 && s.StartRevision <= m.Revision:
					c.ranges = append(c.ranges, [2]uint64{s.StartRevision, m.Revision})
					open = true
				}
				last = max(last, m.Revision)
			}
		}
		out = append(out, c)
	}
	return out
}

// covers reports whether the watcher saw, as events, every change to key
// at a revision committed after time t: from the last revision it had
// received before t to the end of what it received.
func (c watchCoverage) covers(key string, t int64) bool {
	if !strings.HasPrefix(key, c.namespace+"/") {
		return false
	}
	if c.service != "" && serviceOf(key) != c.namespace+"/"+c.service {
		return false
	}
	var from uint64
	have := false
	for i, at := range c.times {
		if at < t {
			from, have = c.revs[i], true
		}
	}
	if !have || len(c.revs) == 0 {
		return false
	}
	end := slices.Max(c.revs)
	for _, r := range c.ranges {
		if r[0] <= from && end <= r[1] {
			return true
		}
	}
	return false
}

// neverApplied reports, for a register of unknown outcome whose value was
// never seen, whether a watcher proves it never took effect: the watcher
// saw every change to its key after the call, and a register writes a value
// no other register writes, so had it applied the watcher would have seen
// that value. Leaving such writes open to the end of the history would let
// porcupine apply each of them at any point, which with many of them on one
// key makes its search explode; dropping them loses no behaviour the
// history can show.
func neverApplied(cov []watchCoverage, op Op) bool {
	for _, c := range cov {
		if c.covers(op.Key, op.Call) {
			return true
		}
	}
	return false
}
