package rpc

import (
	"context"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/roster-registry/roster/acl"
	"github.com/roster-registry/roster/store"
)

// BenchmarkTokenPass is what one token change costs a node with 10,000
// open streams under 100 tokens, none of them gone: the pass over them.
func BenchmarkTokenPass(b *testing.B) {
	st := store.New(store.DefaultOptions())
	w := st.Begin(1)
	var sums [][]byte
	for i := range 100 {
		sum := acl.HashSecret(fmt.Sprintf("secret-%d", i))
		sums = append(sums, sum)
		if err := w.SetToken(&store.Token{AccessorID: fmt.Sprintf("acc-%d", i), SecretHex: hex.EncodeToString(sum),
			Rules: []string{"service::read"}}, false); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		b.Fatal(err)
	}
	v := st.View()
	var r tokenCalls
	r.calls = map[*tokenCall]struct{}{}
	for i := range 10_000 {
		sum := sums[i%len(sums)]
		_, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		r.calls[&tokenCall{sum: sum, token: v.TokenBySecret(sum), cancel: cancel}] = struct{}{}
	}
	b.ResetTimer()
	for range b.N {
		r.endGone(v)
	}
	if len(r.calls) != 10_000 {
		b.Fatalf("%d calls left", len(r.calls))
	}
}
