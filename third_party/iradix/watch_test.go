package iradix

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

func isOpen(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// TestChannelsAreMadeOnlyForWatchers: inserting and reading without a
// watch leaves every node and leaf without a channel.
func TestChannelsAreMadeOnlyForWatchers(t *testing.T) {
	r := New()
	for _, k := range []string{"a/1", "a/2", "a/10", "b/1"} {
		r, _, _ = r.Insert([]byte(k), k)
	}
	if _, ok := r.Get([]byte("a/10")); !ok {
		t.Fatal("a/10 not found")
	}
	it := r.Root().Iterator()
	it.SeekPrefix([]byte("a/"))
	for iter := r.root.rawIterator(); iter.Front() != nil; iter.Next() {
		n := iter.Front()
		if n.mutateCh.p.Load() != nil || (n.leaf != nil && n.leaf.mutateCh.p.Load() != nil) {
			t.Fatalf("node %q has a channel nobody asked for", iter.Path())
		}
	}
}

// TestAWatchAskedForAfterTheChangeFiresAtOnce: a reader of the tree before
// a change that asks for a watch only after the change was committed is
// told at once, although no channel existed when the change was made.
func TestAWatchAskedForAfterTheChangeFiresAtOnce(t *testing.T) {
	old := New()
	old, _, _ = old.Insert([]byte("a/1"), 1)
	old, _, _ = old.Insert([]byte("a/2"), 2)

	txn := old.Txn()
	txn.TrackMutate(true)
	txn.Insert([]byte("a/1"), 10)
	txn.Commit()

	w, v, _ := old.Root().GetWatch([]byte("a/1"))
	if v != 1 {
		t.Fatalf("the old tree reads %v", v)
	}
	if isOpen(w) {
		t.Fatal("the watch of a changed leaf, asked for after the change, is open")
	}
	if w2, _, _ := old.Root().GetWatch([]byte("a/2")); !isOpen(w2) {
		t.Fatal("the watch of an unchanged leaf is closed")
	}
}

// TestAWatchAskedForBeforeTheChangeFiresOnCommitOnly: a watch made before
// a change stays open until the transaction notifies, and a transaction
// that is dropped without committing fires nothing.
func TestAWatchAskedForBeforeTheChangeFiresOnCommitOnly(t *testing.T) {
	r := New()
	r, _, _ = r.Insert([]byte("a/1"), 1)
	w, _, _ := r.Root().GetWatch([]byte("a/1"))
	missing, _, _ := r.Root().GetWatch([]byte("a/9"))

	dropped := r.Txn()
	dropped.TrackMutate(true)
	dropped.Insert([]byte("a/1"), 2)
	dropped.Delete([]byte("a/1"))
	dropped.Insert([]byte("a/9"), 9)
	if !isOpen(w) || !isOpen(missing) {
		t.Fatal("a transaction fired watches before it committed")
	}
	dropped.CommitOnly()
	if !isOpen(w) || !isOpen(missing) {
		t.Fatal("a transaction fired watches without notifying")
	}
	if w2, _, _ := r.Root().GetWatch([]byte("a/1")); w2 != w || !isOpen(w2) {
		t.Fatal("an uncommitted change replaced or closed the leaf's channel")
	}

	txn := r.Txn()
	txn.TrackMutate(true)
	txn.Insert([]byte("a/1"), 3)
	txn.Insert([]byte("a/9"), 9)
	txn.Commit()
	if isOpen(w) {
		t.Fatal("the changed leaf's watch is still open after the commit")
	}
	if isOpen(missing) {
		t.Fatal("the watch of a key that was then added is still open after the commit")
	}
}

// TestTheSlowNotifyFiresUnmadeChannels: a transaction too large to track
// its nodes one by one compares the trees instead, and marks the nodes it
// finds changed as fired whether or not anyone watched them.
func TestTheSlowNotifyFiresUnmadeChannels(t *testing.T) {
	r := New()
	r, _, _ = r.Insert([]byte("k/0"), 0)
	old := r
	txn := r.Txn()
	txn.TrackMutate(true)
	for i := 0; i < defaultModifiedCache+10; i++ {
		txn.Insert([]byte("k/0"), i)
		txn.Insert([]byte("k/"+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676%26))), i)
	}
	if !txn.trackOverflow {
		t.Fatal("the transaction did not overflow its tracking")
	}
	txn.Commit()
	if w, _, _ := old.Root().GetWatch([]byte("k/0")); isOpen(w) {
		t.Fatal("after a slow notify, the watch of a changed leaf is open")
	}
}

