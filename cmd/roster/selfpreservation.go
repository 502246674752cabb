package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/client"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// Bounds of --max-hold, as the server checks them.
const (
	minMaxHold = time.Second
	maxMaxHold = 24 * time.Hour
)

// selfPreservationJSON is what self-preservation prints with -o json.
type selfPreservationJSON struct {
	Threshold        float64           `json:"threshold"`
	Window           string            `json:"window"`
	MinLeases        uint32            `json:"min_leases"`
	MaxHold          string            `json:"max_hold"`
	ServiceMinLeases map[string]uint32 `json:"service_min_leases"`
	// UnreadableServiceMinLeases counts the services with a minimum of
	// their own that the token may not read, left out of ServiceMinLeases.
	UnreadableServiceMinLeases uint32 `json:"unreadable_service_min_leases,omitempty"`
	// Active, Services, UnreadableServices and HeldExpiries come from
	// status; a change does not report them. UnreadableServices counts the
	// held services the token may not read, left out of Services.
	Active             *bool    `json:"active,omitempty"`
	Services           []string `json:"services,omitempty"`
	UnreadableServices uint32   `json:"unreadable_services,omitempty"`
	HeldExpiries       *uint64  `json:"held_expiries,omitempty"`
}

func (a *app) selfPreservationCommand() *cobra.Command {
	var (
		threshold  float64
		off, reset bool
		minLeases  int
		maxHold    time.Duration
		services   []string
	)
	cmd := &cobra.Command{
		Use:   "self-preservation",
		Short: "Show or change the cluster's self-preservation settings",
		Long: `Self-preservation holds lease expiry when more than --threshold of all
leases, or of one service's, would expire within the window: the sign of
clients cut off from the cluster rather than of that many crashes. A group of
fewer than --min-leases leases never trips, and no expiry is held longer than
--max-hold. A held instance stays passing; get shows it as "passing,held" and
its status_reason says since when and until when at the latest.

Without flags it shows the settings in force and what the leader holds. With
flags it changes them for the whole cluster: the change is committed through
Raft, so it outlives any leader. Flags not given are left as they are;
--reset first drops every earlier change, so each leader uses its own
rosterd flags again.

--service-min-leases NAMESPACE/SERVICE=N (or SERVICE=N in the default
namespace) sets one service's minimum; N=0 removes it. Repeatable.

With ACLs and TLS, the services shown are those the token may read; the
others are counted ("2 services you may not read"). HOLDING says "every
service" only when the leader holds every expiry.

-o json prints {"threshold", "window", "min_leases", "max_hold",
"service_min_leases": {"namespace/service": N}} and, when showing, "active",
"services" and "held_expiries"; "unreadable_services" and
"unreadable_service_min_leases" count what the token may not read, when
any.`,
		Example: `  roster self-preservation
  roster self-preservation --off
  roster self-preservation --threshold 0.6 --min-leases 20 --max-hold 30m
  roster self-preservation --service-min-leases payments=3 --service-min-leases batch/jobs=0
  roster self-preservation --reset`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fl := cmd.Flags()
			req := &rosterv1.SetSelfPreservationRequest{Reset_: reset}
			change := reset
			if fl.Changed("threshold") && off {
				return usagef("--off and --threshold: give one")
			}
			if fl.Changed("threshold") {
				if math.IsNaN(threshold) || threshold < 0 || threshold > 1 {
					return usagef("--threshold %v: must be between 0 (off) and 1", threshold)
				}
				req.Threshold, change = &threshold, true
			}
			if off {
				zero := 0.0
				req.Threshold, change = &zero, true
			}
			if fl.Changed("min-leases") {
				if minLeases < 1 || minLeases > math.MaxUint32 {
					return usagef("--min-leases %d: must be at least 1", minLeases)
				}
				n := uint32(minLeases)
				req.MinLeases, change = &n, true
			}
			if fl.Changed("max-hold") {
				if maxHold < minMaxHold || maxHold > maxMaxHold {
					return usagef("--max-hold %s: must be between %s and %s", maxHold, minMaxHold, maxMaxHold)
				}
				req.MaxHold, change = durationpb.New(maxHold), true
			}
			for _, s := range services {
				name, n, err := parseServiceMin(s)
				if err != nil {
					return err
				}
				if req.ServiceMinLeases == nil {
					req.ServiceMinLeases = map[string]uint32{}
				}
				req.ServiceMinLeases[name], change = n, true
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				if !change {
					return a.showSelfPreservation(ctx, c)
				}
				resp, err := c.SetSelfPreservation(ctx, req)
				if err != nil {
					return err
				}
				out := selfPreservationJSON{Threshold: resp.GetThreshold(), Window: resp.GetWindow().AsDuration().String(),
					MinLeases: resp.GetMinLeases(), MaxHold: resp.GetMaxHold().AsDuration().String(), ServiceMinLeases: orEmpty(resp.GetServiceMinLeases())}
				return a.printSelfPreservation(out)
			})
		},
	}
	fl := cmd.Flags()
	fl.Float64Var(&threshold, "threshold", 0, "share of leases (0 to 1) that may not expire within the window; 0 turns it off")
	fl.BoolVar(&off, "off", false, "turn self-preservation off (threshold 0)")
	fl.IntVar(&minLeases, "min-leases", 0, "a group of fewer leases (all, or one service's) never trips")
	fl.DurationVar(&maxHold, "max-hold", 0, fmt.Sprintf("the longest one expiry is held (%s to %s)", minMaxHold, maxMaxHold))
	fl.StringArrayVar(&services, "service-min-leases", nil, "one service's minimum, [NAMESPACE/]SERVICE=N; N=0 removes it (repeatable)")
	fl.BoolVar(&reset, "reset", false, "drop every earlier change first: each leader uses its rosterd flags again")
	return cmd
}

