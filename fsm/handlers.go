package fsm

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	raftcmdv1 "github.com/roster-registry/roster/proto/raftcmd/v1"
	"github.com/roster-registry/roster/store"
)

// ErrMalformedCommand marks a log entry holding a command that does not
// decode, or decodes to nonsense (a register without an instance): the
// entry is rejected whole and changes nothing.
var ErrMalformedCommand = errors.New("malformed command")

// errDecode is ErrMalformedCommand, as the handlers say it.
var errDecode = ErrMalformedCommand

// handler applies one decoded command in the entry's transaction and returns
// the affected instance's revision.
type handler func(w *store.WriteTxn, payload []byte) (uint64, error)

// handlers is the command table. Add a type here and in CommandType; never
// change what an existing type means.
var handlers = map[CommandType]handler{
	RegisterType: typed(func(w *store.WriteTxn, c *raftcmdv1.Register) (uint64, error) {
		if i := c.GetInstance(); i.GetNamespace() == "" || i.GetService() == "" || i.GetId() == "" {
			return 0, fmt.Errorf("%w: register without namespace, service or id", errDecode)
		}
		lim := store.InstanceLimits{PerService: int(c.GetLimits().GetPerService()), PerNamespace: int(c.GetLimits().GetPerNamespace())}
		// The instance is built from the command, decoded for this call
		// alone: the store may keep it without a copy.
		return w.RegisterOwnedWithin(store.InstanceFromRecord(c.Instance), c.NowUnixNs, lim)
	}),
	DeregisterType: typed(func(w *store.WriteTxn, c *raftcmdv1.Deregister) (uint64, error) {
		return w.Deregister(store.Key{Namespace: c.Namespace, Service: c.Service, ID: c.Id})
	}),
	SetHealthType: typed(func(w *store.WriteTxn, c *raftcmdv1.SetHealth) (uint64, error) {
		k := store.Key{Namespace: c.Namespace, Service: c.Service, ID: c.Id}
		return w.SetHealth(k, c.RegistrationRevision, store.HealthOf(c.Status), c.Reason, c.NowUnixNs)
	}),
	ReapType: typed(func(w *store.WriteTxn, c *raftcmdv1.Reap) (uint64, error) {
		return w.Reap(store.Key{Namespace: c.Namespace, Service: c.Service, ID: c.Id}, c.RegistrationRevision)
	}),
	SetMaintenanceType: typed(func(w *store.WriteTxn, c *raftcmdv1.SetMaintenance) (uint64, error) {
		k := store.Key{Namespace: c.Namespace, Service: c.Service, ID: c.Id}
		return w.SetMaintenance(k, c.Enabled, c.Reason)
	}),
	UpsertMemberType: typed(func(w *store.WriteTxn, c *raftcmdv1.UpsertMember) (uint64, error) {
		m := c.GetMember()
		if m.GetNodeId() == "" {
			return 0, fmt.Errorf("%w: member without node id", errDecode)
		}
		return 0, w.UpsertMember(&store.Member{NodeID: m.NodeId, RaftAddr: m.RaftAddr, APIAddr: m.ApiAddr, JoinedToVote: m.JoinedToVote})
	}),
	RemoveMemberType: typed(func(w *store.WriteTxn, c *raftcmdv1.RemoveMember) (uint64, error) {
		return 0, w.RemoveMember(c.NodeId)
	}),
	SelfPreservationType: typed(applySelfPreservation),
	ACLSetTokenType: typed(func(w *store.WriteTxn, c *raftcmdv1.ACLSetToken) (uint64, error) {
		t := c.GetToken()
		if t.GetAccessorId() == "" || len(t.GetSecretSha256()) == 0 {
			return 0, fmt.Errorf("%w: token without accessor id or secret digest", errDecode)
		}
		return 0, w.SetToken(store.TokenFromRecord(t), c.Bootstrap)
	}),
	ACLDeleteTokenType: typed(func(w *store.WriteTxn, c *raftcmdv1.ACLDeleteToken) (uint64, error) {
		return 0, w.DeleteToken(c.AccessorId)
	}),
}

// applySelfPreservation applies a settings change or a hold mark.
func applySelfPreservation(w *store.WriteTxn, c *raftcmdv1.SelfPreservation) (uint64, error) {
	switch ch := c.Change.(type) {
	case *raftcmdv1.SelfPreservation_Settings:
		set := store.SelfPreservationSettings{}
		if ch.Settings.GetSet() != nil {
			set = store.SelfPreservationSettingsFromRecord(ch.Settings.Set)
		}
		return 0, w.ChangeSelfPreservation(ch.Settings.GetReset_(), set)
	case *raftcmdv1.SelfPreservation_Hold:
		h := ch.Hold
		k := store.Key{Namespace: h.Namespace, Service: h.Service, ID: h.Id}
		return w.SetHeld(k, h.RegistrationRevision, h.HeldSinceUnixNs, h.Reason)
	default:
		return 0, fmt.Errorf("%w: self-preservation command without a change", errDecode)
	}
}

// typed adapts a function of a decoded message to a handler.
func typed[M any, PM interface {
	*M
	proto.Message
}](fn func(*store.WriteTxn, PM) (uint64, error)) handler {
	return func(w *store.WriteTxn, payload []byte) (uint64, error) {
		var m M
		pm := PM(&m)
		if err := proto.Unmarshal(payload, pm); err != nil {
			return 0, fmt.Errorf("%w %T: %v", errDecode, pm, err)
		}
		return fn(w, pm)
	}
}
