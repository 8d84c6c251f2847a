package register

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// Options are the flags of `controlplane register` and `deregister`.
type Options struct {
	Args
	// ConfigDir selects file mode: objects go to DIR/vm-NS-NAME.yaml.
	ConfigDir string
	// Kubeconfig is a kubeconfig path; empty means $KUBECONFIG, ~/.kube/config
	// or in-cluster config. Used when ConfigDir is empty.
	Kubeconfig string
	// Context is the kubeconfig context; empty means the current one.
	Context string
	Out     io.Writer // where changes are printed; default os.Stdout
	Logger  *slog.Logger
}

// Run is `controlplane register NAME IP PORT[:NAME[/PROTOCOL]]...`.
func Run(ctx context.Context, o Options) error {
	vm, err := Parse(o.Args)
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	w, err := o.writer()
	if err != nil {
		return err
	}
	changes, err := Register(ctx, w, vm)
	o.print(changes)
	if err != nil {
		return err
	}
	if vm.As == AsWorkloadEntry {
		fmt.Fprintf(o.out(), "WorkloadEntry %s/%s has labels %v: select them from a ServiceEntry workloadSelector or a Service selector\n",
			vm.Namespace, vm.Name, vm.workloadLabels())
	}
	return nil
}

// RunDeregister is `controlplane deregister NAME`: it removes what register wrote.
func RunDeregister(ctx context.Context, o Options) error {
	if len(o.Positional) != 1 {
		return fmt.Errorf("deregister: want NAME, got %d argument(s)", len(o.Positional))
	}
	ns := o.Namespace
	if ns == "" {
		ns = "default"
	}
	w, err := o.writer()
	if err != nil {
		return err
	}
	changes, err := Deregister(ctx, w, ns, o.Positional[0])
	o.print(changes)
	if err == nil && len(changes) == 0 {
		fmt.Fprintf(o.out(), "nothing registered as %s/%s\n", ns, o.Positional[0])
	}
	return err
}

func (o Options) writer() (Writer, error) {
	if o.ConfigDir != "" {
		return FileWriter{Dir: o.ConfigDir}, nil
	}
	w, err := NewKubeWriterFromKubeconfig(o.Kubeconfig, o.Context, o.Logger)
	if err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	return w, nil
}

func (o Options) out() io.Writer {
	if o.Out == nil {
		return os.Stdout
	}
	return o.Out
}

func (o Options) print(changes []Change) {
	for _, c := range changes {
		fmt.Fprintln(o.out(), c.String())
	}
}
