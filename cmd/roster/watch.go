package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/roster-registry/roster/client"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// watchLineJSON is one line of watch -o json.
type watchLineJSON struct {
	Type      string          `json:"type"`
	Revision  uint64          `json:"revision"`
	Namespace string          `json:"namespace"`
	Service   string          `json:"service"`
	ID        string          `json:"id"`
	Instance  *instanceJSON   `json:"instance,omitempty"`
	Instances *[]instanceJSON `json:"instances,omitempty"`
}

func (a *app) watchCommand() *cobra.Command {
	var (
		namespace string
		from      uint64
		healthy   bool
	)
	cmd := &cobra.Command{
		Use:   "watch [SERVICE]",
		Short: "Stream changes to a service or a whole namespace",
		Long: `watch prints changes to SERVICE (to every service of --namespace when
SERVICE is not given) until interrupted. Without --from-revision it starts
with the current state (a RESET), then prints each change; with
--from-revision N it prints every change after revision N. When a node fails
the watch moves to another one and resumes where it stopped: no change is
missed or printed twice.

watch fails when no node has answered within --timeout (the reset, or with
--from-revision a change or a bookmark, which it asks for often enough),
naming the last error. Once it has started it runs until interrupted: each
broken stream is printed on stderr ("watch stream to ADDR broken: ...;
reconnecting") and the watch goes on.

Table output prints one line per change (a RESET prints one line per
instance); progress bookmarks are not printed.

-o json prints one JSON object per line:
  {"type": "PUT", "revision", "namespace", "service", "id", "instance": {...}}
  {"type": "DELETE", "revision", "namespace", "service", "id"}
  {"type": "RESET", "revision", "namespace", "service", "id": "", "instances": [...]}
  {"type": "PROGRESS", "revision", "namespace", "service", "id": ""}
A RESET is a single line carrying the complete state at its revision (so an
empty state is visible too): replace what you have with its instances.
Instances have the fields of get -o json.`,
		Example: `  roster watch payments
  roster watch --namespace staging --from-revision 1200 -o json`,
		Args: rangeArgs(0, 1, "at most one argument, SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var service string
			if len(args) == 1 {
				service = args[0]
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			// Nothing printed needs an event's prev_instance.
			req := &rosterv1.WatchRequest{Namespace: namespace, Service: service, HealthyOnly: healthy, StartRevision: from, OmitPrevInstance: true}
			if from != 0 && a.timeout/2 < 5*time.Second {
				// Without a reset to start with, a quiet service's first
				// message is a bookmark (every 5s unless asked, at least
				// every 100ms): one must come within --timeout.
				req.ProgressInterval = durationpb.New(max(a.timeout/2, 100*time.Millisecond))
			}
			return a.watch(ctx, c, req)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&namespace, "namespace", "default", "namespace to watch")
	fl.Uint64Var(&from, "from-revision", 0, "print changes after this revision (0: start with the current state)")
	fl.BoolVar(&healthy, "healthy", false, "report instances leaving the healthy set as deletes")
	return cmd
}

// errNoAnswer ends a watch that no endpoint answered within --timeout.
var errNoAnswer = errors.New("no endpoint answered the watch")

// watch prints req's changes until ctx ends. It fails when no endpoint has
// answered (sent a first message) within --timeout; once one has, each
// failure the watch retries is printed on stderr and the watch goes on.
func (a *app) watch(ctx context.Context, c *client.Client, req *rosterv1.WatchRequest) error {
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu       sync.Mutex
		answered bool
		last     client.WatchRetry // the last failure before the first answer
	)
	timer := time.AfterFunc(a.timeout, func() {
		mu.Lock()
		defer mu.Unlock()
		if !answered {
			cancel(errNoAnswer)
		}
	})
	defer timer.Stop()
	onRetry := client.OnWatchRetry(func(r client.WatchRetry) {
		mu.Lock()
		up := answered
		mu.Unlock()
		if !up {
			last = r
			return
		}
		fmt.Fprintf(a.stderr, "watch stream to %s broken: %s; reconnecting\n", r.Endpoint, errorLine(r.Err))
	})
	for resp, err := range c.Watch(wctx, req, onRetry) {
		if err != nil {
			if errors.Is(context.Cause(wctx), errNoAnswer) && ctx.Err() == nil {
				if last.Err == nil {
					return fmt.Errorf("watch: no endpoint answered within %s", a.timeout)
				}
				return fmt.Errorf("watch: no endpoint answered within %s; the last error: %s: %s", a.timeout, last.Endpoint, errorLine(last.Err))
			}
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		mu.Lock()
		answered = true
		mu.Unlock()
		if err := a.printWatch(req, resp); err != nil {
			return err
		}
	}
	return nil
}

// printWatch prints one watch response.
func (a *app) printWatch(req *rosterv1.WatchRequest, resp *rosterv1.WatchResponse) error {
	rev := resp.GetRevision()
	switch {
	case resp.GetReset_():
		if a.json() {
			instances := make([]instanceJSON, 0, len(resp.GetEvents()))
			for _, ev := range resp.GetEvents() {
				instances = append(instances, newInstanceJSON(ev.GetInstance()))
			}
			return writeJSON(a.stdout, watchLineJSON{Type: "RESET", Revision: rev, Namespace: req.GetNamespace(), Service: req.GetService(), Instances: &instances})
		}
		if len(resp.GetEvents()) == 0 {
			_, err := fmt.Fprintf(a.stdout, "%-8s %-8d (no instances)\n", "RESET", rev)
			return err
		}
		for _, ev := range resp.GetEvents() {
			if err := a.printEventLine("RESET", rev, ev.GetInstance()); err != nil {
				return err
			}
		}
		return nil
	case len(resp.GetEvents()) == 0:
		if a.json() && resp.GetProgress() {
			return writeJSON(a.stdout, watchLineJSON{Type: "PROGRESS", Revision: rev, Namespace: req.GetNamespace(), Service: req.GetService()})
		}
		return nil
	}
	for _, ev := range resp.GetEvents() {
		typ := "PUT"
		if ev.GetType() == rosterv1.Event_TYPE_DELETE {
			typ = "DELETE"
		}
		in := ev.GetInstance()
		if a.json() {
			line := watchLineJSON{Type: typ, Revision: ev.GetRevision(), Namespace: in.GetNamespace(), Service: in.GetService(), ID: in.GetId()}
			if typ == "PUT" {
				j := newInstanceJSON(in)
				line.Instance = &j
			}
			if err := writeJSON(a.stdout, line); err != nil {
				return err
			}
			continue
		}
		if err := a.printEventLine(typ, ev.GetRevision(), in); err != nil {
			return err
		}
	}
	return nil
}

// printEventLine prints one table line of watch.
func (a *app) printEventLine(typ string, rev uint64, in *rosterv1.Instance) error {
	name := key(in.GetNamespace(), in.GetService(), in.GetId())
	if typ == "DELETE" {
		_, err := fmt.Fprintf(a.stdout, "%-8s %-8d %s\n", typ, rev, name)
		return err
	}
	state := healthWord(in)
	if !in.GetEnabled() {
		state += ",drained"
	}
	_, err := fmt.Fprintf(a.stdout, "%-8s %-8d %s %s %s\n", typ, rev, name, endpoint(in), state)
	return err
}
