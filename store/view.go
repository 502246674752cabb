package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"

	"github.com/hashicorp/go-memdb"
)

// View is a read-only MVCC snapshot of the store. Reads take an optional
// memdb.WatchSet: after the read, the set fires when what was read changes,
// so one function serves a plain read, a blocking query and a watch.
type View struct {
	txn  *memdb.Txn
	meta metaRow
}

// Revision returns the revision of the last change this view contains.
func (v *View) Revision() uint64 { return v.meta.Revision }

// Applied returns the Raft index of the last entry this view contains: every
// command at or below it, and none after it, is reflected in the view.
func (v *View) Applied() uint64 { return v.meta.Applied }

// Extinct returns the last revision at which a service lost its last
// instance, 0 when none has: the revision Service reports for a service
// that has no instances.
func (v *View) Extinct() uint64 { return v.meta.Extinct }

// Instance returns one instance, or ErrNotFound.
func (v *View) Instance(ws memdb.WatchSet, k Key) (*Instance, error) {
	if ws == nil {
		i, err := instanceAt(v.txn, k, k)
		if err == nil && i == nil {
			err = ErrNotFound
		}
		return i, err
	}
	ch, raw, err := v.txn.FirstWatch(tableInstances, indexID, k)
	if err != nil {
		return nil, fmt.Errorf("get instance %s: %w", k, err)
	}
	ws.Add(ch)
	if raw == nil {
		return nil, ErrNotFound
	}
	return raw.(*Instance), nil
}

// Service returns the instances of one service sorted by id, and the
// service's revision: the last revision that changed it, or, for a service
// with no instances, Extinct (at least the revision of its own last
// deletion, and moved by no change to a service that has instances).
func (v *View) Service(ws memdb.WatchSet, namespace, service string) (uint64, []*Instance, error) {
	it, err := serviceInstances(v.txn, namespace, service)
	if err != nil {
		return 0, nil, err
	}
	ws.Add(it.WatchCh())
	var out []*Instance
	var rev uint64
	for raw := it.Next(); raw != nil; raw = it.Next() {
		inst := raw.(*Instance)
		out = append(out, inst)
		rev = max(rev, inst.ModRevision)
	}
	ch, raw, err := v.txn.FirstWatch(tableServices, indexID, namespace, service)
	if err != nil {
		return 0, nil, fmt.Errorf("get service %s/%s: %w", namespace, service, err)
	}
	ws.Add(ch)
	if raw == nil {
		// Not the registry revision: that moves with every other service,
		// and a blocking query on this one would wake for each.
		return v.Extinct(), out, nil
	}
	return max(raw.(*serviceRow).ModRevision, rev), out, nil
}

// SummaryDetail asks Services for more than each service's counts.
type SummaryDetail uint8

const (
	// WithTags fills ServiceSummary.Tags.
	WithTags SummaryDetail = 1 << iota
	// WithInstanceIDs fills ServiceSummary.IDs.
	WithInstanceIDs
)

// Services summarises the services of a namespace, or of every namespace when
// namespace is empty, sorted by namespace and name, with what detail asks
// for beyond the counts.
func (v *View) Services(ws memdb.WatchSet, namespace string, detail SummaryDetail) ([]ServiceSummary, error) {
	var it memdb.ResultIterator
	var err error
	if namespace == "" {
		it, err = v.txn.Get(tableInstances, indexID)
	} else {
		it, err = namespaceInstances(v.txn, namespace)
	}
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	ws.Add(it.WatchCh())
	var out []ServiceSummary
	// tags gathers the service's tags; lastLabels skips the instances that
	// share their labels with the one before, as most of a service's do.
	tags := map[string]struct{}{}
	var lastLabels *Labels
	endService := func() {
		n := len(out)
		if n == 0 || len(tags) == 0 {
			return
		}
		out[n-1].Tags = slices.Sorted(maps.Keys(tags))
		clear(tags)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		inst := raw.(*Instance)
		n := len(out)
		if n == 0 || out[n-1].Namespace != inst.Namespace || out[n-1].Service != inst.Service {
			endService()
			lastLabels = nil
			out = append(out, ServiceSummary{Namespace: inst.Namespace, Service: inst.Service})
			n++
		}
		sum := &out[n-1]
		sum.Instances++
		if inst.Healthy() {
			sum.Passing++
		}
		switch inst.Status {
		case HealthWarning:
			sum.Warning++
		case HealthCritical:
			sum.Critical++
		}
		if !inst.Enabled {
			sum.Drained++
		}
		if detail&WithTags != 0 && inst.Labels != nil && inst.Labels != lastLabels {
			lastLabels = inst.Labels
			for _, t := range inst.Labels.Tags {
				tags[t] = struct{}{}
			}
		}
		if detail&WithInstanceIDs != 0 {
			sum.IDs = append(sum.IDs, inst.ID)
		}
	}
	endService()
	return out, nil
}

