package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/client"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// registerFlags are the flags of roster register.
type registerFlags struct {
	namespace              string
	tags                   []string
	meta                   []string
	weight                 uint32
	zone                   string
	ttl                    time.Duration
	deregisterAfter        time.Duration
	checkHTTP              string
	checkTCP               string
	checkGRPC              string
	checkGRPCService       string
	checkInterval          time.Duration
	checkTimeout           time.Duration
	failuresBeforeCritical uint32
	successesBeforePassing uint32
	keepalive              bool
}

func (a *app) registerCommand() *cobra.Command {
	var f registerFlags
	cmd := &cobra.Command{
		Use:   "register SERVICE ID HOST:PORT",
		Short: "Register (create or replace) a service instance",
		Long: `register creates the instance ID of SERVICE at HOST:PORT, or replaces it.

With --ttl the instance holds a lease that must be renewed within the TTL
(see heartbeat); with --keepalive roster stays in the foreground renewing it,
prints a line when the lease is lost (and registers again) and when it is
re-established, and deregisters the instance on SIGINT or SIGTERM.

At most one active health check may be given: --check-http, --check-tcp or
--check-grpc. -o json prints {"revision": N}.`,
		Example: `  roster register payments p1 10.0.0.5:8080 --tag v2 --meta version=1.4 --zone eu-1
  roster register payments p1 10.0.0.5:8080 --check-http http://10.0.0.5:8080/health --check-interval 5s
  roster register payments p1 10.0.0.5:8080 --ttl 15s --keepalive`,
		Args: exactArgs("SERVICE", "ID", "HOST:PORT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := f.instance(cmd, args)
			if err != nil {
				return usageError{err}
			}
			if f.keepalive {
				return a.keepAlive(cmd, inst, f.ttl)
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Register(ctx, &rosterv1.RegisterRequest{Instance: inst})
				if err != nil {
					return err
				}
				return a.printRegistered(inst, resp.GetRevision())
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.namespace, "namespace", "default", "namespace of the service")
	fl.StringArrayVar(&f.tags, "tag", nil, "tag of the instance (repeatable)")
	fl.StringArrayVar(&f.meta, "meta", nil, "metadata KEY=VALUE (repeatable)")
	fl.Uint32Var(&f.weight, "weight", 0, "load-balancing weight, 1..10000 (server default 100)")
	fl.StringVar(&f.zone, "zone", "", "zone of the instance")
	fl.DurationVar(&f.ttl, "ttl", 0, "lease TTL; the instance must heartbeat within it")
	fl.DurationVar(&f.deregisterAfter, "deregister-critical-after", 0, "remove the instance after it has been critical this long")
	fl.StringVar(&f.checkHTTP, "check-http", "", "active HTTP check: URL to GET")
	fl.StringVar(&f.checkTCP, "check-tcp", "", "active TCP check: HOST:PORT to connect to")
	fl.StringVar(&f.checkGRPC, "check-grpc", "", "active gRPC health check: HOST:PORT")
	fl.StringVar(&f.checkGRPCService, "check-grpc-service", "", "service name sent in the gRPC health check")
	fl.DurationVar(&f.checkInterval, "check-interval", 0, "time between checks (server default 10s)")
	fl.DurationVar(&f.checkTimeout, "check-timeout", 0, "time limit of one check (server default 5s)")
	fl.Uint32Var(&f.failuresBeforeCritical, "failures-before-critical", 0, "consecutive failures that make the instance critical")
	fl.Uint32Var(&f.successesBeforePassing, "successes-before-passing", 0, "consecutive successes that make the instance passing")
	fl.BoolVar(&f.keepalive, "keepalive", false, "stay in the foreground renewing the lease (needs --ttl)")
	return cmd
}

// instance checks the command line and builds the instance to register.
func (f *registerFlags) instance(cmd *cobra.Command, args []string) (*rosterv1.Instance, error) {
	host, port, err := parseHostPort(args[2])
	if err != nil {
		return nil, err
	}
	meta, err := parseMeta(f.meta)
	if err != nil {
		return nil, err
	}
	if cmd.Flags().Changed("weight") && (f.weight < 1 || f.weight > 10000) {
		return nil, fmt.Errorf("--weight %d: must be from 1 to 10000", f.weight)
	}
	for name, d := range map[string]time.Duration{
		"ttl": f.ttl, "deregister-critical-after": f.deregisterAfter,
		"check-interval": f.checkInterval, "check-timeout": f.checkTimeout,
	} {
		if err := nonNegative(name, d); err != nil {
			return nil, err
		}
	}
	if f.keepalive && f.ttl == 0 {
		return nil, errors.New("--keepalive needs --ttl")
	}
	check, err := f.check(cmd)
	if err != nil {
		return nil, err
	}
	inst := &rosterv1.Instance{
		Namespace: f.namespace,
		Service:   args[0],
		Id:        args[1],
		Address:   host,
		Port:      port,
		Tags:      f.tags,
		Metadata:  meta,
		Weight:    f.weight,
		Zone:      f.zone,
		Check:     check,
	}
	if f.ttl > 0 {
		inst.Ttl = durationpb.New(f.ttl)
	}
	if f.deregisterAfter > 0 {
		inst.DeregisterCriticalAfter = durationpb.New(f.deregisterAfter)
	}
	return inst, nil
}

// check builds the active health check, if one was asked for.
func (f *registerFlags) check(cmd *cobra.Command) (*rosterv1.HealthCheck, error) {
	var check rosterv1.HealthCheck
	targets := 0
	if f.checkHTTP != "" {
		if err := parseCheckURL(f.checkHTTP); err != nil {
			return nil, err
		}
		check.Target = &rosterv1.HealthCheck_Http{Http: f.checkHTTP}
		targets++
	}
	if f.checkTCP != "" {
		if _, _, err := parseHostPort(f.checkTCP); err != nil {
			return nil, fmt.Errorf("--check-tcp: %w", err)
		}
		check.Target = &rosterv1.HealthCheck_Tcp{Tcp: f.checkTCP}
		targets++
	}
	if f.checkGRPC != "" {
		if _, _, err := parseHostPort(f.checkGRPC); err != nil {
			return nil, fmt.Errorf("--check-grpc: %w", err)
		}
		check.Target = &rosterv1.HealthCheck_Grpc{Grpc: f.checkGRPC}
		targets++
	}
	if targets > 1 {
		return nil, errors.New("give at most one of --check-http, --check-tcp and --check-grpc")
	}
	if targets == 0 {
		for _, name := range []string{"check-grpc-service", "check-interval", "check-timeout", "failures-before-critical", "successes-before-passing"} {
			if cmd.Flags().Changed(name) {
				return nil, fmt.Errorf("--%s needs --check-http, --check-tcp or --check-grpc", name)
			}
		}
		return nil, nil
	}
	if f.checkGRPCService != "" && f.checkGRPC == "" {
		return nil, errors.New("--check-grpc-service needs --check-grpc")
	}
	check.GrpcService = f.checkGRPCService
	if f.checkInterval > 0 {
		check.Interval = durationpb.New(f.checkInterval)
	}
	if f.checkTimeout > 0 {
		check.Timeout = durationpb.New(f.checkTimeout)
	}
	check.FailuresBeforeCritical = f.failuresBeforeCritical
	check.SuccessesBeforePassing = f.successesBeforePassing
	return &check, nil
}

func (a *app) printRegistered(inst *rosterv1.Instance, rev uint64) error {
	if a.json() {
		return writeJSON(a.stdout, revisionJSON{Revision: rev})
	}
	_, err := fmt.Fprintf(a.stdout, "registered %s at revision %d\n", key(inst.GetNamespace(), inst.GetService(), inst.GetId()), rev)
	return err
}

func (a *app) deregisterCommand() *cobra.Command {
	var namespace string
	cmd := &cobra.Command{
		Use:   "deregister SERVICE ID",
		Short: "Remove a service instance",
		Long: `deregister removes the instance ID of SERVICE. -o json prints {"revision": N}.
A call retried after a failure is applied at most once and reports the
revision of the first application.`,
		Example: `  roster deregister payments p1`,
		Args:    exactArgs("SERVICE", "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Deregister(ctx, &rosterv1.DeregisterRequest{Namespace: namespace, Service: args[0], Id: args[1]})
				if err != nil {
					return err
				}
				if a.json() {
					return writeJSON(a.stdout, revisionJSON{Revision: resp.GetRevision()})
				}
				_, err = fmt.Fprintf(a.stdout, "deregistered %s at revision %d\n", key(namespace, args[0], args[1]), resp.GetRevision())
				return err
			})
		},
	}
	cmd.Flags().StringVar(&namespace, "namespace", "default", "namespace of the service")
	return cmd
}

