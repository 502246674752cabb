package rpc

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roster-registry/roster/store"
)

// watchGroup reads the history for the caught-up watches of one WatchMany
// stream. A watch that has caught up parks with the group instead of
// waiting on the history itself; on each new revision the group's one
// goroutine reads on for every parked watch and queues what it makes of
// the revision, so that a change wakes one goroutine per stream instead of
// one per watch (and no select on the history's notify channel, which
// every woken reader of the node locks).
//
// The group does only the easy part: reading whole revisions and queuing a
// message the sender has room for. Anything else hands the watch back to
// its own goroutine, which runs serveWatch's loop as before: a message the
// sender has not room for (waiting on it, and the slow-client cut-off), a
// position the history has moved past (the reset), a bookmark, a progress
// request, the stream or the watch ending. A watch is owned by exactly one
// of the two at a time: its position and its fields below change only
// under mu while it is parked.
type watchGroup struct {
	hist  *store.History
	out   *watchOut
	hooks *atomic.Pointer[watchHooks]

	mu     sync.Mutex
	parked []*watchRun
	// memo is the message of one pass per filter and position: watches
	// with the same request at the same revision get the same bytes.
	memo map[memoKey]memoMsg
	// queued collects the watches given a message in a pass.
	queued []*watchRun
}

// parking is what a watch parked with its stream's group leaves there;
// guarded by the group's mu.
type parking struct {
	w      *watcher
	parked bool
	slot   int    // index in the group's parked list
	pos    uint64 // everything up to it is handed to the sender
	// putAt is when the group last queued a message for the watch: its
	// progress timer counts from there.
	putAt time.Time
	// back is what the group hands back: a message the sender had no room
	// for (revision backRev), or reset when the history has moved past pos.
	back  *outMsg
	reset bool
	wake  chan struct{} // capacity 1: the group has handed the watch back
}

type memoKey struct {
	namespace, service    string
	healthyOnly, omitPrev bool
	// filter names the watch's filter of the services its token may not
	// read (watcher.filterID; 0: none): watches share a message only when
	// they leave out the same services, which is known only of one filter.
	filter uint64
	batch  int
	pos    uint64
}

type memoMsg struct {
	msg  *preEncoded // nil: no event matches
	last uint64
	err  error
}

func newWatchGroup(hist *store.History, out *watchOut, hooks *atomic.Pointer[watchHooks]) *watchGroup {
	return &watchGroup{hist: hist, out: out, hooks: hooks, memo: map[memoKey]memoMsg{}}
}

// park hands r, caught up at pos, to the group. It returns false, leaving
// r with its goroutine, when the head has already moved past pos: the
// group might have read on before r was parked.
func (g *watchGroup) park(r *watchRun, w *watcher, pos uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if head, _ := g.hist.Head(); head > pos {
		return false
	}
	p := &r.park
	p.w, p.pos, p.parked, p.slot = w, pos, true, len(g.parked)
	p.putAt, p.back, p.reset = time.Time{}, nil, false
	if p.wake == nil {
		p.wake = make(chan struct{}, 1)
	}
	g.parked = append(g.parked, r)
	// Caught up at pos: the sender need not wait for it.
	g.out.setState(r, runIdle)
	return true
}

// unpark takes r back for its goroutine, parked or handed back, and
// returns what the group left: r's position, a message to put, whether
// the history moved past it, and when the group last queued a message.
func (g *watchGroup) unpark(r *watchRun) parking {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := &r.park
	if p.parked {
		g.drop(r)
	}
	select {
	case <-p.wake: // handed back while the goroutine woke for another reason
	default:
	}
	r.state.Store(runBusy)
	got := *p
	p.back, p.reset, p.w = nil, false, nil
	return got
}

// drop removes r from the parked list; under mu.
func (g *watchGroup) drop(r *watchRun) {
	i := r.park.slot
	last := len(g.parked) - 1
	g.parked[i] = g.parked[last]
	g.parked[i].park.slot = i
	g.parked[last] = nil
	g.parked = g.parked[:last]
	r.park.parked = false
}

// handBack returns r to its goroutine; under mu.
func (g *watchGroup) handBack(r *watchRun) {
	g.drop(r)
	// Busy until its goroutine has dealt with what it is handed: the
	// sender waits for it.
	r.state.Store(runBusy)
	r.park.wake <- struct{}{}
}

// run is the group's reader: after each new revision it reads on for every
// parked watch. It exits when done is closed.
func (g *watchGroup) run(done <-chan struct{}) {
	for {
		head, notify := g.hist.Head()
		if h := g.hooks.Load(); h != nil && h.beforePass != nil {
			h.beforePass()
		}
		g.pass()
		if h := g.hooks.Load(); h != nil && h.afterPass != nil {
			h.afterPass(head)
		}
		select {
		case <-notify:
		case <-done:
			return
		}
	}
}

// pass reads the history up to the head for every parked watch, queuing a
// message for each that has one, and hands back each it cannot serve.
func (g *watchGroup) pass() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.parked) == 0 {
		return
	}
	now := time.Now()
	clear(g.memo)
	g.queued = g.queued[:0]
	// Walk backwards: a watch handed back is replaced in its slot by the
	// last one, which has been seen already.
	for i := len(g.parked) - 1; i >= 0; i-- {
		r := g.parked[i]
		p := &r.park
		queued := false
		for {
			m := g.read(p.w, p.pos)
			if m.err != nil {
				// The history has moved past the watch (a reset), or the
				// read fails: its goroutine reads again and deals with it.
				p.reset = errors.Is(m.err, store.ErrCompacted)
				g.handBack(r)
				break
			}
			if m.last == 0 {
				break // caught up
			}
			if m.msg != nil {
				out := outMsg{msg: m.msg, rev: m.last}
				select {
				case r.sendq <- out:
					g.queued = append(g.queued, r)
					queued = true
					p.putAt = now
				default:
					// The sender has not taken the last one: waiting for
					// it, and cutting the watch off if it never does, is
					// its goroutine's work.
					p.back = &out
					g.handBack(r)
				}
			}
			p.pos = m.last
			if !queued {
				r.at.Store(m.last)
			}
			if !p.parked {
				break
			}
		}
	}
	// A watch given a message moves its at only once the sender knows of
	// the message: a sender looking in the meantime sees it behind the
	// head and waits, so that its message goes with the others alike.
	if h := g.hooks.Load(); h != nil && h.beforeQueue != nil && len(g.queued) > 0 {
		h.beforeQueue(len(g.queued))
	}
	g.out.queuedAll(g.queued)
	for _, r := range g.queued {
		r.at.Store(r.park.pos)
	}
	clear(g.queued)
	// Poke even when nothing was queued: a sender waiting for a watch to
	// reach the head must look again now that it has, whether or not the
	// watch made a message of the way there.
	g.out.poke()
}

// read returns the message a watch with w's request at pos makes of the
// next revisions, at most one batch, shared with the other watches of the
// pass that ask the same at the same position; last is 0 when the watch
// is caught up.
func (g *watchGroup) read(w *watcher, pos uint64) memoMsg {
	k := memoKey{namespace: w.namespace, service: w.service, healthyOnly: w.healthyOnly, omitPrev: w.omitPrev, batch: w.batch, pos: pos,
		filter: w.filterID}
	if m, ok := g.memo[k]; ok {
		return m
	}
	var m memoMsg
	revs, _, _, err := g.hist.Since(pos, w.batch)
	switch {
	case err != nil:
		m.err = err
	case len(revs) > 0:
		m.last = revs[len(revs)-1].Revision
		m.msg = w.events(revs)
	}
	g.memo[k] = m
	return m
}
