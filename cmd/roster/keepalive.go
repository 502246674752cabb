package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/roster-registry/roster/client"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// leaseJSON is one keepalive line with -o json.
type leaseJSON struct {
	Event    string `json:"event"`
	Instance string `json:"instance,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	Revision uint64 `json:"revision,omitempty"`
	Error    string `json:"error,omitempty"`
}

// keepAlive registers inst, renews its lease until SIGINT or SIGTERM (or
// the command's context ending), registering again whenever the lease is
// lost, then deregisters it.
func (a *app) keepAlive(cmd *cobra.Command, inst *rosterv1.Instance, ttl time.Duration) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := a.client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	register := func() (uint64, error) {
		rctx, cancel := context.WithTimeout(ctx, a.timeout)
		defer cancel()
		resp, err := c.Register(rctx, &rosterv1.RegisterRequest{Instance: inst})
		return resp.GetRevision(), err
	}
	rev, err := register()
	if err != nil {
		return err
	}
	if err := a.printRegistered(inst, rev); err != nil {
		return err
	}

	name := key(inst.GetNamespace(), inst.GetService(), inst.GetId())
	ik := client.InstanceKey{Namespace: inst.GetNamespace(), Service: inst.GetService(), ID: inst.GetId()}
	session, err := c.KeepAlive(ctx, ttl, ik)
	if err != nil {
		return err
	}
	defer session.Close()

	// retry fires when registering again after a lost lease failed.
	var retry <-chan time.Time
	reregister := func() {
		rev, err := register()
		if err != nil {
			a.leaseLine(leaseJSON{Event: "register_failed", Instance: name, Error: errorLine(err)},
				"registering %s again failed: %s; retrying", name, errorLine(err))
			retry = time.After(max(ttl/3, 100*time.Millisecond))
			return
		}
		retry = nil
		a.leaseLine(leaseJSON{Event: "registered", Instance: name, Revision: rev},
			"registered %s again at revision %d", name, rev)
	}
	for {
		select {
		case ev, ok := <-session.Events():
			if !ok {
				return a.shutdown(cmd, c, inst, name)
			}
			switch ev.Kind {
			case client.LeaseLost:
				a.leaseLine(leaseJSON{Event: "lease_lost", Instance: name, Error: errorLine(ev.Err)},
					"lease lost for %s: %s; registering again", name, errorLine(ev.Err))
				reregister()
			case client.LeaseRestored:
				a.leaseLine(leaseJSON{Event: "lease_reestablished", Instance: name},
					"lease re-established for %s", name)
			case client.StreamConnected:
				a.leaseLine(leaseJSON{Event: "connected", Endpoint: ev.Endpoint},
					"keepalive connected to %s", ev.Endpoint)
			case client.StreamBroken:
				a.leaseLine(leaseJSON{Event: "disconnected", Endpoint: ev.Endpoint, Error: errorLine(ev.Err)},
					"keepalive stream to %s broken: %s; reconnecting", ev.Endpoint, errorLine(ev.Err))
			}
		case <-retry:
			reregister()
		case <-ctx.Done():
			return a.shutdown(cmd, c, inst, name)
		}
	}
}

// shutdown deregisters inst when a keepalive ends.
func (a *app) shutdown(cmd *cobra.Command, c *client.Client, inst *rosterv1.Instance, name string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), a.timeout)
	defer cancel()
	resp, err := c.Deregister(ctx, &rosterv1.DeregisterRequest{Namespace: inst.GetNamespace(), Service: inst.GetService(), Id: inst.GetId()})
	switch {
	case status.Code(err) == codes.NotFound:
		// The lease was lost and not re-established, or someone else
		// removed it: nothing to remove, and the instance is gone as the
		// caller wants; say so rather than claim a deregistration.
		a.leaseLine(leaseJSON{Event: "already_gone", Instance: name, Error: errorLine(err)},
			"%s was already gone (its lease expired or it was deregistered elsewhere); nothing to deregister", name)
		return nil
	case err != nil:
		return err
	}
	a.leaseLine(leaseJSON{Event: "deregistered", Instance: name, Revision: resp.GetRevision()},
		"deregistered %s", name)
	return nil
}

// leaseLine prints one keepalive line: ev with -o json, else the text.
func (a *app) leaseLine(ev leaseJSON, format string, args ...any) {
	if a.json() {
		_ = writeJSON(a.stdout, ev)
		return
	}
	fmt.Fprintf(a.stdout, format+"\n", args...)
}
