// Package fsm is Roster's raft.FSM: it decodes each committed log entry and
// applies it to the store as one write at the entry's index.
//
// Apply is a pure function of (state, index, payload): no clock, no
// randomness, no map-order dependence. Everything non-deterministic (time,
// health results, the limits the leader checked) is stamped into the command
// by the leader. Domain failures (an unknown instance, a command about an
// older registration, an instance limit) come back as Result.Err. An entry
// holding a command that does not decode is rejected whole with
// ErrMalformedCommand and changes nothing but the applied index: every node
// decodes the same bytes alike. An unknown command type without
// SkippableFlag panics (UnknownCommandError), because this node cannot apply
// what newer peers do and going on would let its state diverge.
package fsm

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
	"github.com/roster-registry/roster/store"
)

// Result is the outcome of one command.
type Result struct {
	// Revision is the instance's revision after the command.
	Revision uint64
	// Err is a domain error (wrapping ErrMalformedCommand, store.ErrNotFound,
	// store.ErrStaleRegistration or store.ErrRequestReused); nil on success.
	Err error
}

// BatchResult holds one Result per entry of a batch, in order.
type BatchResult []Result

// FSM applies Raft log entries to a store.
type FSM struct {
	store  *store.Store
	logger hclog.Logger
	hooks  Hooks
	stats  applyStats
	// stamps, when set, is told the newest request stamp of each entry
	// applied and of each state restored (ObserveRequestStamps).
	stamps func(stamp int64)
	// entryStamp is the largest Request stamp of the entry being applied;
	// stamped says whether it carried one. Raft applies one entry at a
	// time.
	entryStamp int64
	stamped    bool
}

// Hooks are seams for tests to force an interleaving on the apply path; a
// production FSM has none.
type Hooks struct {
	// BeforeApply runs before entry index changes anything.
	BeforeApply func(index uint64)
	// AfterCommit runs once entry index's changes are visible in the store,
	// before Apply returns.
	AfterCommit func(index uint64)
}

// SetHooks installs test hooks. Call it before the FSM is handed to Raft.
func (f *FSM) SetHooks(h Hooks) { f.hooks = h }

// ObserveRequestStamps sets fn to be told, once an entry's changes are
// visible, the largest request stamp (Request.now_unix_ns) the entry
// carried, and after a Restore the largest stamp the restored state
// remembers. It is for the node's own bookkeeping (when it applied the
// newest stamp: the leader's request clock goes on from there, cluster's
// requestclock.go); nothing Apply writes or returns depends on it, and fn
// must not change the store. Call it before the FSM is handed to Raft.
func (f *FSM) ObserveRequestStamps(fn func(stamp int64)) { f.stamps = fn }

// New returns an FSM over s.
func New(s *store.Store, logger hclog.Logger) *FSM {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &FSM{store: s, logger: logger}
}

// Store returns the store this FSM writes.
func (f *FSM) Store() *store.Store { return f.store }

// Applied returns the index of the last entry applied (or restored) and a
// channel closed when it moves. The index lives in the store, committed
// with the entry's changes, so state and index are never seen apart.
// Raft's own AppliedIndex runs ahead of the FSM and counts entries the FSM
// never sees (no-op, barrier, configuration), so reads wait on this one.
func (f *FSM) Applied() (uint64, <-chan struct{}) { return f.store.Applied() }

// Apply implements raft.FSM. It returns a Result, or a BatchResult for a batch.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if f.hooks.BeforeApply != nil {
		f.hooks.BeforeApply(l.Index)
	}
	res := f.apply(l.Index, l.Data)
	if f.hooks.AfterCommit != nil {
		f.hooks.AfterCommit(l.Index)
	}
	return res
}

func (f *FSM) apply(index uint64, data []byte) any {
	w := f.store.Begin(index)
	defer w.Abort()
	f.entryStamp, f.stamped = 0, false
	var res any
	malformed := false
	if len(data) > 0 && CommandType(data[0]) == BatchType {
		var b raftcmdv1.Batch
		if err := proto.Unmarshal(data[1:], &b); err != nil {
			return f.reject(w, index, nil, fmt.Errorf("entry %d: %w batch: %v", index, ErrMalformedCommand, err))
		}
		out := make(BatchResult, len(b.Entries))
		for i, e := range b.Entries {
			if len(e) > 0 && CommandType(e[0]) == BatchType {
				out[i] = Result{Err: fmt.Errorf("entry %d: %w: nested batch", index, ErrMalformedCommand)}
			} else {
				out[i] = f.dispatch(w, index, e)
			}
			malformed = malformed || errors.Is(out[i].Err, ErrMalformedCommand)
		}
		if malformed {
			return f.reject(w, index, out, nil)
		}
		res = out
	} else {
		r := f.dispatch(w, index, data)
		if errors.Is(r.Err, ErrMalformedCommand) {
			return f.reject(w, index, nil, r.Err)
		}
		res = r
	}
	if err := w.Commit(); err != nil {
		panic(fmt.Errorf("fsm: entry %d: commit: %w", index, err))
	}
	if f.stamped && f.stamps != nil {
		f.stamps(f.entryStamp)
	}
	return res
}

