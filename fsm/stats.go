package fsm

import (
	"fmt"
	"math"
	"sort"
	"sync/atomic"
	"time"
)

// ApplyBuckets are the upper bounds, in seconds, of the apply time
// histogram buckets: 1µs to about 0.5s, doubling.
var ApplyBuckets = func() []float64 {
	b := make([]float64, 20)
	for i := range b {
		b[i] = 1e-6 * math.Pow(2, float64(i))
	}
	return b
}()

// ApplyStat is the apply time histogram of one command type.
type ApplyStat struct {
	Type CommandType
	// Count of commands applied, and the seconds they took in all.
	Count uint64
	Sum   float64
	// Buckets are cumulative counts per ApplyBuckets bound.
	Buckets []uint64
}

// applyStats keeps an apply time histogram per command type with atomic
// counters: the apply path pays two clock reads and three atomic adds, and
// a scrape reads them.
type applyStats struct {
	byType [256]atomic.Pointer[applyHist]
}

type applyHist struct {
	count   atomic.Uint64
	sumNs   atomic.Uint64
	buckets [20]atomic.Uint64 // per bucket, not cumulative; the last one also takes overflow
}

func (s *applyStats) observe(t CommandType, d time.Duration) {
	h := s.byType[t].Load()
	if h == nil {
		s.byType[t].CompareAndSwap(nil, &applyHist{})
		h = s.byType[t].Load()
	}
	sec := d.Seconds()
	i := sort.SearchFloat64s(ApplyBuckets, sec)
	if i < len(h.buckets) {
		h.buckets[i].Add(1)
	}
	h.sumNs.Add(uint64(max(d, 0)))
	h.count.Add(1)
}

// ApplyStats returns the apply time of every command type applied since
// the FSM started, in type order. A command's time is its handler's, inside
// its entry's transaction; the entry's commit is measured by Raft's own
// raft.fsm.apply.
func (f *FSM) ApplyStats() []ApplyStat {
	var out []ApplyStat
	for t := range f.stats.byType {
		h := f.stats.byType[t].Load()
		if h == nil {
			continue
		}
		st := ApplyStat{Type: CommandType(t), Count: h.count.Load(), Sum: float64(h.sumNs.Load()) / 1e9, Buckets: make([]uint64, len(ApplyBuckets))}
		var cum uint64
		for i := range h.buckets {
			cum += h.buckets[i].Load()
			st.Buckets[i] = cum
		}
		// Read separately from the buckets; never let the count fall below
		// the buckets a concurrent apply already reached.
		st.Count = max(st.Count, cum)
		out = append(out, st)
	}
	return out
}

// String names a command type for logs and metrics.
func (t CommandType) String() string {
	switch t {
	case RegisterType:
		return "register"
	case DeregisterType:
		return "deregister"
	case SetHealthType:
		return "set_health"
	case ReapType:
		return "reap"
	case SetMaintenanceType:
		return "set_maintenance"
	case UpsertMemberType:
		return "upsert_member"
	case RemoveMemberType:
		return "remove_member"
	case BatchType:
		return "batch"
	case SelfPreservationType:
		return "self_preservation"
	case RequestType:
		return "request"
	}
	return fmt.Sprintf("type_%d", uint8(t))
}
