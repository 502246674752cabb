package iradix

import (
	"bytes"
	"math"
	"sort"
	"unsafe"
)

// WalkFn is used when walking the tree. Takes a
// key and value, returning if iteration should
// be terminated.
type WalkFn func(k []byte, v interface{}) bool

// leafNode is used to represent a value
type leafNode struct {
	mutateCh mutateCh
	// keyPtr is where the key starts; its length is the holding node's
	// leafKeyLen (read it through Node.leafKey), which keeps a leaf in
	// Go's 32-byte size class instead of 48.
	keyPtr *byte
	val    interface{}
}

// edge is used to represent an edge node
type edge struct {
	label byte
	node  *Node
}

// Node is an immutable node in the radix tree
type Node struct {
	// mutateCh is closed if this node is modified
	mutateCh mutateCh

	// leaf is used to store possible leaf
	leaf *leafNode

	// The prefix (the common prefix we ignore) and the edges (stored
	// in-order for iteration) are slices held as a pointer and a length,
	// read through prefix() and edges() and set through setPrefix and
	// setEdges: that keeps a node in Go's 48-byte size class instead of
	// 64, and a tree holds a node for every key. An edges array is
	// allocated to its exact length and replaced when an edge is added,
	// so no spare capacity is retained either.
	prefixPtr *byte
	edgesPtr  *edge
	prefixLen uint32
	edgesLen  uint32
	// leafKeyLen is the length of the leaf's key: see leafNode.
	leafKeyLen uint32
}

// leafKey returns the key of the node's leaf; nil when it has none.
func (n *Node) leafKey() []byte {
	if n.leaf == nil || n.leaf.keyPtr == nil {
		return nil
	}
	return unsafe.Slice(n.leaf.keyPtr, n.leafKeyLen)
}

// setLeaf gives the node a new leaf holding key and val. key must never
// be changed afterwards.
func (n *Node) setLeaf(key []byte, val interface{}) {
	if uint64(len(key)) > math.MaxUint32 {
		panic("iradix: key longer than 4 GiB")
	}
	n.leaf, n.leafKeyLen = &leafNode{keyPtr: unsafe.SliceData(key), val: val}, uint32(len(key))
}

// takeLeaf gives the node from's leaf (the same leaf, shared).
func (n *Node) takeLeaf(from *Node) { n.leaf, n.leafKeyLen = from.leaf, from.leafKeyLen }

// clearLeaf removes the node's leaf.
func (n *Node) clearLeaf() { n.leaf, n.leafKeyLen = nil, 0 }

// newNode returns a node without a leaf under prefix.
func newNode(prefix []byte) *Node {
	n := &Node{}
	n.setPrefix(prefix)
	return n
}

// newLeafNode returns a node under prefix holding a leaf of key and val.
func newLeafNode(key []byte, val interface{}, prefix []byte) *Node {
	n := newNode(prefix)
	n.setLeaf(key, val)
	return n
}

// prefix returns the node's prefix; its capacity is its length.
func (n *Node) prefix() []byte {
	if n.prefixPtr == nil {
		return nil
	}
	return unsafe.Slice(n.prefixPtr, n.prefixLen)
}

// setPrefix sets the node's prefix. p must never be changed afterwards.
func (n *Node) setPrefix(p []byte) {
	if uint64(len(p)) > math.MaxUint32 {
		panic("iradix: key longer than 4 GiB")
	}
	n.prefixPtr, n.prefixLen = unsafe.SliceData(p), uint32(len(p))
	if len(p) == 0 {
		n.prefixPtr = nil
	}
}

// edges returns the node's edges; its capacity is its length, so an append
// to it never writes into the node's array.
func (n *Node) edges() edges {
	if n.edgesPtr == nil {
		return nil
	}
	return unsafe.Slice(n.edgesPtr, n.edgesLen)
}

