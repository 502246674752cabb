package rpc

import (
	"context"
	"slices"
	"sync"
	"time"

	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// selfPreservationStale: a follower that has not heard the leader's
// self-preservation state for this long stops reporting it.
const selfPreservationStale = 5 * time.Second

// selfPreservationView is a follower's copy of which lease expiries the
// leader holds, refreshed from the leader's Status every second, so reads
// served anywhere can say so in their header.
type selfPreservationView struct {
	mu       sync.Mutex
	all      bool
	services map[string]bool
	at       time.Time
}

func (v *selfPreservationView) set(all bool, services []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.all = all
	v.services = make(map[string]bool, len(services))
	for _, s := range services {
		v.services[s] = true
	}
	v.at = time.Now()
}

func (v *selfPreservationView) holds(namespace, service string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if time.Since(v.at) > selfPreservationStale {
		return false
	}
	return v.all || (service != "" && v.services[namespace+"/"+service])
}

func (v *selfPreservationView) snapshot() (bool, []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if time.Since(v.at) > selfPreservationStale {
		return false, nil
	}
	var out []string
	for s := range v.services {
		out = append(out, s)
	}
	slices.Sort(out)
	return v.all || len(out) > 0, out
}

// selfPreserving reports whether the leader holds lease expiry of a
// service, or of every service when service is empty.
func (s *Server) selfPreserving(namespace, service string) bool {
	if s.node.IsLeader() {
		return s.node.SelfPreserving(namespace, service)
	}
	return s.sp.holds(namespace, service)
}

// serviceHeader is the header of a read of one service.
func (s *Server) serviceHeader(rev uint64, namespace, service string) *rosterv1.ResponseHeader {
	h := s.header(rev)
	if !h.SelfPreservation {
		h.SelfPreservation = s.selfPreserving(namespace, service)
	}
	return h
}

// followSelfPreservation keeps a follower's copy of the leader's
// self-preservation state fresh.
func (s *Server) followSelfPreservation() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if s.node.IsLeader() {
			continue
		}
		id, addr := s.node.Leader()
		if id == "" || addr == "" {
			continue
		}
		cc, err := s.peers.get(addr)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := rosterv1.NewClusterClient(cc).Status(ctx, &rosterv1.StatusRequest{})
		cancel()
		if err != nil || resp.GetState() != "leader" {
			continue
		}
		s.sp.set(resp.SelfPreservation && len(resp.SelfPreservationServices) == 0, resp.SelfPreservationServices)
	}
}
