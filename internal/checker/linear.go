package checker

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// LinearizableOptions tune CheckLinearizable.
type LinearizableOptions struct {
	// Timeout bounds the whole check; zero means 5 minutes. Running out is
	// VerdictUnknown, never a pass.
	Timeout time.Duration
	// VisualizationPath is where porcupine's HTML goes on a violation;
	// empty writes none.
	VisualizationPath string

	// check replaces porcupine.CheckOperationsTimeout in tests.
	check func(porcupine.Model, []porcupine.Operation, time.Duration) porcupine.CheckResult
}

// defaultLinearizableTimeout bounds L when the caller does not.
const defaultLinearizableTimeout = 5 * time.Minute

// keyOpKind is what one porcupine operation does to one key.
type keyOpKind uint8

const (
	keyPut keyOpKind = iota
	keyDelete
	keyRead
)

// keyInput is a porcupine operation's input: one call's effect on one key.
// Client is the real client (-1 for the initial state); porcupine's
// ClientId may differ, as unknown-outcome writes get rows of their own.
type keyInput struct {
	Kind   keyOpKind
	Key    string
	Value  string
	Leased bool
	Client int
}

// keyOutput is a porcupine operation's output. For a read, Present and
// Value are what was observed; Unknown marks a write of unknown outcome.
type keyOutput struct {
	Unknown bool
	Present bool
	Value   string
	// NotFound marks a deregister that failed NotFound (a read of absent).
	NotFound bool
	// Seen marks an unknown-outcome register whose value was later seen,
	// so it applied before then.
	Seen bool
}

// keyState is the model's state of one instance key.
type keyState struct {
	Present bool
	Value   string
	// Leased: the registration holds a TTL lease, so the server may expire
	// it at any moment; X judges when.
	Leased bool
}

// keyModel is the per-key model: a register that an unknown-outcome write
// may or may not have changed, and that a lease may empty at any step.
var keyModel = porcupine.NondeterministicModel{
	Init: func() []any { return []any{keyState{}} },
	Step: stepKey,
	Hash: func(s any) uint64 {
		st := s.(keyState)
		var h uint64 = 14695981039346656037
		for i := 0; i < len(st.Value); i++ {
			h = (h ^ uint64(st.Value[i])) * 1099511628211
		}
		if st.Present {
			h ^= 1 << 62
		}
		if st.Leased {
			h ^= 1 << 61
		}
		return h
	},
	Partition:         partitionByKey,
	DescribeOperation: describeKeyOp,
	DescribeState: func(s any) string {
		st := s.(keyState)
		switch {
		case !st.Present:
			return "absent"
		case st.Leased:
			return st.Value + " (leased)"
		default:
			return st.Value
		}
	},
}

// stepKey returns every state the key may be in after one operation.
func stepKey(s, in, out any) []any {
	st, i, o := s.(keyState), in.(keyInput), out.(keyOutput)
	starts := []keyState{st}
	if st.Present && st.Leased {
		starts = append(starts, keyState{})
	}
	var next []any
	for _, s := range starts {
		switch i.Kind {
		case keyPut:
			next = append(next, keyState{Present: true, Value: i.Value, Leased: i.Leased})
			if o.Unknown {
				next = append(next, s)
			}
		case keyDelete:
			switch {
			case o.Unknown:
				next = append(next, keyState{}, s)
			case s.Present:
				next = append(next, keyState{})
			}
		case keyRead:
			if s.Present == o.Present && (!s.Present || s.Value == o.Value) {
				next = append(next, s)
			}
		}
	}
	return next
}

func describeKeyOp(in, out any) string {
	i, o := in.(keyInput), out.(keyOutput)
	switch {
	case i.Kind == keyPut && o.Unknown:
		return fmt.Sprintf("register(%s) -> unknown", i.Value)
	case i.Kind == keyPut && o.Seen:
		return fmt.Sprintf("register(%s) -> unknown, seen applied", i.Value)
	case i.Kind == keyPut:
		return fmt.Sprintf("register(%s) -> ok", i.Value)
	case i.Kind == keyDelete && o.Unknown:
		return "deregister -> unknown"
	case i.Kind == keyDelete:
		return "deregister -> ok"
	case o.NotFound:
		return "deregister -> NotFound"
	case o.Present:
		return fmt.Sprintf("get -> %s", o.Value)
	default:
		return "get -> absent"
	}
}

