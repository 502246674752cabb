package store

import (
	"maps"
	"slices"
)

// sharedKeep is how many distinct tag lists, metadata maps and zones are
// remembered per service. A service's instances usually come from a few
// deployments (two during a rolling upgrade) over a few zones.
const sharedKeep = 4

// sharer lets stored instances of one service share the parts they have in
// common: the namespace and service names, the tag list, the metadata map
// and the zone. Instances are never modified once stored, so two that hold
// equal parts can hold the same ones; a service of ten thousand instances
// that differ only in id and address then keeps one copy of the rest
// instead of ten thousand. It is a cache and nothing more: an instance that
// misses it keeps its own parts, and a part it hands out from a write that
// was later aborted is as good as any equal one. Only the store's writer
// (under writeMu) uses it.
type sharer struct {
	services map[[2]string]*shared
}

// shared is what one service's instances share, most recently used first.
type shared struct {
	namespace, service string
	tags               [][]string
	metadata           []map[string]string
	zones              []string
}

func newSharer() *sharer { return &sharer{services: map[[2]string]*shared{}} }

// share replaces i's parts with equal ones already held by the service's
// stored instances, and remembers those it did not find. i must not be
// visible to readers yet. It reports whether it began remembering a
// service it did not know, which a writer that aborts then forgets.
func (s *sharer) share(i *Instance) (added bool) {
	k := [2]string{i.Namespace, i.Service}
	p := s.services[k]
	if p == nil {
		p = &shared{namespace: i.Namespace, service: i.Service}
		s.services[k] = p
		added = true
	}
	i.Namespace, i.Service = p.namespace, p.service
	if len(i.Tags) > 0 {
		i.Tags = recent(&p.tags, i.Tags, func(a, b []string) bool { return slices.Equal(a, b) })
	}
	if len(i.Metadata) > 0 {
		i.Metadata = recent(&p.metadata, i.Metadata, func(a, b map[string]string) bool { return maps.Equal(a, b) })
	}
	if i.Zone != "" {
		i.Zone = recent(&p.zones, i.Zone, func(a, b string) bool { return a == b })
	}
	return added
}

// forget drops what a service's instances shared, once it has none left.
func (s *sharer) forget(namespace, service string) {
	delete(s.services, [2]string{namespace, service})
}

// recent returns the element of *list equal to v, moved to the front, or
// v itself put at the front, keeping at most sharedKeep.
func recent[T any](list *[]T, v T, equal func(a, b T) bool) T {
	l := *list
	for n, c := range l {
		if equal(c, v) {
			copy(l[1:n+1], l[:n])
			l[0] = c
			return c
		}
	}
	if len(l) < sharedKeep {
		l = append(l, v)
	}
	copy(l[1:], l[:len(l)-1])
	l[0] = v
	*list = l
	return v
}
