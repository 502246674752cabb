package store

import (
	"fmt"
	"unsafe"

	"github.com/hashicorp/go-memdb"
)

const (
	tableInstances = "instances"
	tableServices  = "services"
	tableMembers   = "members"
	tableSettings  = "settings"
	tableTokens    = "acl_tokens"
	tableACL       = "acl_state"

	indexID     = "id"
	indexSecret = "secret"

	// indexIDPrefix looks up a prefix of whole names of the id index.
	indexIDPrefix = indexID + "_prefix"
)

// serviceRow counts a service's instances; it exists while the service has
// instances. ModRevision is the last revision that changed the count (an
// instance added or removed); a replaced instance does not rewrite the row,
// so the service's revision is the latest of ModRevision and its instances'
// ModRevisions (View.Service, View.ServiceRevisions).
type serviceRow struct {
	Namespace   string
	Service     string
	ModRevision uint64
	Count       int
}

// metaRow holds the registry revision and the applied index of one state
// of the database; the store publishes the two together (Store.meta), so a
// View's revision and applied index are exactly the state it shows.
type metaRow struct {
	Revision uint64
	// Applied is the Raft index of the last entry written, whether or not
	// it changed anything.
	Applied uint64
	// Extinct is the last revision at which a service lost its last
	// instance: the revision an absent service reports, so a blocking query
	// on it is not woken by changes to other services.
	Extinct uint64
	// Requests are the remembered request results of this state, in
	// pruning order. Never
	// modified: a later commit appends past its end or builds a new slice.
	Requests []*RequestResult
}

func schema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		// Instances have one index: every write of an index copies its path
		// to the instance, and a service's or a namespace's instances are
		// a prefix of this one (see serviceInstances).
		tableInstances: {
			Name: tableInstances,
			Indexes: map[string]*memdb.IndexSchema{
				indexID: {Name: indexID, Unique: true, Indexer: instanceKeyIndex{}},
			},
		},
		tableServices: {
			Name: tableServices,
			Indexes: map[string]*memdb.IndexSchema{
				// A namespace's services are a prefix (namespaceCount).
				indexID: {Name: indexID, Unique: true, Indexer: serviceKeyIndex{}},
			},
		},
		tableMembers: {
			Name: tableMembers,
			Indexes: map[string]*memdb.IndexSchema{
				indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "NodeID"}},
			},
		},
		tableSettings: {
			Name: tableSettings,
			Indexes: map[string]*memdb.IndexSchema{
				indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
			},
		},
		tableTokens: {
			Name: tableTokens,
			Indexes: map[string]*memdb.IndexSchema{
				indexID:     {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "AccessorID"}},
				indexSecret: {Name: indexSecret, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "SecretHex"}},
			},
		},
		tableACL: {
			Name: tableACL,
			Indexes: map[string]*memdb.IndexSchema{
				indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
			},
		},
	}}
}

// instanceKeyIndex is the instances' id index: namespace, service and id,
// each followed by a zero byte, so a key sorts by namespace, then service,
// then id, and a whole-name prefix holds exactly one namespace's or one
// service's instances. These are the bytes a CompoundIndex of
// StringFieldIndexes builds, made in one allocation without reflection:
// every write builds them for the new and the replaced instance, and
// every lookup for its key. A lookup passes one Key, or an *Instance
// for that instance's key; a prefix lookup
// (indexIDPrefix) passes a namespace, or a namespace and a service.
type instanceKeyIndex struct{}

func (instanceKeyIndex) FromObject(raw any) (bool, []byte, error) {
	i, ok := raw.(*Instance)
	if !ok {
		return false, nil, fmt.Errorf("instance index: object is %T", raw)
	}
	if i.Namespace == "" || i.Service == "" || i.ID == "" {
		return false, nil, nil
	}
	return true, i.indexKey(), nil
}

func (instanceKeyIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("instance index: %d arguments, want one Key", len(args))
	}
	switch k := args[0].(type) {
	case Key:
		return nameKey(k.Namespace, k.Service, k.ID), nil
	case *Instance:
		// An instance's own key: a pointer is passed without the copy
		// a Key in an interface costs.
		return nameKey(k.Namespace, k.Service, k.ID), nil
	default:
		return nil, fmt.Errorf("instance index: argument is %T, want a Key", args[0])
	}
}