// reject answers an entry holding a malformed command: nothing of it is
// applied (its transaction is dropped, so a batch's other commands are not
// applied either), only the applied index moves. Every node decodes the
// same bytes the same way, so every node rejects it alike. A batch gets
// its results with every entry failed: the malformed ones' errors, and
// for the others the first malformed error.
func (f *FSM) reject(w *store.WriteTxn, index uint64, batch BatchResult, err error) any {
	w.Abort()
	f.logger.Error("rejected a malformed log entry; nothing of it was applied", "index", index, "error", err)
	empty := f.store.Begin(index)
	defer empty.Abort()
	if cerr := empty.Commit(); cerr != nil {
		panic(fmt.Errorf("fsm: entry %d: commit: %w", index, cerr))
	}
	if batch == nil {
		return Result{Err: err}
	}
	var first error
	for _, r := range batch {
		if errors.Is(r.Err, ErrMalformedCommand) {
			first = r.Err
			break
		}
	}
	out := make(BatchResult, len(batch))
	for i, r := range batch {
		out[i] = Result{Err: first}
		if errors.Is(r.Err, ErrMalformedCommand) {
			out[i] = Result{Err: r.Err}
		}
	}
	return out
}

// dispatch applies one command inside the entry's transaction. A command
// that does not decode comes back as an ErrMalformedCommand result (the
// caller drops the whole entry).
func (f *FSM) dispatch(w *store.WriteTxn, index uint64, data []byte) Result {
	if len(data) == 0 {
		return Result{Err: fmt.Errorf("entry %d: %w: %w", index, ErrMalformedCommand, ErrEmptyCommand)}
	}
	t := CommandType(data[0])
	if t == RequestType {
		return f.applyRequest(w, index, data[1:])
	}
	h, ok := handlers[t]
	if !ok {
		if t&SkippableFlag != 0 {
			f.logger.Warn("skipping unknown command", "type", int(t), "index", index)
			return Result{}
		}
		panic(&UnknownCommandError{Index: index, Type: t})
	}
	// The clock only feeds the apply time metric; it never reaches state.
	start := time.Now()
	rev, err := h(w, data[1:])
	f.stats.observe(t, time.Since(start))
	switch {
	case err == nil:
		return Result{Revision: rev}
	case errors.Is(err, ErrMalformedCommand):
		return Result{Err: fmt.Errorf("entry %d: %w", index, err)}
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrStaleRegistration), errors.Is(err, store.ErrLimitExceeded),
		errors.Is(err, store.ErrACLBootstrapped), errors.Is(err, store.ErrTokenNotFound), errors.Is(err, store.ErrTokenExists):
		return Result{Err: err}
	default:
		// The store failed inside a transaction; its state is unknown.
		panic(fmt.Errorf("fsm: entry %d: %w", index, err))
	}
}

// UnknownCommandError is the panic value of an entry whose command type
// this node does not know and may not skip: the cluster's log is newer than
// this binary, and going on would let this node's state diverge.
type UnknownCommandError struct {
	Index uint64
	Type  CommandType
}

func (e *UnknownCommandError) Error() string {
	return fmt.Sprintf("fsm: entry %d: unknown command type %d; this node is older than the cluster's log", e.Index, e.Type)
}

// applyRequest applies a client write at most once per request id. It first
// forgets results older than the command's stamp allows (so pruning depends
// on the log alone), then answers a repeated id with its first result,
// changing nothing, or applies the wrapped command and remembers its result.
func (f *FSM) applyRequest(w *store.WriteTxn, index uint64, payload []byte) Result {
	var c raftcmdv1.Request
	if err := proto.Unmarshal(payload, &c); err != nil {
		return Result{Err: fmt.Errorf("entry %d: %w request: %v", index, ErrMalformedCommand, err)}
	}
	if c.RequestId == "" || len(c.Command) == 0 {
		return Result{Err: fmt.Errorf("entry %d: %w: request without id or command", index, ErrMalformedCommand)}
	}
	if t := CommandType(c.Command[0]); !Requestable(t) {
		return Result{Err: fmt.Errorf("entry %d: %w: request wraps command type %d", index, ErrMalformedCommand, t)}
	}
	if len(c.Digest) != store.DigestSize {
		return Result{Err: fmt.Errorf("entry %d: %w: request digest is %d bytes, want %d", index, ErrMalformedCommand, len(c.Digest), store.DigestSize)}
	}
	if err := w.PruneRequests(c.NowUnixNs); err != nil {
		panic(fmt.Errorf("fsm: entry %d: %w", index, err))
	}
	if !f.stamped || c.NowUnixNs > f.entryStamp {
		f.entryStamp, f.stamped = c.NowUnixNs, true
	}
	prev, err := w.Request(c.RequestId)
	if err != nil {
		panic(fmt.Errorf("fsm: entry %d: %w", index, err))
	}
	if prev != nil {
		if prev.Digest != [store.DigestSize]byte(c.Digest) {
			return Result{Err: fmt.Errorf("request %q (first applied at index %d): %w", c.RequestId, prev.Index, store.ErrRequestReused)}
		}
		return Result{Revision: prev.Revision, Err: prev.Err()}
	}
	res := f.dispatch(w, index, c.Command)
	if errors.Is(res.Err, ErrMalformedCommand) {
		return res
	}
	rr, err := store.NewRequestResult(c.RequestId, c.Digest, c.NowUnixNs, index, res.Revision, res.Err)
	if err != nil {
		panic(fmt.Errorf("fsm: entry %d: %w", index, err))
	}
	if err := w.RememberRequest(rr); err != nil {
		panic(fmt.Errorf("fsm: entry %d: %w", index, err))
	}
	return res
}

// Restore implements raft.FSM: it replaces the whole state with a snapshot.
// On any error the previous state is left intact.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	applied, err := restore(f.store, rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if f.stamps != nil {
		if latest, ok := f.store.View().LatestRequestTime(); ok {
			f.stamps(latest)
		}
	}
	f.logger.Info("restored snapshot", "applied_index", applied, "revision", f.store.Revision())
	return nil
}

// Snapshot implements raft.FSM. It only takes a pointer to the current MVCC
// view; Persist streams it while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &snapshot{view: f.store.View()}, nil
}