// TestWatchersRacingACommitAreAllTold: readers asking for a leaf's watch
// on a tree while a transaction replaces that leaf all get a channel that
// is closed once the transaction has notified, whichever won the race to
// make it.
func TestWatchersRacingACommitAreAllTold(t *testing.T) {
	for round := 0; round < 200; round++ {
		r := New()
		r, _, _ = r.Insert([]byte("a/1"), 1)
		start := make(chan struct{})
		got := make(chan (<-chan struct{}), 4)
		for range 4 {
			go func() {
				<-start
				w, _, _ := r.Root().GetWatch([]byte("a/1"))
				got <- w
			}()
		}
		txn := r.Txn()
		txn.TrackMutate(true)
		txn.Insert([]byte("a/1"), 2)
		close(start)
		txn.Commit()
		for range 4 {
			if w := <-got; isOpen(w) {
				t.Fatalf("round %d: a watch of the replaced leaf is open after the commit", round)
			}
		}
	}
}

// TestLeafWatchesFireExactlyForChangedKeys drives random transactions
// (inserts, deletes, prefix deletes, some large enough to overflow the
// tracking and take the slow notify) and checks every key's leaf watch,
// asked of the tree before the transaction both before and after it
// commits: it is closed after the commit exactly when the transaction
// wrote or removed that key, as with channels made eagerly.
func TestLeafWatchesFireExactlyForChangedKeys(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	keys := make([]string, 300)
	for i := range keys {
		keys[i] = fmt.Sprintf("k/%d/%d", i%7, i)
	}
	r := New()
	for round := 0; round < 60; round++ {
		old := r
		early := map[string]<-chan struct{}{}
		for _, k := range keys {
			if rng.Intn(3) == 0 {
				if w, _, ok := old.Root().GetWatch([]byte(k)); ok {
					early[k] = w
				}
			}
		}
		txn := old.Txn()
		txn.TrackMutate(true)
		touched := map[string]bool{}
		ops := 1 + rng.Intn(40)
		if round%10 == 9 {
			ops = defaultModifiedCache + 100 // overflow: the slow notify
		}
		for n := 0; n < ops; n++ {
			k := keys[rng.Intn(len(keys))]
			switch x := rng.Intn(20); {
			case x < 12:
				txn.Insert([]byte(k), n)
				touched[k] = true
			case x < 19:
				if _, ok := txn.Delete([]byte(k)); ok {
					touched[k] = true
				}
			default:
				prefix := fmt.Sprintf("k/%d/", rng.Intn(7))
				for _, kk := range keys {
					if _, ok := txn.Get([]byte(kk)); ok && strings.HasPrefix(kk, prefix) {
						touched[kk] = true
					}
				}
				txn.DeletePrefix([]byte(prefix))
			}
		}
		r = txn.Commit()
		for _, k := range keys {
			_, _, existed := old.Root().GetWatch([]byte(k))
			if !existed {
				continue
			}
			late, _, _ := old.Root().GetWatch([]byte(k))
			for what, w := range map[string]<-chan struct{}{"early": early[k], "late": late} {
				if w == nil {
					continue
				}
				if touched[k] == isOpen(w) {
					t.Fatalf("round %d (%d ops): key %s touched=%v, but its %s watch is open=%v",
						round, ops, k, touched[k], what, isOpen(w))
				}
			}
		}
	}
}

// TestDeletePrefixOfANodeThisTransactionChanged: deleting a prefix whose
// node the same transaction already wrote under notifies every key it
// removes and counts them (upstream's DeletePrefix emptied the node before
// walking it, so it did neither).
func TestDeletePrefixOfANodeThisTransactionChanged(t *testing.T) {
	r := New()
	r, _, _ = r.Insert([]byte("foo/a"), 1)
	r, _, _ = r.Insert([]byte("foo/b"), 2)
	r, _, _ = r.Insert([]byte("zip"), 3)
	watchB, _, _ := r.Root().GetWatch([]byte("foo/b"))
	old := r
	txn := r.Txn()
	txn.TrackMutate(true)
	txn.Insert([]byte("foo/c"), 4) // the "foo/" node is now writable
	if !txn.DeletePrefix([]byte("foo/")) {
		t.Fatal("DeletePrefix deleted nothing")
	}
	r = txn.Commit()
	if r.Len() != 1 {
		t.Fatalf("Len() = %d after deleting foo/*, want 1", r.Len())
	}
	if isOpen(watchB) {
		t.Fatal("the watch of foo/b, deleted, is open")
	}
	if late, _, _ := old.Root().GetWatch([]byte("foo/a")); isOpen(late) {
		t.Fatal("a watch of foo/a asked of the older tree after its deletion is open")
	}
	if zip, _, _ := old.Root().GetWatch([]byte("zip")); !isOpen(zip) {
		t.Fatal("the watch of zip, untouched, is closed")
	}
}