// setEdges sets the node's edges to e's elements (not its spare capacity).
func (n *Node) setEdges(e edges) {
	n.edgesPtr, n.edgesLen = unsafe.SliceData(e), uint32(len(e))
	if len(e) == 0 {
		n.edgesPtr = nil
	}
}

func (n *Node) isLeaf() bool {
	return n.leaf != nil
}

func (n *Node) addEdge(e edge) {
	es := n.edges()
	num := len(es)
	idx := sort.Search(num, func(i int) bool {
		return es[i].label >= e.label
	})
	grown := make(edges, num+1)
	copy(grown, es[:idx])
	grown[idx] = e
	copy(grown[idx+1:], es[idx:])
	n.setEdges(grown)
}

func (n *Node) replaceEdge(e edge) {
	es := n.edges()
	num := len(es)
	idx := sort.Search(num, func(i int) bool {
		return es[i].label >= e.label
	})
	if idx < num && es[idx].label == e.label {
		es[idx].node = e.node
		return
	}
	panic("replacing missing edge")
}

func (n *Node) getEdge(label byte) (int, *Node) {
	es := n.edges()
	num := len(es)
	idx := sort.Search(num, func(i int) bool {
		return es[i].label >= label
	})
	if idx < num && es[idx].label == label {
		return idx, es[idx].node
	}
	return -1, nil
}

func (n *Node) getLowerBoundEdge(label byte) (int, *Node) {
	es := n.edges()
	num := len(es)
	idx := sort.Search(num, func(i int) bool {
		return es[i].label >= label
	})
	// we want lower bound behavior so return even if it's not an exact match
	if idx < num {
		return idx, es[idx].node
	}
	return -1, nil
}

func (n *Node) delEdge(label byte) {
	es := n.edges()
	num := len(es)
	idx := sort.Search(num, func(i int) bool {
		return es[i].label >= label
	})
	if idx < num && es[idx].label == label {
		copy(es[idx:], es[idx+1:])
		es[num-1] = edge{}
		n.setEdges(es[:num-1])
	}
}

func (n *Node) GetWatch(k []byte) (<-chan struct{}, interface{}, bool) {
	watch, val, ok := n.get(k)
	return watch.watch(), val, ok
}

// get looks up k and returns, with its value, the mutation channel
// GetWatch would return, without making it.
func (n *Node) get(k []byte) (*mutateCh, interface{}, bool) {
	search := k
	watch := &n.mutateCh
	for {
		// Check for key exhaustion
		if len(search) == 0 {
			if n.isLeaf() {
				return &n.leaf.mutateCh, n.leaf.val, true
			}
			break
		}

		// Look for an edge
		_, n = n.getEdge(search[0])
		if n == nil {
			break
		}

		// Update to the finest granularity as the search makes progress
		watch = &n.mutateCh

		// Consume the search prefix
		if bytes.HasPrefix(search, n.prefix()) {
			search = search[len(n.prefix()):]
		} else {
			break
		}
	}
	return watch, nil, false
}

func (n *Node) Get(k []byte) (interface{}, bool) {
	_, val, ok := n.get(k)
	return val, ok
}

// LongestPrefix is like Get, but instead of an
// exact match, it will return the longest prefix match.
func (n *Node) LongestPrefix(k []byte) ([]byte, interface{}, bool) {
	var last *Node
	search := k
	for {
		// Look for a leaf node
		if n.isLeaf() {
			last = n
		}

		// Check for key exhaution
		if len(search) == 0 {
			break
		}

		// Look for an edge
		_, n = n.getEdge(search[0])
		if n == nil {
			break
		}

		// Consume the search prefix
		if bytes.HasPrefix(search, n.prefix()) {
			search = search[len(n.prefix()):]
		} else {
			break
		}
	}
	if last != nil {
		return last.leafKey(), last.leaf.val, true
	}
	return nil, nil, false
}