// heartbeatJSON is what heartbeat prints with -o json.
type heartbeatJSON struct {
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	ID        string `json:"id"`
	TTL       string `json:"ttl"`
}

func (a *app) heartbeatCommand() *cobra.Command {
	var namespace string
	cmd := &cobra.Command{
		Use:   "heartbeat SERVICE ID",
		Short: "Renew the TTL lease of an instance once",
		Long: `heartbeat renews the lease of an instance registered with --ttl.
-o json prints {"namespace": NS, "service": S, "id": ID, "ttl": "30s"}.`,
		Example: `  roster heartbeat payments p1`,
		Args:    exactArgs("SERVICE", "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Heartbeat(ctx, &rosterv1.HeartbeatRequest{Namespace: namespace, Service: args[0], Id: args[1]})
				if err != nil {
					return err
				}
				ttl := resp.GetTtl().AsDuration().String()
				if a.json() {
					return writeJSON(a.stdout, heartbeatJSON{Namespace: namespace, Service: args[0], ID: args[1], TTL: ttl})
				}
				_, err = fmt.Fprintf(a.stdout, "renewed %s for %s\n", key(namespace, args[0], args[1]), ttl)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&namespace, "namespace", "default", "namespace of the service")
	return cmd
}

// healthJSON is what health prints with -o json.
type healthJSON struct {
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	ID        string `json:"id"`
	Status    string `json:"status"`
	Revision  uint64 `json:"revision"`
	TTL       string `json:"ttl"`
}

func (a *app) healthCommand() *cobra.Command {
	var namespace, reason string
	cmd := &cobra.Command{
		Use:   "health SERVICE ID passing|warning|critical",
		Short: "Report a TTL instance's own health and renew its lease",
		Long: `health sets the status of an instance registered with --ttl, as the
instance itself judges it, and renews its lease like a heartbeat. A warning
instance stays listed but leaves healthy-only lookups; a critical one is
unhealthy until it reports passing again. Reporting the status it already
has writes nothing. -o json prints {"namespace", "service", "id", "status",
"revision", "ttl"}.`,
		Example: `  roster health payments p1 warning --reason "disk 91% full"
  roster health payments p1 passing`,
		Args: exactArgs("SERVICE", "ID", "passing|warning|critical"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var st rosterv1.HealthStatus
			switch args[2] {
			case "passing":
				st = rosterv1.HealthStatus_HEALTH_STATUS_PASSING
			case "warning":
				st = rosterv1.HealthStatus_HEALTH_STATUS_WARNING
			case "critical":
				st = rosterv1.HealthStatus_HEALTH_STATUS_CRITICAL
			default:
				return usagef("status %q: use passing, warning or critical", args[2])
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.ReportHealth(ctx, &rosterv1.ReportHealthRequest{
					Namespace: namespace, Service: args[0], Id: args[1], Status: st, Reason: reason,
				})
				if err != nil {
					return err
				}
				ttl := resp.GetTtl().AsDuration().String()
				if a.json() {
					return writeJSON(a.stdout, healthJSON{Namespace: namespace, Service: args[0], ID: args[1],
						Status: args[2], Revision: resp.GetRevision(), TTL: ttl})
				}
				_, err = fmt.Fprintf(a.stdout, "%s is %s (revision %d); lease renewed for %s\n",
					key(namespace, args[0], args[1]), args[2], resp.GetRevision(), ttl)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&namespace, "namespace", "default", "namespace of the service")
	cmd.Flags().StringVar(&reason, "reason", "", "why, kept as the instance's status reason when the status changes")
	return cmd
}

func (a *app) maintCommand() *cobra.Command {
	var namespace, reason string
	cmd := &cobra.Command{
		Use:   "maint SERVICE ID on|off",
		Short: "Put an instance into maintenance (drain it) or take it out",
		Long: `maint on drains an instance: it stays registered but is no longer healthy
for discovery. maint off returns it to service. -o json prints {"revision": N}.`,
		Example: `  roster maint payments p1 on --reason "kernel upgrade"
  roster maint payments p1 off`,
		Args: exactArgs("SERVICE", "ID", "on|off"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var enabled bool
			switch args[2] {
			case "on":
				enabled = false
			case "off":
				enabled = true
			default:
				return usagef("maint: third argument %q must be on or off", args[2])
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.SetMaintenance(ctx, &rosterv1.SetMaintenanceRequest{
					Namespace: namespace, Service: args[0], Id: args[1], Enabled: enabled, Reason: reason,
				})
				if err != nil {
					return err
				}
				if a.json() {
					return writeJSON(a.stdout, revisionJSON{Revision: resp.GetRevision()})
				}
				state := "drained"
				if enabled {
					state = "enabled"
				}
				_, err = fmt.Fprintf(a.stdout, "%s %s at revision %d\n", state, key(namespace, args[0], args[1]), resp.GetRevision())
				return err
			})
		},
	}
	cmd.Flags().StringVar(&namespace, "namespace", "default", "namespace of the service")
	cmd.Flags().StringVar(&reason, "reason", "", "why the instance is in maintenance")
	return cmd
}
