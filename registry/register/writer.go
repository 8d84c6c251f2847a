package register

import (
	"context"
	"fmt"
)

// Action says what a write did to one object.
type Action string

// Actions.
const (
	Created   Action = "created"
	Updated   Action = "updated"
	Unchanged Action = "unchanged"
	Deleted   Action = "deleted"
	// Skipped is an object with the VM's name that register did not make;
	// it is left alone.
	Skipped Action = "skipped"
)

// Change is what happened to one object.
type Change struct {
	Kind      string
	Namespace string
	Name      string
	Action    Action
	Where     string // file path, or "" for Kubernetes
}

func (c Change) String() string {
	s := fmt.Sprintf("%s %s/%s %s", c.Kind, c.Namespace, c.Name, c.Action)
	if c.Where != "" {
		s += " (" + c.Where + ")"
	}
	return s
}

// Writer stores a VM's objects. Write makes the stored objects for the VM
// exactly objs (idempotent: an equal object is left unchanged); Remove
// deletes everything register stored for the VM.
type Writer interface {
	Write(ctx context.Context, namespace, name string, objs []Object) ([]Change, error)
	Remove(ctx context.Context, namespace, name string) ([]Change, error)
}

// Register builds the VM's objects and writes them.
func Register(ctx context.Context, w Writer, vm *VM) ([]Change, error) {
	if err := vm.Validate(); err != nil {
		return nil, err
	}
	changes, err := w.Write(ctx, vm.Namespace, vm.Name, Build(vm))
	if err != nil {
		return changes, fmt.Errorf("register %s/%s: %w", vm.Namespace, vm.Name, err)
	}
	return changes, nil
}

// Deregister removes the VM's objects.
func Deregister(ctx context.Context, w Writer, namespace, name string) ([]Change, error) {
	changes, err := w.Remove(ctx, namespace, name)
	if err != nil {
		return changes, fmt.Errorf("deregister %s/%s: %w", namespace, name, err)
	}
	return changes, nil
}