// Minimum is used to return the minimum value in the tree
func (n *Node) Minimum() ([]byte, interface{}, bool) {
	for {
		if n.isLeaf() {
			return n.leafKey(), n.leaf.val, true
		}
		if len(n.edges()) > 0 {
			n = n.edges()[0].node
		} else {
			break
		}
	}
	return nil, nil, false
}

// Maximum is used to return the maximum value in the tree
func (n *Node) Maximum() ([]byte, interface{}, bool) {
	for {
		if num := len(n.edges()); num > 0 {
			n = n.edges()[num-1].node
			continue
		}
		if n.isLeaf() {
			return n.leafKey(), n.leaf.val, true
		} else {
			break
		}
	}
	return nil, nil, false
}

// Iterator is used to return an iterator at
// the given node to walk the tree
func (n *Node) Iterator() *Iterator {
	return &Iterator{node: n}
}

// ReverseIterator is used to return an iterator at
// the given node to walk the tree backwards
func (n *Node) ReverseIterator() *ReverseIterator {
	return NewReverseIterator(n)
}

// rawIterator is used to return a raw iterator at the given node to walk the
// tree.
func (n *Node) rawIterator() *rawIterator {
	iter := &rawIterator{node: n}
	iter.Next()
	return iter
}

// Walk is used to walk the tree
func (n *Node) Walk(fn WalkFn) {
	recursiveWalk(n, fn)
}

// WalkBackwards is used to walk the tree in reverse order
func (n *Node) WalkBackwards(fn WalkFn) {
	reverseRecursiveWalk(n, fn)
}

// WalkPrefix is used to walk the tree under a prefix
func (n *Node) WalkPrefix(prefix []byte, fn WalkFn) {
	search := prefix
	for {
		// Check for key exhaution
		if len(search) == 0 {
			recursiveWalk(n, fn)
			return
		}

		// Look for an edge
		_, n = n.getEdge(search[0])
		if n == nil {
			break
		}

		// Consume the search prefix
		if bytes.HasPrefix(search, n.prefix()) {
			search = search[len(n.prefix()):]

		} else if bytes.HasPrefix(n.prefix(), search) {
			// Child may be under our search prefix
			recursiveWalk(n, fn)
			return
		} else {
			break
		}
	}
}

// WalkPath is used to walk the tree, but only visiting nodes
// from the root down to a given leaf. Where WalkPrefix walks
// all the entries *under* the given prefix, this walks the
// entries *above* the given prefix.
func (n *Node) WalkPath(path []byte, fn WalkFn) {
	search := path
	for {
		// Visit the leaf values if any
		if n.leaf != nil && fn(n.leafKey(), n.leaf.val) {
			return
		}

		// Check for key exhaution
		if len(search) == 0 {
			return
		}

		// Look for an edge
		_, n = n.getEdge(search[0])
		if n == nil {
			return
		}

		// Consume the search prefix
		if bytes.HasPrefix(search, n.prefix()) {
			search = search[len(n.prefix()):]
		} else {
			break
		}
	}
}

// recursiveWalk is used to do a pre-order walk of a node
// recursively. Returns true if the walk should be aborted
func recursiveWalk(n *Node, fn WalkFn) bool {
	// Visit the leaf values if any
	if n.leaf != nil && fn(n.leafKey(), n.leaf.val) {
		return true
	}

	// Recurse on the children
	for _, e := range n.edges() {
		if recursiveWalk(e.node, fn) {
			return true
		}
	}
	return false
}

// reverseRecursiveWalk is used to do a reverse pre-order
// walk of a node recursively. Returns true if the walk
// should be aborted
func reverseRecursiveWalk(n *Node, fn WalkFn) bool {
	// Visit the leaf values if any
	if n.leaf != nil && fn(n.leafKey(), n.leaf.val) {
		return true
	}

	// Recurse on the children in reverse order
	for i := len(n.edges()) - 1; i >= 0; i-- {
		e := n.edges()[i]
		if reverseRecursiveWalk(e.node, fn) {
			return true
		}
	}
	return false
}
