package httpapi

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// Consul names an instance by its service ID alone, unique per agent;
// Roster keys instances by namespace, service and id. Registration and the
// agent calls by ID (deregister, maintenance, check updates) need the
// services that hold an ID in a namespace, and every node must give the
// same answer: the one a linearizable scan of the namespace gives. A scan
// reads every instance of the namespace, too much for a check pass, which
// is a heartbeat; so a node keeps the last scan of each namespace as an
// idIndex and reuses it while the registry revision is the one the scan
// began at, which a caller learns from the one linearizable read it makes
// anyway. When the registry has moved, callers share one new scan.

// heartbeatIndexAge is how old an index a check update (a heartbeat) may
// trust after the registry has moved, once its own read has found the
// instance where the index says, and a registration when the index names
// no other service for its ID: without it, every heartbeat and
// registration on a busy cluster would wait for a scan of its namespace.
// For that long either may miss that another service took the same ID
// meanwhile. Deregistration and maintenance always check against the
// current state.
var heartbeatIndexAge = 10 * time.Second

// Bounds of the per-node ID indexes.
const (
	// consulIDCacheSize bounds the IDs held by all indexes together; a
	// namespace with more is scanned on every call.
	consulIDCacheSize = 100_000
	// consulIndexCount bounds the indexes (namespaces times tokens).
	consulIndexCount = 1024
)

// idIndex is one scan of a namespace as one token reads it.
type idIndex struct {
	// rev is the registry revision of the linearizable read the scan
	// began with. A caller whose own linearizable read returns rev may
	// use the index: nothing changed since, so every read of the scan saw
	// that state. A scan that raced a write is never reused: later reads
	// return more than rev.
	rev uint64
	// at is when the scan began.
	at time.Time
	// ids maps each service ID to the services holding it, sorted.
	ids map[string][]string
}

// idScan is a scan in progress; callers that need it wait on done.
type idScan struct {
	done chan struct{}
	idx  *idIndex
	err  error
}

// indexKey names the index of ns as the token of ctx reads it: the
// Registry answers only what the token may read, so tokens do not share.
func indexKey(ctx context.Context, ns string) string {
	md, _ := metadata.FromOutgoingContext(ctx)
	tok := md.Get("authorization")
	if len(tok) == 0 {
		return ns
	}
	sum := sha256.Sum256([]byte(strings.Join(tok, "\x00")))
	return ns + "\x00" + string(sum[:16])
}

// holders returns, for each of ids, the services of namespace ns that hold
// an instance with that service ID, sorted, as of a linearizable read made
// by this call; with trust > 0, as of an index at most trust old when that
// read found the instance where the index says (heartbeatIndexAge).
func (c *consulAPI) holders(ctx context.Context, ns string, trust time.Duration, ids ...string) ([][]string, error) {
	found, _, err := c.holdersRead(ctx, ns, trust, ids...)
	return found, err
}

// holdersRead is holders, also returning the read of one service it made
// on the way (nil when it made none): a caller that needs that service's
// instances need not read them again.
func (c *consulAPI) holdersRead(ctx context.Context, ns string, trust time.Duration, ids ...string) ([][]string, *rosterv1.GetServiceResponse, error) {
	key := indexKey(ctx, ns)
	c.mu.Lock()
	idx := c.indexes[key]
	c.mu.Unlock()
	probe, probeID := "", ""
	if idx != nil {
		for _, id := range ids {
			if len(idx.ids[id]) == 1 {
				probe, probeID = idx.ids[id][0], id
				break
			}
		}
	}
	var rev uint64
	trusted := false
	var read *rosterv1.GetServiceResponse
	if probe != "" {
		// The hot path: one read of the service the index names, the read
		// a check pass has always made, whose revision also says whether
		// the index still holds.
		resp, err := c.h.registry.GetService(ctx, &rosterv1.GetServiceRequest{Namespace: ns, Service: probe})
		if err != nil {
			return nil, nil, err
		}
		read = resp
		rev = resp.GetHeader().GetRevision()
		if trust > 0 && c.now().Sub(idx.at) < trust {
			trusted = slices.ContainsFunc(resp.Instances, func(in *rosterv1.Instance) bool { return in.Id == probeID })
		}
	} else {
		list, err := c.h.registry.ListServices(ctx, &rosterv1.ListServicesRequest{Namespace: ns})
		if err != nil {
			return nil, nil, err
		}
		rev = list.GetHeader().GetRevision()
	}
	if !trusted && (idx == nil || idx.rev != rev) {
		var err error
		if idx, err = c.fresh(ctx, ns, key, rev); err != nil {
			return nil, nil, err
		}
	}
	out := make([][]string, len(ids))
	for i, id := range ids {
		out[i] = idx.ids[id]
	}
	return out, read, nil
}

