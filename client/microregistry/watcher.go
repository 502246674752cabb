package microregistry

import (
	"context"
	"fmt"
	"sync"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// Watcher mirrors go-micro's registry.Watcher.
type Watcher struct {
	cancel  context.CancelFunc
	results chan *Result
	done    chan struct{}

	mu  sync.Mutex
	err error
}

// Watch reports changes of the healthy nodes of one service
// (WatchService) or of every service of the domain, from now on: it returns
// once the watch has its starting state, which holds every change
// acknowledged before Watch was called, so every change after Watch returns
// is reported. It fails when no starting state arrives within the
// registry's timeout.
func (r *Registry) Watch(opts ...WatchOption) (*Watcher, error) {
	c, o, err := r.client()
	if err != nil {
		return nil, err
	}
	var wo WatchOptions
	for _, opt := range opts {
		opt(&wo)
	}
	parent := wo.Context
	if parent == nil {
		parent = o.Context
	}
	ctx, cancel := context.WithCancel(parent)
	w := &Watcher{cancel: cancel, results: make(chan *Result), done: make(chan struct{})}
	req := &rosterv1.WatchRequest{
		Namespace: domainOr(wo.Domain), Service: wo.Service, HealthyOnly: true,
		// translate keeps the instances it has seen by id.
		OmitPrevInstance: true,
		StartRead:        &rosterv1.ReadOptions{Consistency: rosterv1.Consistency_CONSISTENCY_LINEARIZABLE},
	}
	started := make(chan struct{})
	go func() {
		defer close(w.done)
		known := map[string]*rosterv1.Instance{}
		first := true
		for resp, err := range c.Watch(ctx, req) {
			if err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				return
			}
			if first {
				close(started)
			}
			for _, res := range w.translate(resp, known, first) {
				select {
				case w.results <- res:
				case <-ctx.Done():
					return
				}
			}
			first = false
		}
	}()
	wait, cancelWait := r.ctx(wo.Context, o)
	defer cancelWait()
	select {
	case <-started:
		return w, nil
	case <-w.done:
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.err == nil {
			return nil, ErrWatcherStopped
		}
		return nil, w.err
	case <-wait.Done():
		cancel()
		<-w.done
		return nil, fmt.Errorf("watch: no starting state within %s: %w", o.Timeout, wait.Err())
	}
}

func instanceKey(i *rosterv1.Instance) string {
	return i.GetService() + "/" + i.GetId()
}

func result(action string, inst *rosterv1.Instance) *Result {
	return &Result{Action: action, Service: &Service{
		Name: inst.GetService(), Version: inst.GetMetadata()[VersionKey],
		Nodes: []*Node{nodeOf(inst)},
	}}
}

// translate turns one watch message into results, keeping known (the
// healthy nodes seen so far) current. The first reset is the state the
// watch starts from and reports nothing; a later one (the watch resumed
// past the server's history) reports the difference.
func (w *Watcher) translate(resp *rosterv1.WatchResponse, known map[string]*rosterv1.Instance, first bool) []*Result {
	var out []*Result
	if resp.GetReset_() {
		next := map[string]*rosterv1.Instance{}
		for _, ev := range resp.GetEvents() {
			next[instanceKey(ev.GetInstance())] = ev.GetInstance()
		}
		if !first {
			for k, inst := range known {
				if _, ok := next[k]; !ok {
					out = append(out, result("delete", inst))
				}
			}
			for k, inst := range next {
				if prev, ok := known[k]; !ok {
					out = append(out, result("create", inst))
				} else if prev.GetModRevision() != inst.GetModRevision() {
					out = append(out, result("update", inst))
				}
			}
		}
		clear(known)
		for k, v := range next {
			known[k] = v
		}
		return out
	}
	for _, ev := range resp.GetEvents() {
		inst := ev.GetInstance()
		k := instanceKey(inst)
		switch ev.GetType() {
		case rosterv1.Event_TYPE_PUT:
			action := "update"
			if _, ok := known[k]; !ok {
				action = "create"
			}
			known[k] = inst
			out = append(out, result(action, inst))
		case rosterv1.Event_TYPE_DELETE:
			// The event carries only the key fields (the watch omits
			// prev_instance): report the node as last seen, with its
			// version, address and metadata. go-micro's cache matches a
			// delete to its service by version.
			if prev, ok := known[k]; ok {
				inst = prev
			}
			delete(known, k)
			out = append(out, result("delete", inst))
		}
	}
	return out
}

// Next blocks until the next change and returns it. After Stop, or when
// the watch has ended, it returns ErrWatcherStopped or the error that
// ended the watch.
func (w *Watcher) Next() (*Result, error) {
	select {
	case res := <-w.results:
		return res, nil
	case <-w.done:
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.err != nil {
			return nil, w.err
		}
		return nil, ErrWatcherStopped
	}
}

// Stop ends the watch; a blocked Next returns.
func (w *Watcher) Stop() {
	w.cancel()
	<-w.done
	w.mu.Lock()
	w.err = nil
	w.mu.Unlock()
}
