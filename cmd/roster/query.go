package main

import (
	"context"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/roster-registry/roster/client"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// getJSON is what get prints with -o json.
type getJSON struct {
	Revision  uint64         `json:"revision"`
	Instances []instanceJSON `json:"instances"`
}

func (a *app) getCommand() *cobra.Command {
	var (
		namespace   string
		consistency string
		minRevision uint64
		healthy     bool
		tags        []string
		zone        string
	)
	cmd := &cobra.Command{
		Use:   "get SERVICE",
		Short: "List the instances of a service",
		Long: `get lists the instances of SERVICE, filtered by --healthy, --tag and --zone.

--consistency linearizable (the default) never returns stale data; stale
answers from the serving node's own state. --min-revision N waits until the
serving node has applied revision N (read your own writes).

STATUS reads "passing,held" for an instance that stopped heartbeating while
self-preservation holds its lease expiry; its status_reason says since when
and until when at the latest.

-o json prints {"revision": N, "instances": [{"namespace", "service", "id",
"address", "port", "tags", "metadata", "weight", "zone", "status",
"status_reason", "enabled", "create_revision", "mod_revision"}]} where status
is passing, warning or critical ("unknown" before the first check).`,
		Example: `  roster get payments
  roster get payments --healthy --tag v2 --zone eu-1 -o json
  roster get payments --consistency stale --min-revision 42`,
		Args: exactArgs("SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var level rosterv1.Consistency
			switch consistency {
			case "linearizable":
				level = rosterv1.Consistency_CONSISTENCY_LINEARIZABLE
			case "stale":
				level = rosterv1.Consistency_CONSISTENCY_STALE
			default:
				return usagef("--consistency %q: must be linearizable or stale", consistency)
			}
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.GetService(ctx, &rosterv1.GetServiceRequest{
					Namespace:   namespace,
					Service:     args[0],
					Read:        &rosterv1.ReadOptions{Consistency: level, MinRevision: minRevision},
					HealthyOnly: healthy,
					Tags:        tags,
					Zone:        zone,
				})
				if err != nil {
					return err
				}
				if a.json() {
					return writeJSON(a.stdout, getJSON{Revision: resp.GetHeader().GetRevision(), Instances: instancesJSON(resp.GetInstances())})
				}
				return a.instanceTable(resp.GetInstances())
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&namespace, "namespace", "default", "namespace of the service")
	fl.StringVar(&consistency, "consistency", "linearizable", "linearizable or stale")
	fl.Uint64Var(&minRevision, "min-revision", 0, "wait until the serving node has applied this revision")
	fl.BoolVar(&healthy, "healthy", false, "only passing instances not in maintenance")
	fl.StringArrayVar(&tags, "tag", nil, "only instances with this tag (repeatable: all of them)")
	fl.StringVar(&zone, "zone", "", "only instances in this zone")
	return cmd
}

func (a *app) instanceTable(ins []*rosterv1.Instance) error {
	t := newTable(a.stdout, "NAMESPACE", "SERVICE", "ID", "ADDRESS", "STATUS", "ENABLED", "WEIGHT", "ZONE", "TAGS", "REVISION")
	for _, in := range ins {
		t.row(in.GetNamespace(), in.GetService(), in.GetId(), endpoint(in), healthWord(in),
			strconv.FormatBool(in.GetEnabled()), strconv.FormatUint(uint64(in.GetWeight()), 10),
			orDash(in.GetZone()), orDash(strings.Join(in.GetTags(), ",")), strconv.FormatUint(in.GetModRevision(), 10))
	}
	return t.flush()
}

// servicesJSON is what services prints with -o json.
type servicesJSON struct {
	Revision uint64        `json:"revision"`
	Services []serviceJSON `json:"services"`
}

type serviceJSON struct {
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Instances uint32 `json:"instances"`
	Passing   uint32 `json:"passing"`
}

func (a *app) servicesCommand() *cobra.Command {
	var namespace string
	cmd := &cobra.Command{
		Use:   "services",
		Short: "List services with their instance counts",
		Long: `services lists every service of --namespace (of every namespace when it is
not given) with its number of instances and of passing ones.

-o json prints {"revision": N, "services": [{"namespace", "service",
"instances", "passing"}]}.`,
		Example: `  roster services
  roster services --namespace staging -o json`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.ListServices(ctx, &rosterv1.ListServicesRequest{Namespace: namespace})
				if err != nil {
					return err
				}
				if a.json() {
					out := servicesJSON{Revision: resp.GetHeader().GetRevision(), Services: []serviceJSON{}}
					for _, s := range resp.GetServices() {
						out.Services = append(out.Services, serviceJSON{
							Namespace: s.GetNamespace(), Service: s.GetService(), Instances: s.GetInstances(), Passing: s.GetPassing(),
						})
					}
					return writeJSON(a.stdout, out)
				}
				t := newTable(a.stdout, "NAMESPACE", "SERVICE", "INSTANCES", "PASSING")
				for _, s := range resp.GetServices() {
					t.row(s.GetNamespace(), s.GetService(),
						strconv.FormatUint(uint64(s.GetInstances()), 10), strconv.FormatUint(uint64(s.GetPassing()), 10))
				}
				return t.flush()
			})
		},
	}
	cmd.Flags().StringVar(&namespace, "namespace", "", "namespace to list (default: every namespace)")
	return cmd
}
