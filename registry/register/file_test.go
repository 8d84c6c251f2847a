package register

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	netv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/librarymesh/controlplane/meshname"
)

func postgresArgs(as string) Args {
	return Args{
		Positional: []string{"postgres-1-vm", "127.0.0.1", "5432:tcp/TCP", "9090:http-metrics"},
		Namespace:  "default", ServiceAccount: "postgres", Labels: "version=v1", As: as,
	}
}

func mustParse(t *testing.T, a Args) *VM {
	t.Helper()
	vm, err := Parse(a)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

func actions(cs []Change) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.Kind+":"+string(c.Action))
	}
	return strings.Join(s, ",")
}

func TestFileWriterRoundTrip(t *testing.T) {
	cases := []struct {
		as    string
		kinds string
	}{
		{"serviceentry", "Service:created,ServiceEntry:created"},
		{"service", "Service:created,EndpointSlice:created"},
		{"workloadentry", "WorkloadEntry:created"},
	}
	for _, tc := range cases {
		t.Run(tc.as, func(t *testing.T) {
			ctx := context.Background()
			w := FileWriter{Dir: t.TempDir()}
			vm := mustParse(t, postgresArgs(tc.as))
			cs, err := Register(ctx, w, vm)
			if err != nil {
				t.Fatal(err)
			}
			if got := actions(cs); got != tc.kinds {
				t.Errorf("first run = %s, want %s", got, tc.kinds)
			}
			path := w.Path("default", "postgres-1-vm")
			before := statFile(t, path)
			cs, err = Register(ctx, w, vm)
			if err != nil {
				t.Fatal(err)
			}
			if got := actions(cs); got != strings.ReplaceAll(tc.kinds, "created", "unchanged") {
				t.Errorf("second run = %s, want all unchanged", got)
			}
			if after := statFile(t, path); !after.ModTime().Equal(before.ModTime()) {
				t.Error("second run rewrote the file")
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := UnmarshalYAML(data)
			if err != nil {
				t.Fatalf("%v\n%s", err, data)
			}
			checkObjects(t, objs, "127.0.0.1")
		})
	}
}

func statFile(t *testing.T, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// checkObjects checks the fields a file-mode server reads.
func checkObjects(t *testing.T, objs []Object, ip string) {
	t.Helper()
	for _, o := range objs {
		if o.GetLabels()[ManagedByLabel] != ManagedByValue {
			t.Errorf("%s has no managed-by label", o.GetName())
		}
		switch o := o.(type) {
		case *corev1.Service:
			if len(o.Spec.Selector) != 0 || len(o.Spec.Ports) != 2 || o.Spec.Ports[0].Port != 5432 || o.Spec.Ports[0].Name != "tcp" {
				t.Errorf("Service spec = %+v", o.Spec)
			}
		case *discoveryv1.EndpointSlice:
			if o.Labels[discoveryv1.LabelServiceName] != "postgres-1-vm" || o.Endpoints[0].Addresses[0] != ip {
				t.Errorf("EndpointSlice = %+v", o)
			}
		case *netv1.ServiceEntry:
			s := &o.Spec
			if s.GetHosts()[0] != "postgres-1-vm."+o.Namespace+".svc.cluster.local" || s.GetLocation().String() != "MESH_INTERNAL" ||
				s.GetResolution().String() != "STATIC" || s.GetEndpoints()[0].GetAddress() != ip ||
				s.GetEndpoints()[0].GetServiceAccount() != "postgres" || s.GetEndpoints()[0].GetLabels()["version"] != "v1" ||
				s.GetEndpoints()[0].GetLabels()[meshname.TLSModeLabel] != meshname.TLSModeIstio ||
				s.GetPorts()[1].GetProtocol() != "HTTP" {
				t.Errorf("ServiceEntry spec = %v", s)
			}
		case *netv1.WorkloadEntry:
			if o.Spec.GetAddress() != ip || o.Spec.GetServiceAccount() != "postgres" || o.Spec.GetLabels()["app"] != "postgres-1-vm" ||
				o.Spec.GetLabels()[meshname.TLSModeLabel] != meshname.TLSModeIstio {
				t.Errorf("WorkloadEntry spec = %v", &o.Spec)
			}
		default:
			t.Errorf("unexpected %T", o)
		}
	}
}

func TestFileWriterIPChangeAndDeregister(t *testing.T) {
	ctx := context.Background()
	w := FileWriter{Dir: t.TempDir()}
	vm := mustParse(t, postgresArgs("serviceentry"))
	if _, err := Register(ctx, w, vm); err != nil {
		t.Fatal(err)
	}
	vm.IP = "127.0.0.2"
	cs, err := Register(ctx, w, vm)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(cs); got != "Service:updated,ServiceEntry:updated" {
		t.Errorf("IP change = %s", got)
	}
	data, _ := os.ReadFile(w.Path("default", "postgres-1-vm"))
	objs, err := UnmarshalYAML(data)
	if err != nil {
		t.Fatal(err)
	}
	checkObjects(t, objs, "127.0.0.2")
	cs, err = Deregister(ctx, w, "default", "postgres-1-vm")
	if err != nil || actions(cs) != "Service:deleted,ServiceEntry:deleted" {
		t.Fatalf("deregister = %v, %v", cs, err)
	}
	entries, _ := os.ReadDir(w.Dir)
	if len(entries) != 0 {
		t.Errorf("folder not empty after deregister: %v", entries)
	}
	if cs, err := Deregister(ctx, w, "default", "postgres-1-vm"); err != nil || len(cs) != 0 {
		t.Errorf("second deregister = %v, %v; want nothing", cs, err)
	}
}

func TestParseErrorsWriteNothing(t *testing.T) {
	cases := map[string]struct {
		mod  func(*Args)
		want string
	}{
		"bad IP":            {func(a *Args) { a.Positional[1] = "10.0.0.300" }, "not an IP address"},
		"port too big":      {func(a *Args) { a.Positional[2] = "70000" }, "out of range"},
		"port zero":         {func(a *Args) { a.Positional[2] = "0:tcp" }, "out of range"},
		"port not number":   {func(a *Args) { a.Positional[2] = "pg:tcp" }, "not a number"},
		"unknown protocol":  {func(a *Args) { a.Positional[2] = "5432:tcp/SQL" }, "unknown protocol"},
		"bad name":          {func(a *Args) { a.Positional[0] = "Postgres_VM" }, "not a DNS label"},
		"bad namespace":     {func(a *Args) { a.Namespace = "a.b" }, "not a DNS label"},
		"no SA":             {func(a *Args) { a.ServiceAccount = "" }, "service account is empty"},
		"bad shape":         {func(a *Args) { a.As = "pod" }, "want serviceentry"},
		"bad label":         {func(a *Args) { a.Labels = "version" }, "not KEY=VALUE"},
		"dup port":          {func(a *Args) { a.Positional[3] = "5432:other" }, "listed twice"},
		"bad port name":     {func(a *Args) { a.Positional[2] = "5432:TCP_x" }, "not a valid port name"},
		"no ports":          {func(a *Args) { a.Positional = a.Positional[:2] }, "want NAME IP PORT"},
		"bad locality":      {func(a *Args) { a.Locality = "region1//rack" }, "want region, region/zone"},
		"wildcard locality": {func(a *Args) { a.Locality = "region1/*" }, "no wildcard"},
		"service locality":  {func(a *Args) { a.As, a.Locality = "service", "region1" }, "cannot carry a locality"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			a := postgresArgs("")
			tc.mod(&a)
			err := Run(context.Background(), Options{Args: a, ConfigDir: dir})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("wrote %v", entries)
			}
		})
	}
}

func TestParsePortDefaults(t *testing.T) {
	cases := map[string]Port{
		"5432":             {5432, "tcp", "TCP"},
		"8080:http-api":    {8080, "http-api", "HTTP"},
		"9000:grpc":        {9000, "grpc", "GRPC"},
		"5432:tcp/TCP":     {5432, "tcp", "TCP"},
		"443:/tls":         {443, "tls", "TLS"},
		"6379:cache/redis": {6379, "cache", "REDIS"},
	}
	for in, want := range cases {
		got, err := ParsePort(in)
		if err != nil || got != want {
			t.Errorf("ParsePort(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
}

func TestMarshalYAMLShape(t *testing.T) {
	data, err := MarshalYAML(Build(mustParse(t, postgresArgs(""))))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: ServiceEntry", "location: MESH_INTERNAL", "resolution: STATIC", "apiVersion: networking.istio.io/v1"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("YAML lacks %q:\n%s", want, data)
		}
	}
	if strings.Contains(string(data), "status") || strings.Contains(string(data), "creationTimestamp") {
		t.Errorf("YAML has server fields:\n%s", data)
	}
	_ = filepath.Join
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