func (instanceKeyIndex) PrefixFromArgs(args ...any) ([]byte, error) {
	if len(args) == 1 {
		// A whole key, for instanceAt's exact lookup through
		// LongestPrefix: a stored key that is a prefix of it is it.
		switch k := args[0].(type) {
		case Key:
			return nameKey(k.Namespace, k.Service, k.ID), nil
		case *Instance:
			return nameKey(k.Namespace, k.Service, k.ID), nil
		}
	}
	return namePrefix("instance", 2, args)
}

// serviceKeyIndex is the services' id index: namespace and service, each
// followed by a zero byte, as instanceKeyIndex. A lookup passes a namespace
// and a service.
type serviceKeyIndex struct{}

func (serviceKeyIndex) FromObject(raw any) (bool, []byte, error) {
	r, ok := raw.(*serviceRow)
	if !ok {
		return false, nil, fmt.Errorf("service index: object is %T", raw)
	}
	if r.Namespace == "" || r.Service == "" {
		return false, nil, nil
	}
	return true, nameKey(r.Namespace, r.Service), nil
}

func (serviceKeyIndex) FromArgs(args ...any) ([]byte, error) {
	ns, nsOK := argString(args, 0)
	svc, svcOK := argString(args, 1)
	if len(args) != 2 || !nsOK || !svcOK {
		return nil, fmt.Errorf("service index: want a namespace and a service, got %v", args)
	}
	return nameKey(ns, svc), nil
}

func (serviceKeyIndex) PrefixFromArgs(args ...any) ([]byte, error) {
	return namePrefix("service", 1, args)
}

// keyNames makes i's namespace, service and id point into one new array
// holding them as their index key (nameKey's bytes), which the index then
// keeps instead of a key of its own: an instance's names cost the heap
// its key and nothing more. i must be the caller's alone, not yet visible
// to readers, with no name empty. The array is never changed: the radix
// tree never changes a key it is given, and the index hands it out with
// no spare capacity, so an append copies it.
func keyNames(i *Instance) {
	ns, svc, id := len(i.Namespace), len(i.Service), len(i.ID)
	if ns == 0 || svc == 0 || id == 0 {
		i.keyed = false
		return
	}
	b := nameKey(i.Namespace, i.Service, i.ID)
	i.Namespace = unsafe.String(&b[0], ns)
	i.Service = unsafe.String(&b[ns+1], svc)
	i.ID = unsafe.String(&b[ns+1+svc+1], id)
	i.keyed = true
}

// indexKey returns i's index key: the array its names point into when
// keyNames made them so and they still do (a copy whose names were
// replaced, or whose id was shortened in place, fails the check and gets
// a new key), else a new key.
func (i *Instance) indexKey() []byte {
	if i.keyed {
		ns, svc, id := uintptr(unsafe.Pointer(unsafe.StringData(i.Namespace))), uintptr(unsafe.Pointer(unsafe.StringData(i.Service))),
			uintptr(unsafe.Pointer(unsafe.StringData(i.ID)))
		if svc == ns+uintptr(len(i.Namespace))+1 && id == svc+uintptr(len(i.Service))+1 {
			// The names lie in keyNames' array, so the byte after the id
			// is in it too: its zero when the id is whole.
			k := unsafe.Slice(unsafe.StringData(i.Namespace), len(i.Namespace)+len(i.Service)+len(i.ID)+3)
			if k[len(k)-1] == 0 {
				return k
			}
		}
	}
	return nameKey(i.Namespace, i.Service, i.ID)
}

// nameKey joins names, each followed by a zero byte.
func nameKey(names ...string) []byte {
	n := len(names)
	for _, s := range names {
		n += len(s)
	}
	b := make([]byte, 0, n)
	for _, s := range names {
		b = append(b, s...)
		b = append(b, 0)
	}
	return b
}

// namePrefix is the key prefix of 1 to most whole names.
func namePrefix(index string, most int, args []any) ([]byte, error) {
	if len(args) == 0 || len(args) > most {
		return nil, fmt.Errorf("%s index prefix: %d names, want 1 to %d", index, len(args), most)
	}
	names := make([]string, len(args))
	for i := range args {
		s, ok := argString(args, i)
		if !ok {
			return nil, fmt.Errorf("%s index prefix: argument %d is %T, want a string", index, i, args[i])
		}
		names[i] = s
	}
	return nameKey(names...), nil
}

func argString(args []any, i int) (string, bool) {
	if i >= len(args) {
		return "", false
	}
	s, ok := args[i].(string)
	return s, ok
}