// fresh returns an index of ns at revision rev or later: the kept one, one
// being scanned, or a new scan. A scan begun before the caller's read may
// have missed a write the caller saw, so that one is waited out, not used.
func (c *consulAPI) fresh(ctx context.Context, ns, key string, rev uint64) (*idIndex, error) {
	for {
		c.mu.Lock()
		if idx := c.indexes[key]; idx != nil && idx.rev >= rev {
			c.mu.Unlock()
			return idx, nil
		}
		s := c.scans[key]
		if s == nil {
			s = &idScan{done: make(chan struct{})}
			c.scans[key] = s
			c.mu.Unlock()
			s.idx, s.err = c.scan(ctx, ns)
			c.mu.Lock()
			delete(c.scans, key)
			if s.err == nil {
				c.keep(key, s.idx)
			}
			c.mu.Unlock()
			close(s.done)
			return s.idx, s.err
		}
		c.mu.Unlock()
		select {
		case <-s.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if s.err == nil && s.idx.rev >= rev {
			return s.idx, nil
		}
		// Too old, or failed (perhaps only its caller's context ended):
		// scan again.
	}
}

// scan reads every instance id of ns, with the service of each, in one
// linearizable read.
func (c *consulAPI) scan(ctx context.Context, ns string) (*idIndex, error) {
	list, err := c.h.registry.ListServices(ctx, &rosterv1.ListServicesRequest{Namespace: ns, WithInstanceIds: true})
	if err != nil {
		return nil, err
	}
	idx := &idIndex{rev: list.GetHeader().GetRevision(), at: c.now(), ids: map[string][]string{}}
	for _, s := range list.Services {
		for _, id := range s.InstanceIds {
			idx.ids[id] = append(idx.ids[id], s.Service)
		}
	}
	return idx, nil
}

// keep stores idx as the index of key unless a newer one is kept, within
// the bounds; c.mu is held.
func (c *consulAPI) keep(key string, idx *idIndex) {
	if old := c.indexes[key]; old != nil {
		if old.rev >= idx.rev {
			return
		}
		c.indexed -= len(old.ids)
		delete(c.indexes, key)
	}
	if len(idx.ids) > consulIDCacheSize {
		return
	}
	if c.indexed+len(idx.ids) > consulIDCacheSize || len(c.indexes) >= consulIndexCount {
		clear(c.indexes)
		c.indexed = 0
	}
	c.indexes[key] = idx
	c.indexed += len(idx.ids)
}

// serviceOf finds the service of the instance a Consul service ID names in
// a namespace.
func (c *consulAPI) serviceOf(ctx context.Context, ns, id string) (string, error) {
	found, err := c.holders(ctx, ns, 0, id)
	if err != nil {
		return "", err
	}
	return onlyHolder(ns, id, found[0])
}

// onlyHolder is the one service in svcs that holds service ID id: 404
// when none does, 409 when several do (which one the caller means, Roster
// cannot tell).
func onlyHolder(ns, id string, svcs []string) (string, error) {
	switch len(svcs) {
	case 0:
		return "", &consulError{code: http.StatusNotFound, msg: fmt.Sprintf("unknown service ID %q in namespace %q", id, ns)}
	case 1:
		return svcs[0], nil
	default:
		return "", &consulError{code: http.StatusConflict, msg: fmt.Sprintf(
			"service ID %q names instances of services %s in namespace %q; use the Roster API, which keys instances by service and id",
			id, strings.Join(svcs, ", "), ns)}
	}
}

// checkRegistration refuses to register service ID id under service svc
// while another service of ns holds it: Consul would replace that
// instance, and Roster cannot in one write.
func (c *consulAPI) checkRegistration(ctx context.Context, ns, svc, id string) error {
	// The usual registrations, a new ID or one svc holds already, cost no
	// scan while the last is at most heartbeatIndexAge old; for that long a
	// registration through another node of the same ID under another
	// service may be missed.
	c.mu.Lock()
	idx := c.indexes[indexKey(ctx, ns)]
	c.mu.Unlock()
	if idx != nil && c.now().Sub(idx.at) < heartbeatIndexAge {
		if held := idx.ids[id]; len(held) == 0 || (len(held) == 1 && held[0] == svc) {
			return nil
		}
	}
	found, err := c.holders(ctx, ns, 0, id)
	if err != nil {
		return err
	}
	var others []string
	for _, s := range found[0] {
		if s != svc {
			others = append(others, s)
		}
	}
	if len(others) == 0 {
		return nil
	}
	return &consulError{code: http.StatusConflict, msg: fmt.Sprintf(
		"service ID %q is already registered to service %s in namespace %q; deregister it first (PUT /v1/agent/service/deregister/%s), or register %q under another ID",
		id, quoteAll(others), ns, id, svc)}
}

// now is the clock of the indexes' age.
func (c *consulAPI) now() time.Time {
	if c.clock != nil {
		return c.clock()
	}
	return time.Now()
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