// parseServiceMin reads [NAMESPACE/]SERVICE=N.
func parseServiceMin(s string) (string, uint32, error) {
	name, num, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return "", 0, usagef("--service-min-leases %q: want [NAMESPACE/]SERVICE=N", s)
	}
	if !strings.Contains(name, "/") {
		name = "default/" + name
	}
	if ns, svc, _ := strings.Cut(name, "/"); ns == "" || svc == "" || strings.Contains(svc, "/") {
		return "", 0, usagef("--service-min-leases %q: want [NAMESPACE/]SERVICE=N", s)
	}
	n, err := strconv.ParseUint(num, 10, 32)
	if err != nil {
		return "", 0, usagef("--service-min-leases %q: N must be a whole number (0 removes the service's minimum)", s)
	}
	return name, uint32(n), nil
}

func orEmpty(m map[string]uint32) map[string]uint32 {
	if m == nil {
		return map[string]uint32{}
	}
	return m
}

func (a *app) showSelfPreservation(ctx context.Context, c *client.Client) error {
	s, err := c.Status(ctx, &rosterv1.StatusRequest{})
	if err != nil {
		return err
	}
	active, held := s.GetSelfPreservation(), s.GetHeldExpiries()
	out := selfPreservationJSON{Threshold: s.GetSelfPreservationThreshold(), Window: s.GetSelfPreservationWindow().AsDuration().String(),
		MinLeases: s.GetSelfPreservationMinLeases(), MaxHold: s.GetSelfPreservationMaxHold().AsDuration().String(),
		ServiceMinLeases: orEmpty(s.GetSelfPreservationServiceMinLeases()), Active: &active, Services: s.GetSelfPreservationServices(),
		UnreadableServices: s.GetSelfPreservationUnreadableServices(), UnreadableServiceMinLeases: s.GetSelfPreservationUnreadableServiceMinLeases()}
	if s.GetState() == "leader" {
		out.HeldExpiries = &held
	}
	return a.printSelfPreservation(out)
}

func (a *app) printSelfPreservation(out selfPreservationJSON) error {
	if a.json() {
		return writeJSON(a.stdout, out)
	}
	t := newTable(a.stdout, "THRESHOLD", thresholdWord(out.Threshold))
	t.row("WINDOW", out.Window)
	t.row("MIN LEASES", strconv.FormatUint(uint64(out.MinLeases), 10))
	t.row("MAX HOLD", out.MaxHold)
	var svcs []string
	for name, n := range out.ServiceMinLeases {
		svcs = append(svcs, fmt.Sprintf("%s=%d", name, n))
	}
	slices.Sort(svcs)
	t.row("SERVICE MIN LEASES", orDash(withUnreadable(strings.Join(svcs, ","), out.UnreadableServiceMinLeases)))
	if out.Active != nil {
		holding := "no"
		switch {
		case *out.Active && len(out.Services) == 0 && out.UnreadableServices == 0:
			holding = "every service"
		case *out.Active:
			holding = withUnreadable(strings.Join(out.Services, ","), out.UnreadableServices)
		}
		t.row("HOLDING", holding)
	}
	if out.HeldExpiries != nil {
		t.row("HELD EXPIRIES", strconv.FormatUint(*out.HeldExpiries, 10))
	}
	return t.flush()
}

// withUnreadable adds to a list of services how many more the token may
// not read.
func withUnreadable(list string, unreadable uint32) string {
	if unreadable == 0 {
		return list
	}
	more := fmt.Sprintf("%d services you may not read", unreadable)
	if unreadable == 1 {
		more = "1 service you may not read"
	}
	if list == "" {
		return more
	}
	return list + " and " + more
}

func thresholdWord(v float64) string {
	if v == 0 {
		return "0 (off)"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
