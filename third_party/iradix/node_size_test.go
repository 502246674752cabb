package iradix

import (
	"fmt"
	"math/rand"
	"sort"
	"testing"
	"unsafe"
)

// TestNodeSize: a tree holds a node and a leaf for every key, so a node
// stays within Go's 48-byte size class and a leaf within the 32-byte one.
func TestNodeSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are pinned for 64-bit platforms")
	}
	if got := unsafe.Sizeof(Node{}); got > 48 {
		t.Fatalf("Node is %d bytes, want at most 48", got)
	}
	if got := unsafe.Sizeof(leafNode{}); got > 32 {
		t.Fatalf("leafNode is %d bytes, want at most 32", got)
	}
}

// TestEdgesAreExactAndNeverShared: every node's edges array holds exactly
// its edges, sorted, and an older tree keeps its edges and prefixes while
// later transactions add and remove keys under the same nodes.
func TestEdgesAreExactAndNeverShared(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	key := func() string { return fmt.Sprintf("ns\x00svc\x00%x\x00", rng.Intn(5000)) }
	var trees []*Tree
	var contents []map[string]bool
	r := New()
	have := map[string]bool{}
	for round := 0; round < 40; round++ {
		txn := r.Txn()
		for op := 0; op < 64; op++ {
			k := key()
			if rng.Intn(3) == 0 {
				txn.Delete([]byte(k))
				delete(have, k)
			} else {
				txn.Insert([]byte(k), k)
				have[k] = true
			}
		}
		r = txn.Commit()
		snap := map[string]bool{}
		for k := range have {
			snap[k] = true
		}
		trees, contents = append(trees, r), append(contents, snap)
	}
	for n, tr := range trees {
		var got []string
		tr.Root().Walk(func(k []byte, v interface{}) bool {
			if string(k) != v.(string) {
				t.Fatalf("tree %d: key %q holds %q", n, k, v)
			}
			got = append(got, string(k))
			return false
		})
		var want []string
		for k := range contents[n] {
			want = append(want, k)
		}
		sort.Strings(want)
		if fmt.Sprint(got) != fmt.Sprint(want) || tr.Len() != len(want) {
			t.Fatalf("tree %d holds %d keys (Len %d), want %d", n, len(got), tr.Len(), len(want))
		}
		var check func(nd *Node)
		check = func(nd *Node) {
			es := nd.edges()
			if cap(es) != len(es) || len(es) != int(nd.edgesLen) {
				t.Fatalf("tree %d: edges len %d cap %d", n, len(es), cap(es))
			}
			for i, e := range es {
				if i > 0 && es[i-1].label >= e.label {
					t.Fatalf("tree %d: edges out of order", n)
				}
				if p := e.node.prefix(); len(p) == 0 || p[0] != e.label {
					t.Fatalf("tree %d: edge %q leads to prefix %q", n, e.label, p)
				}
				check(e.node)
			}
		}
		check(tr.Root())
	}
}

// TestALeafNodeKeepsOnlyItsOwnKey: the prefix of a node holding a leaf is
// read from that leaf's key, also after the key was inserted again with new
// bytes, so a replaced key's bytes are not kept alive by the node.
func TestALeafNodeKeepsOnlyItsOwnKey(t *testing.T) {
	r := New()
	for round := 0; round < 3; round++ {
		txn := r.Txn()
		for k := 0; k < 500; k++ {
			txn.Insert([]byte(fmt.Sprintf("ns\x00svc\x00id-%d\x00", k)), round)
		}
		r = txn.Commit()
	}
	var check func(nd *Node)
	leaves := 0
	check = func(nd *Node) {
		if key, p := nd.leafKey(), nd.prefix(); nd.leaf != nil && len(p) > 0 {
			leaves++
			if unsafe.SliceData(p) != unsafe.SliceData(key[len(key)-len(p):]) {
				t.Fatalf("node of %q: prefix %q is not read from its key", key, p)
			}
		}
		for _, e := range nd.edges() {
			check(e.node)
		}
	}
	check(r.Root())
	if leaves != 500 {
		t.Fatalf("%d leaves, want 500", leaves)
	}
}
