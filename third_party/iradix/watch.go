package iradix

import "sync/atomic"

// mutateCh is a node's or a leaf's mutation channel, closed when the node
// or leaf is replaced by a committed transaction that tracks mutations.
//
// It is made on first use, by a reader that asks to watch, instead of with
// every node: most nodes are never watched, and two channels a key were
// most of the memory a large tree held. A transaction that replaces a node
// fires its channel when it notifies; firing one that was never made leaves
// a closed channel in its place, so a reader of an older tree that asks for
// it later is told at once that the node changed.
type mutateCh struct {
	p atomic.Pointer[chan struct{}]
}

// closedCh is the channel of every node fired before anyone watched it.
var closedCh = func() *chan struct{} {
	c := make(chan struct{})
	close(c)
	return &c
}()

// watch returns the channel, making it if no one has asked for it yet.
func (m *mutateCh) watch() chan struct{} {
	if p := m.p.Load(); p != nil {
		return *p
	}
	c := make(chan struct{})
	if m.p.CompareAndSwap(nil, &c) {
		return c
	}
	return *m.p.Load()
}

// fire closes the channel, or marks it closed if it was never made. It
// may be called more than once.
func (m *mutateCh) fire() {
	if old := m.p.Swap(closedCh); old != nil && old != closedCh {
		close(*old)
	}
}
