package store

import "github.com/hashicorp/go-memdb"

const (
	tableInstances = "instances"
	tableServices  = "services"
	tableMembers   = "members"
	tableMeta      = "meta"
	tableSettings  = "settings"
	tableRequests  = "requests"
	tableTokens    = "acl_tokens"
	tableACL       = "acl_state"

	indexID        = "id"
	indexNamespace = "namespace"
	indexIndex     = "index"
	indexSecret    = "secret"

	// indexIDPrefix looks up a prefix of the id index.
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

// metaRow holds the registry revision and the applied index inside the
// database, so a View's revision and applied index are exactly the state it
// shows: both change in the same commit as the state.
type metaRow struct {
	Key      string
	Revision uint64
	// Applied is the Raft index of the last entry written, whether or not
	// it changed anything.
	Applied uint64
	// Extinct is the last revision at which a service lost its last
	// instance: the revision an absent service reports, so a blocking query
	// on it is not woken by changes to other services.
	Extinct uint64
}

const metaKey = "revision"

func schema() *memdb.DBSchema {
	nsSvcID := &memdb.CompoundIndex{Indexes: []memdb.Indexer{
		&memdb.StringFieldIndex{Field: "Namespace"},
		&memdb.StringFieldIndex{Field: "Service"},
		&memdb.StringFieldIndex{Field: "ID"},
	}}
	nsSvc := &memdb.CompoundIndex{Indexes: []memdb.Indexer{
		&memdb.StringFieldIndex{Field: "Namespace"},
		&memdb.StringFieldIndex{Field: "Service"},
	}}
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		// Instances have one index: every write of an index copies its path
		// to the instance, and a service's or a namespace's instances are
		// a prefix of this one (see serviceInstances).
		tableInstances: {
			Name: tableInstances,
			Indexes: map[string]*memdb.IndexSchema{
				indexID: {Name: indexID, Unique: true, Indexer: nsSvcID},
			},
		},
		tableServices: {
			Name: tableServices,
			Indexes: map[string]*memdb.IndexSchema{
				indexID:        {Name: indexID, Unique: true, Indexer: nsSvc},
				indexNamespace: {Name: indexNamespace, Indexer: &memdb.StringFieldIndex{Field: "Namespace"}},
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
		tableRequests: {
			Name: tableRequests,
			Indexes: map[string]*memdb.IndexSchema{
				indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
				// Oldest first: pruning walks this index.
				indexIndex: {Name: indexIndex, Indexer: &memdb.UintFieldIndex{Field: "Index"}},
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
		tableMeta: {
			Name: tableMeta,
			Indexes: map[string]*memdb.IndexSchema{
				indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
			},
		},
	}}
}