func partitionByKey(ops []porcupine.Operation) [][]porcupine.Operation {
	idx := map[string]int{}
	var parts [][]porcupine.Operation
	for _, op := range ops {
		k := op.Input.(keyInput).Key
		i, ok := idx[k]
		if !ok {
			i = len(parts)
			idx[k] = i
			parts = append(parts, nil)
		}
		parts[i] = append(parts[i], op)
	}
	return parts
}

// keySpace returns, per "namespace/service", every key a get on it
// observes: the declared key space plus every key written or seen.
func keySpace(h *History) map[string][]string {
	set := map[string]map[string]bool{}
	add := func(key string) {
		svc := serviceOf(key)
		if set[svc] == nil {
			set[svc] = map[string]bool{}
		}
		set[svc][key] = true
	}
	for _, k := range h.KeySpace {
		add(k)
	}
	for k := range h.Initial {
		add(k)
	}
	for _, op := range h.Ops {
		switch op.Kind {
		case KindRegister, KindDeregister:
			add(op.Key)
		case KindGet:
			for id := range op.Observed {
				add(op.Service + "/" + id)
			}
		}
	}
	out := map[string][]string{}
	for svc, keys := range set {
		for k := range keys {
			out[svc] = append(out[svc], k)
		}
		sort.Strings(out[svc])
	}
	return out
}

// linearOps turns the history into porcupine operations grouped by key.
// Unknown-outcome writes return at the end of the history, each under a
// client id of its own so the visualization stays readable.
func linearOps(h *History) (byKey map[string][]porcupine.Operation, total, unknown int) {
	end := h.end()
	start := end
	nextClient := 0
	for _, op := range h.Ops {
		start = min(start, op.Call)
		nextClient = max(nextClient, op.ClientID+1)
	}
	byKey = map[string][]porcupine.Operation{}
	add := func(client, row int, call, ret int64, in keyInput, out keyOutput) {
		in.Client = client
		byKey[in.Key] = append(byKey[in.Key], porcupine.Operation{
			ClientId: row, Input: in, Call: call, Output: out, Return: ret,
		})
		total++
	}
	if len(h.Initial) > 0 {
		c := nextClient
		nextClient++
		for k, v := range h.Initial {
			add(-1, c, start-2, start-1, keyInput{Kind: keyPut, Key: k, Value: v}, keyOutput{})
		}
	}
	space := keySpace(h)
	seen := firstSeen(h)
	cov := coverage(h)
	for _, op := range h.Ops {
		switch {
		case op.Kind == KindRegister || op.Kind == KindDeregister:
			in := keyInput{Kind: keyPut, Key: op.Key, Value: op.Value, Leased: op.TTL > 0}
			if op.Kind == KindDeregister {
				in = keyInput{Kind: keyDelete, Key: op.Key}
			}
			switch op.Outcome {
			case OutcomeOK:
				add(op.ClientID, op.ClientID, op.Call, op.Return, in, keyOutput{})
			case OutcomeUnknown:
				// A register seen applied took effect before it was seen:
				// close its interval there, which keeps porcupine's search
				// small.
				t, ok := seen[[2]string{op.Key, op.Value}]
				switch {
				case ok && op.Kind == KindRegister:
					add(op.ClientID, nextClient, op.Call, max(t, op.Call), in, keyOutput{Seen: true})
				case op.Kind == KindRegister && neverApplied(cov, op):
					// A watcher saw every change to the key after the call
					// and never this value: it did not take effect.
					continue
				default:
					add(op.ClientID, nextClient, op.Call, end, in, keyOutput{Unknown: true})
				}
				nextClient++
				unknown++
			case OutcomeFail:
				if op.Kind == KindDeregister && op.Code == CodeNotFound {
					add(op.ClientID, op.ClientID, op.Call, op.Return,
						keyInput{Kind: keyRead, Key: op.Key}, keyOutput{NotFound: true})
				}
			}
		case op.Kind == KindGet && op.Outcome == OutcomeOK && !op.Stale:
			for _, key := range space[op.Service] {
				v, ok := op.Observed[key[len(op.Service)+1:]]
				add(op.ClientID, op.ClientID, op.Call, op.Return,
					keyInput{Kind: keyRead, Key: key}, keyOutput{Present: ok, Value: v})
			}
		}
	}
	return byKey, total, unknown
}

