package store

import (
	"maps"
	"slices"
)

// sharedKeep is how many distinct tag lists, metadata maps and zones are
// remembered per service, and labelsKeep how many distinct combinations
// of them. A service's instances usually come from a few deployments (two
// during a rolling upgrade) over a few zones.
const (
	sharedKeep = 4
	labelsKeep = 8
)

// sharer lets stored instances of one service share the parts they have in
// common: the labels (tag list, metadata map and zone), each part and the
// labels as a whole. (Their namespace and service names are not shared:
// each instance's are in its index key, which it must hold anyway; see
// keyNames.) Instances
// are never modified once stored, so two that hold equal parts can hold
// the same ones; a service of ten thousand instances that differ only in
// id and address then keeps one copy of the rest instead of ten thousand.
// It is a cache and nothing more: an instance that misses it keeps its own
// parts, and a part it hands out from a write that was later aborted is as
// good as any equal one. Only the store's writer (under writeMu) uses it.
type sharer struct {
	services map[[2]string]*shared
}

// shared is what one service's instances share, most recently used first.
type shared struct {
	labels   []*Labels
	tags     [][]string
	metadata []map[string]string
	zones    []string
}

func newSharer() *sharer { return &sharer{services: map[[2]string]*shared{}} }

// share replaces i's labels with equal ones already held by the service's
// stored instances, and remembers those it did not find, and puts i's names
// in its index key (keyNames). i and
// its labels must be the caller's alone, not yet visible to readers (a
// registration's are its own copy or were decoded for it). It reports whether it began remembering a service it did not know, which
// a writer that aborts then forgets.
func (s *sharer) share(i *Instance) (added bool) {
	k := [2]string{i.Namespace, i.Service}
	p := s.services[k]
	if p == nil {
		p = &shared{}
		s.services[k] = p
		added = true
	}
	keyNames(i)
	l := i.Labels
	if l == nil {
		return added
	}
	if len(l.Tags) == 0 && len(l.Metadata) == 0 && l.Zone == "" {
		i.Labels = nil
		return added
	}
	for n, c := range p.labels {
		if c.equal(l) {
			toFront(p.labels, n)
			i.Labels = c
			return added
		}
	}
	// New labels: made of the parts the service's instances already hold.
	if len(l.Tags) > 0 {
		l.Tags = recent(&p.tags, l.Tags, func(a, b []string) bool { return slices.Equal(a, b) }, sharedKeep)
	} else {
		l.Tags = nil
	}
	if len(l.Metadata) > 0 {
		l.Metadata = recent(&p.metadata, l.Metadata, func(a, b map[string]string) bool { return maps.Equal(a, b) }, sharedKeep)
	} else {
		l.Metadata = nil
	}
	if l.Zone != "" {
		l.Zone = recent(&p.zones, l.Zone, func(a, b string) bool { return a == b }, sharedKeep)
	}
	push(&p.labels, l, labelsKeep)
	return added
}

// toFront moves l[n] to the front of l.
func toFront[T any](l []T, n int) {
	c := l[n]
	copy(l[1:n+1], l[:n])
	l[0] = c
}

// forget drops what a service's instances shared, once it has none left.
func (s *sharer) forget(namespace, service string) {
	delete(s.services, [2]string{namespace, service})
}

// recent returns the element of *list equal to v, moved to the front, or
// v itself put at the front, keeping at most keep.
func recent[T any](list *[]T, v T, equal func(a, b T) bool, keep int) T {
	l := *list
	for n, c := range l {
		if equal(c, v) {
			toFront(l, n)
			return c
		}
	}
	push(list, v, keep)
	return v
}

// push puts v at the front of *list, keeping at most keep.
func push[T any](list *[]T, v T, keep int) {
	l := *list
	if len(l) < keep {
		l = append(l, v)
	}
	copy(l[1:], l[:len(l)-1])
	l[0] = v
	*list = l
}
