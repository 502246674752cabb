package store

import (
	"testing"

	"github.com/hashicorp/go-memdb"
)

// fired reports whether ws has fired, without waiting: commits close
// watch channels before they return.
func fired(ws memdb.WatchSet) bool {
	for ch := range ws {
		select {
		case <-ch:
			return true
		default:
		}
	}
	return false
}

func tokenWatch(t *testing.T, s *Store) memdb.WatchSet {
	t.Helper()
	ws := memdb.NewWatchSet()
	if err := s.View().WatchTokens(ws); err != nil {
		t.Fatal(err)
	}
	return ws
}

// TestWatchTokensFiresOnTokenChangesOnly: the token table's watch fires
// when a token is created or deleted, and not for registry writes, which
// are every other commit.
func TestWatchTokensFiresOnTokenChangesOnly(t *testing.T) {
	s := New(DefaultOptions())
	ws := tokenWatch(t, s)
	register(t, s, 1, inst("web", "a", 80))
	if fired(ws) {
		t.Fatal("the token watch fired for a registration")
	}

	w := s.Begin(2)
	if err := w.SetToken(&Token{AccessorID: "acc", SecretHex: "00ff"}, false); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if !fired(ws) {
		t.Fatal("the token watch did not fire when a token was created")
	}

	ws = tokenWatch(t, s)
	register(t, s, 3, inst("web", "b", 80))
	if fired(ws) {
		t.Fatal("the token watch fired for a registration")
	}
	w = s.Begin(4)
	if err := w.DeleteToken("acc"); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if !fired(ws) {
		t.Fatal("the token watch did not fire when a token was deleted")
	}
}
