package rpc

import (
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// TestRefillTimeIsBounded: the wait a refused call is told is what its
// bucket needs, never under a millisecond, and never past a day however
// low the rate (a Duration would overflow).
func TestRefillTimeIsBounded(t *testing.T) {
	for _, tc := range []struct {
		missing float64
		r       rate.Limit
		want    time.Duration
	}{
		{11, 0.01, 1100 * time.Second},
		{1, 1000, time.Millisecond},
		{1e-9, 1000, time.Millisecond},
		{1, 1e-12, 24 * time.Hour},
		{30, 1e-300, 24 * time.Hour},
	} {
		if got := refillTime(tc.missing, tc.r); got != tc.want {
			t.Errorf("refillTime(%g, %g) = %v, want %v", tc.missing, float64(tc.r), got, tc.want)
		}
	}
}