// Instances calls fn for every instance in key order; fn returning false stops.
func (v *View) Instances(fn func(*Instance) bool) error {
	it, err := v.txn.Get(tableInstances, indexID)
	if err != nil {
		return fmt.Errorf("list instances: %w", err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !fn(raw.(*Instance)) {
			return nil
		}
	}
	return nil
}

// Namespace calls fn for every instance of one namespace in key order.
func (v *View) Namespace(namespace string, fn func(*Instance) bool) error {
	it, err := namespaceInstances(v.txn, namespace)
	if err != nil {
		return err
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !fn(raw.(*Instance)) {
			return nil
		}
	}
	return nil
}

// Count returns the number of instances.
func (v *View) Count() int {
	it, err := v.txn.Get(tableServices, indexID)
	if err != nil {
		return 0
	}
	n := 0
	for raw := it.Next(); raw != nil; raw = it.Next() {
		n += raw.(*serviceRow).Count
	}
	return n
}

// Members returns the member table sorted by node id.
func (v *View) Members(ws memdb.WatchSet) ([]*Member, error) {
	it, err := v.txn.Get(tableMembers, indexID)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	ws.Add(it.WatchCh())
	var out []*Member
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Member))
	}
	return out, nil
}

// Member returns one member, or nil.
func (v *View) Member(nodeID string) *Member {
	raw, err := v.txn.First(tableMembers, indexID, nodeID)
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*Member)
}

// ServiceRevisions calls fn for every service with its last change revision.
func (v *View) ServiceRevisions(fn func(namespace, service string, rev uint64)) error {
	it, err := v.txn.Get(tableServices, indexID)
	if err != nil {
		return fmt.Errorf("list service revisions: %w", err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		row := raw.(*serviceRow)
		rev, err := v.serviceRevision(row)
		if err != nil {
			return err
		}
		fn(row.Namespace, row.Service, rev)
	}
	return nil
}

// serviceRevision is the last revision that changed a service: the row's
// (its last count change) or a later change to one of its instances.
func (v *View) serviceRevision(row *serviceRow) (uint64, error) {
	it, err := serviceInstances(v.txn, row.Namespace, row.Service)
	if err != nil {
		return 0, err
	}
	rev := row.ModRevision
	for raw := it.Next(); raw != nil; raw = it.Next() {
		rev = max(rev, raw.(*Instance).ModRevision)
	}
	return rev, nil
}

// Hash returns a hex SHA-256 of the registry state: every instance with its
// revisions, the members, the remembered request results and the registry
// revision. Two nodes at the same applied index must report the same hash.
func (v *View) Hash() (string, error) {
	h := sha256.New()
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v.Revision())
	h.Write(buf[:])
	var encErr error
	err := v.Instances(func(inst *Instance) bool {
		b, err := MarshalInstance(inst)
		if err != nil {
			encErr = err
			return false
		}
		binary.BigEndian.PutUint64(buf[:], uint64(len(b)))
		h.Write(buf[:])
		h.Write(b)
		return true
	})
	if err != nil {
		return "", err
	}
	if encErr != nil {
		return "", encErr
	}
	members, err := v.Members(nil)
	if err != nil {
		return "", err
	}
	for _, m := range members {
		if m.JoinedToVote {
			// Only when set, so the hash of a state without it is what it
			// was before the field existed.
			fmt.Fprintf(h, "%q %q %q joined-to-vote\n", m.NodeID, m.RaftAddr, m.APIAddr)
		} else {
			fmt.Fprintf(h, "%q %q %q\n", m.NodeID, m.RaftAddr, m.APIAddr)
		}
	}
	if sp := v.SelfPreservation(); !sp.IsZero() {
		b, err := deterministic.Marshal(SelfPreservationSettingsToRecord(sp))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "settings %x\n", b)
	}
	// Remembered request results decide what a repeated write does, so two
	// nodes that disagree on them could diverge: they are state too.
	if err := v.Requests(func(r *RequestResult) bool {
		fmt.Fprintf(h, "%q %d %d %q %d %d %x\n", r.ID(), r.Revision, r.ErrKind(), r.ErrMessage(), r.Time, r.Index, r.Digest[:])
		return true
	}); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// instanceAt returns the instance whose key is k, or nil; arg is k or an
// *Instance with that key. Unlike First, it asks for no watch channel: the
// tree makes a node's channel only for a reader that watches it, and one
// made for a lookup nobody watches would stay with the instance until it
// changes (about a hundred bytes, for every instance a lease renewal or a
// health check looks up).
func instanceAt(txn *memdb.Txn, arg any, k Key) (*Instance, error) {
	// Every key is three names, each ended by a zero byte, so the only
	// stored key that can be a prefix of k's is k's own: the longest
	// prefix match is an exact lookup, and unlike a seek (LowerBound) it
	// walks the tree without building an iterator.
	raw, err := txn.LongestPrefix(tableInstances, indexIDPrefix, arg)
	if err != nil {
		return nil, fmt.Errorf("get instance %s: %w", k, err)
	}
	if raw == nil {
		return nil, nil
	}
	if i := raw.(*Instance); i.ID == k.ID && i.Service == k.Service && i.Namespace == k.Namespace {
		return i, nil
	}
	return nil, nil
}

// serviceInstances iterates a service's instances in id order: a
// whole-name prefix of the id index (instanceKeyIndex), so never those of a
// service whose name extends this one.
func serviceInstances(txn *memdb.Txn, namespace, service string) (memdb.ResultIterator, error) {
	it, err := txn.Get(tableInstances, indexIDPrefix, namespace, service)
	if err != nil {
		return nil, fmt.Errorf("get service %s/%s: %w", namespace, service, err)
	}
	return it, nil
}

// namespaceInstances iterates a namespace's instances in key order, by the
// same kind of prefix as serviceInstances.
func namespaceInstances(txn *memdb.Txn, namespace string) (memdb.ResultIterator, error) {
	it, err := txn.Get(tableInstances, indexIDPrefix, namespace)
	if err != nil {
		return nil, fmt.Errorf("list namespace %s: %w", namespace, err)
	}
	return it, nil
}