// CheckLinearizable is checker L: porcupine over the history partitioned
// per instance key. A get observes every key of its service's key space;
// a deregister failing NotFound observes absence; failed writes and failed
// or stale reads are dropped; an unknown-outcome write stays open to the
// end of the history and may or may not take effect, unless its value was
// seen later, which proves it applied by then. A violation writes
// porcupine's visualization of the failing keys to opts.VisualizationPath.
func CheckLinearizable(h *History, opts LinearizableOptions) Result {
	res := Result{Checker: "L", Verdict: VerdictOK}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultLinearizableTimeout
	}
	check := opts.check
	if check == nil {
		check = porcupine.CheckOperationsTimeout
	}
	for i, op := range h.Ops {
		if op.Outcome == OutcomeOK && op.Return < op.Call {
			res.addf("op %d (client %d %s %s%s): returns at %d before its call at %d",
				i, op.ClientID, op.Kind, op.Key, op.Service, op.Return, op.Call)
		}
	}
	if !res.OK() {
		res.Verdict = VerdictUnknown
		res.Short = "L unknown (malformed history)"
		res.Summary = "cannot judge: the history has malformed ops"
		return res
	}

	byKey, total, unknown := linearOps(h)
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	model := keyModel.ToModel()
	deadline := time.Now().Add(opts.Timeout)
	results := make([]porcupine.CheckResult, len(keys))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, k := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			left := time.Until(deadline)
			if left <= 0 {
				results[i] = porcupine.Unknown
				return
			}
			results[i] = check(model, byKey[k], left)
		}()
	}
	wg.Wait()

	var illegal, undecided []string
	for i, k := range keys {
		switch results[i] {
		case porcupine.Illegal:
			illegal = append(illegal, k)
		case porcupine.Unknown:
			undecided = append(undecided, k)
		}
	}
	scope := fmt.Sprintf("%d ops over %d keys, %d unknown-outcome writes", total, len(keys), unknown)
	switch {
	case len(illegal) > 0:
		res.Verdict = VerdictViolation
		res.Short = fmt.Sprintf("L violation keys=%d", len(illegal))
		res.Summary = fmt.Sprintf("not linearizable on %d of %d keys: %s (%s)",
			len(illegal), len(keys), strings.Join(firstN(illegal, 5), ", "), scope)
		start := h.start()
		for _, k := range illegal[:min(len(illegal), 5)] {
			describeKeyHistory(&res, k, byKey[k], start)
		}
		if opts.VisualizationPath != "" {
			var ops []porcupine.Operation
			for _, k := range illegal {
				ops = append(ops, byKey[k]...)
			}
			_, info := porcupine.CheckOperationsVerbose(model, ops, opts.Timeout)
			if err := porcupine.VisualizePath(model, info, opts.VisualizationPath); err != nil {
				res.Details = append(res.Details, fmt.Sprintf("visualization not written: %v", err))
			} else {
				res.Visualization = opts.VisualizationPath
			}
		}
	case len(undecided) > 0:
		res.Verdict = VerdictUnknown
		res.Short = fmt.Sprintf("L unknown (timeout %s) keys=%d", opts.Timeout, len(undecided))
		res.Summary = fmt.Sprintf("porcupine did not decide %d of %d keys within %s: %s (%s); not a pass",
			len(undecided), len(keys), opts.Timeout, strings.Join(firstN(undecided, 5), ", "), scope)
		for _, k := range undecided {
			res.Details = append(res.Details, fmt.Sprintf("key %s: undecided over %d ops", k, len(byKey[k])))
		}
	default:
		res.Short = fmt.Sprintf("L ok ops=%d", total)
		res.Summary = "linearizable: " + scope
	}
	return res
}

// describeKeyHistory adds one key's operations, in call order, to a
// violation's details: the evidence a person needs to see the anomaly.
func describeKeyHistory(res *Result, key string, ops []porcupine.Operation, start int64) {
	sorted := append([]porcupine.Operation(nil), ops...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Call < sorted[j].Call })
	const maxOps = 40
	res.addf("key %s: no linearization of its %d ops (times since the first call):", key, len(ops))
	for i, op := range sorted {
		if i == maxOps {
			res.Details = append(res.Details, fmt.Sprintf("  ... %d more ops", len(sorted)-maxOps))
			break
		}
		ret := time.Duration(op.Return - start).String()
		if op.Output.(keyOutput).Unknown {
			ret = "open"
		}
		res.Details = append(res.Details, fmt.Sprintf("  client %d [%s, %s] %s",
			op.Input.(keyInput).Client, time.Duration(op.Call-start), ret, describeKeyOp(op.Input, op.Output)))
	}
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}
