package cluster

import (
	"context"
	"errors"

	"github.com/roster-registry/roster/store"
)

// followInstances feeds a leader duty the registry as it changes: sync is
// called with a full view first, then change with every later event in
// revision order, then done with the last revision handled.
//
// It reads the store's change history rather than re-reading on memdb watch
// sets: the history names exactly what changed (key, registration, prior
// state), so following it costs O(changes) where a watch set would make the
// duty rescan every instance on every write. When the history no longer
// holds what comes next (compacted under a burst, or replaced by a snapshot
// restore), sync is called again with a fresh view and must merge it.
func followInstances(ctx context.Context, s *store.Store,
	sync func(v *store.View, rev uint64),
	change func(rev uint64, ev *store.Event),
	done func(rev uint64),
) {
	v := s.View()
	rev := v.Revision()
	sync(v, rev)
	done(rev)
	for {
		revs, _, more, err := s.History().Since(rev, 4096)
		if errors.Is(err, store.ErrCompacted) {
			v = s.View()
			rev = v.Revision()
			sync(v, rev)
			done(rev)
			continue
		}
		if len(revs) > 0 {
			for _, r := range revs {
				for _, ev := range r.Events {
					change(r.Revision, ev)
				}
				rev = r.Revision
			}
			done(rev)
			continue
		}
		select {
		case <-more:
		case <-ctx.Done():
			return
		}
	}
}
