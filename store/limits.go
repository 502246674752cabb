package store

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-memdb"
)

// ErrLimitExceeded: a registration would add an instance beyond a service's
// or a namespace's instance-count limit. Nothing was changed.
var ErrLimitExceeded = errors.New("instance limit exceeded")

// InstanceLimits bound how many instances one service and one namespace may
// hold. A zero field is no limit.
type InstanceLimits struct {
	PerService   int
	PerNamespace int
}

// ServiceCount returns how many instances a service has.
func (v *View) ServiceCount(namespace, service string) int {
	raw, err := v.txn.First(tableServices, indexID, namespace, service)
	if err != nil || raw == nil {
		return 0
	}
	return raw.(*serviceRow).Count
}

// NamespaceCount returns how many instances a namespace has. It walks the
// namespace's services, not its instances.
func (v *View) NamespaceCount(namespace string) int {
	n, _ := namespaceCount(v.txn, namespace)
	return n
}

// CheckInstanceLimits returns ErrLimitExceeded when registering k, which
// this view does not hold yet, would exceed lim. The leader calls it before
// proposing a registration; the state machine checks again (RegisterWithin).
func (v *View) CheckInstanceLimits(k Key, lim InstanceLimits) error {
	if lim.PerService <= 0 && lim.PerNamespace <= 0 {
		return nil
	}
	if cur, err := instanceAt(v.txn, k, k); err != nil || cur != nil {
		return err
	}
	return checkLimits(k, lim, v.ServiceCount(k.Namespace, k.Service), func() (int, error) {
		return namespaceCount(v.txn, k.Namespace)
	})
}

// RegisterWithin is Register refusing, with ErrLimitExceeded and no change,
// a registration that adds an instance beyond lim. Re-registering an
// instance that exists is never refused.
func (w *WriteTxn) RegisterWithin(reg *Instance, now int64, lim InstanceLimits) (uint64, error) {
	return w.registerWithin(reg, now, lim, false)
}

// RegisterOwnedWithin is RegisterWithin for an instance the caller hands
// over, such as one just decoded from a command: reg, with its tags,
// metadata and check, may become the store's, so the caller must not use
// or change it afterwards. It saves RegisterWithin's copy.
func (w *WriteTxn) RegisterOwnedWithin(reg *Instance, now int64, lim InstanceLimits) (uint64, error) {
	return w.registerWithin(reg, now, lim, true)
}

func (w *WriteTxn) registerWithin(reg *Instance, now int64, lim InstanceLimits, owned bool) (uint64, error) {
	if lim.PerService > 0 || lim.PerNamespace > 0 {
		prev, err := w.instanceOf(reg)
		if err != nil {
			return 0, err
		}
		if prev == nil {
			svc := 0
			raw, err := w.txn.First(tableServices, indexID, reg.Namespace, reg.Service)
			if err != nil {
				return 0, fmt.Errorf("get service %s/%s: %w", reg.Namespace, reg.Service, err)
			}
			if raw != nil {
				svc = raw.(*serviceRow).Count
			}
			if err := checkLimits(reg.Key(), lim, svc, func() (int, error) {
				return namespaceCount(w.txn, reg.Namespace)
			}); err != nil {
				return 0, err
			}
		}
	}
	return w.register(reg, now, owned)
}

func checkLimits(k Key, lim InstanceLimits, svcCount int, nsCount func() (int, error)) error {
	if lim.PerService > 0 && svcCount >= lim.PerService {
		return fmt.Errorf("register %s: service %s/%s has %d instances, the limit per service is %d: %w",
			k, k.Namespace, k.Service, svcCount, lim.PerService, ErrLimitExceeded)
	}
	if lim.PerNamespace > 0 {
		n, err := nsCount()
		if err != nil {
			return err
		}
		if n >= lim.PerNamespace {
			return fmt.Errorf("register %s: namespace %s has %d instances, the limit per namespace is %d: %w",
				k, k.Namespace, n, lim.PerNamespace, ErrLimitExceeded)
		}
	}
	return nil
}

func namespaceCount(txn *memdb.Txn, namespace string) (int, error) {
	it, err := txn.Get(tableServices, indexIDPrefix, namespace)
	if err != nil {
		return 0, fmt.Errorf("list services of %s: %w", namespace, err)
	}
	n := 0
	for raw := it.Next(); raw != nil; raw = it.Next() {
		n += raw.(*serviceRow).Count
	}
	return n, nil
}
