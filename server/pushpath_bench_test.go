package server

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/librarymesh/controlplane/internal/loadtest"
	"github.com/librarymesh/controlplane/registry"
	"github.com/librarymesh/controlplane/registry/yamldir"
	"github.com/librarymesh/controlplane/snapshot"
)

// edsLists returns ClusterLoadAssignment lists of n and n+1 services (the
// second has one new service), as a sidecar's shared EDS part before and
// after a service is added.
func edsLists(n int) (before, after []types.Resource, added string) {
	for i := range n + 1 {
		name := fmt.Sprintf("outbound|8080||svc-%04d.default.svc.cluster.local", i)
		cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
		if i < n {
			before = append(before, cla)
		}
		after = append(after, cla)
		added = name
	}
	return before, after, added
}

// BenchmarkDeltaSubscribeNewService is one delta sidecar's share of a new
// service's EDS: the stream holds the endpoints of 1000 services, takes in
// the subscription to the new one and sends what it lacks. A thousand
// sidecars each do this once per new service.
func BenchmarkDeltaSubscribeNewService(b *testing.B) {
	m, err := newMetrics(nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	a := newADS(slog.New(slog.DiscardHandler), m, func(float64) {})
	h := newHasher()
	before, after, added := edsLists(1000)
	ts := func(list []types.Resource) *typeSnapshot {
		tr, err := h.list(list)
		if err != nil {
			b.Fatal(err)
		}
		s, err := h.pair(tr, emptyType)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	old, cur := ts(before), ts(after)
	var names []string
	for _, r := range before {
		names = append(names, r.(*endpointv3.ClusterLoadAssignment).GetClusterName())
	}
	set := a.subs.of(names)
	var keep *nameSet // the sets every proxy shares stay interned
	snap := &nodeSnapshot{}
	snap.types[typeIndex(resourcev3.EndpointType)] = cur
	sent := 0
	b.ReportAllocs()
	for b.Loop() {
		c := a.newConn(&snapshot.Proxy{ID: "sidecar~10.0.0.1~app.default~default.svc.cluster.local"}, nil, true, nil)
		c.snap = snap
		s := &xdsStream{a: a, delta: true, c: c, send: func(any) error { sent++; return nil }}
		t := &typeState{index: int32(typeIndex(resourcev3.EndpointType)), requested: true,
			sub: subscription{set: set}, held: old, heldSub: subscription{set: set}}
		s.handleDelta(t, &request{typeURL: resourcev3.EndpointType, subscribe: []string{added}})
		if err := s.flushDelta(t, cur); err != nil {
			b.Fatal(err)
		}
		if t.pending == nil || t.sub.set.len() != 1001 {
			b.Fatalf("the new service's endpoints were not sent (subscribed to %d)", t.sub.set.len())
		}
		keep = t.sub.set
	}
	_ = keep
	if sent == 0 {
		b.Fatal("nothing sent")
	}
}

// BenchmarkRebuildEndpointChange is the registry update and the push
// loop's work for one endpoint change with 1000 services and 1000
// sidecars, each at the address of one of their endpoints (so with
// inbound config of its own): every sidecar reaches the changed service,
// so each gets a new snapshot.
func BenchmarkRebuildEndpointChange(b *testing.B) {
	const services = 1000
	store := meshStore(b, services)
	s, err := New(Config{GRPCAddr: "127.0.0.1:0", Registry: store})
	if err != nil {
		b.Fatal(err)
	}
	for i := range services {
		// The first pod of svc-i (see endpointSlice).
		n := node(fmt.Sprintf("sidecar~10.10.%d.%d~pod-%d.default~default.svc.cluster.local", i/250, i%250, i))
		px, err := snapshot.ParseProxy(n)
		if err != nil {
			b.Fatal(err)
		}
		s.pusher.connect(s.ads.newConn(px, nil, false, nil))
	}
	gen := 0
	b.ReportAllocs()
	for b.Loop() {
		gen++
		store.Upsert("bench", endpointSlice("svc-7", 7, gen%2+1))
		if _, changed := s.pusher.rebuild(time.Now()); changed != services {
			b.Fatalf("%d of %d sidecars got a new snapshot", changed, services)
		}
	}
}

// BenchmarkRebuildEndpointChangeScenarioS is the push loop's work for the
// load test's endpoint change at scenario S: its YAML folder (1000 services
// under mesh-wide mTLS, Services with Pods and ServiceEntries with VMs) and
// its 800 pod and 200 VM sidecars, all on delta ADS, and a pod of svc-3
// moving to a new address, as the load test moves it (the file rewritten,
// here applied to the store as the folder source applies it). Every sidecar
// reaches svc-3, so each is rebuilt. BenchmarkRebuildEndpointChange, with
// its simpler mesh, measures a third of this.
func BenchmarkRebuildEndpointChangeScenarioS(b *testing.B) {
	dir := b.TempDir()
	specs, err := loadtest.WriteForBench(dir)
	if err != nil {
		b.Fatal(err)
	}
	store := registry.NewStore(nil)
	if ps := yamldir.Load(dir, store); len(ps) > 0 {
		b.Fatal(ps)
	}
	path := filepath.Join(dir, "svc-3.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	const from, to = "10.11.0.4", "10.200.0.1" // svc-3's pod 3 (see the file)
	if !strings.Contains(string(data), from) {
		b.Fatalf("%s does not hold %s:\n%s", path, from, data)
	}
	versions := [2][]runtime.Object{decodeObjects(b, string(data)), decodeObjects(b, strings.ReplaceAll(string(data), from, to))}
	s, err := New(Config{GRPCAddr: "127.0.0.1:0", Registry: store})
	if err != nil {
		b.Fatal(err)
	}
	for _, sp := range specs {
		px, err := snapshot.ParseProxy(sp.Node)
		if err != nil {
			b.Fatal(err)
		}
		s.pusher.connect(s.ads.newConn(px, nil, true, nil))
	}
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		n++
		if ps := store.ReplaceOrigin(path, versions[n%2]); len(ps) > 0 {
			b.Fatal(ps)
		}
		if _, changed := s.pusher.rebuild(time.Now()); changed != len(specs) {
			b.Fatalf("%d of %d sidecars got a new snapshot", changed, len(specs))
		}
	}
}

// decodeObjects decodes the Services, EndpointSlices and Pods of a YAML
// file of the load test's mesh.
func decodeObjects(b *testing.B, data string) []runtime.Object {
	var out []runtime.Object
	for _, doc := range strings.Split(data, "\n---\n") {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			b.Fatal(err)
		}
		var obj runtime.Object
		switch tm.Kind {
		case "Service":
			obj = &corev1.Service{}
		case "EndpointSlice":
			obj = &discoveryv1.EndpointSlice{}
		case "Pod":
			obj = &corev1.Pod{}
		default:
			b.Fatalf("unexpected kind %q in:\n%s", tm.Kind, doc)
		}
		if err := yaml.Unmarshal([]byte(doc), obj); err != nil {
			b.Fatal(err)
		}
		out = append(out, obj)
	}
	return out
}

// BenchmarkRecentSamplesFull is recording one proxy's convergence time
// once the status page's samples are at their bound, as every ACK of a
// change does on a server that has pushed for a while.
func BenchmarkRecentSamplesFull(b *testing.B) {
	r := newRecentSamples(recentWindow, recentMax)
	for range recentMax {
		r.add(0.01)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.add(0.01)
	}
	if n := len(r.summary(time.Minute).Steps); n == 0 {
		b.Fatal("no steps")
	}
}

// BenchmarkRebuildNewService is the registry update and the push loop's
// work for a new service with 500 services and 1000 sidecars, each a pod
// of one of them (with inbound config of its own): every sidecar gets a
// new snapshot.
func BenchmarkRebuildNewService(b *testing.B) {
	const services, replicas = 500, 2
	store := meshStore(b, 0)
	var pods []*corev1.Pod
	for i := range services {
		name := fmt.Sprintf("svc-%d", i)
		store.Upsert("bench", &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: corev1.ServiceSpec{
				ClusterIP: fmt.Sprintf("10.96.%d.%d", i/250, i%250+1), Selector: map[string]string{"app": name},
				Ports: []corev1.ServicePort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}},
			},
		})
		for j := range replicas {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", name, j), Namespace: "default", Labels: map[string]string{"app": name}},
				Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.50.%d.%d", (i*replicas+j)/250, (i*replicas+j)%250+1)},
			}
			if ps := store.Upsert("bench", pod); len(ps) > 0 {
				b.Fatal(ps)
			}
			pods = append(pods, pod)
		}
	}
	s, err := New(Config{GRPCAddr: "127.0.0.1:0", Registry: store})
	if err != nil {
		b.Fatal(err)
	}
	own := 0
	for _, pod := range pods {
		n := node(fmt.Sprintf("sidecar~%s~%s.default~default.svc.cluster.local", pod.Status.PodIP, pod.Name))
		px, err := snapshot.ParseProxy(n)
		if err != nil {
			b.Fatal(err)
		}
		c := s.ads.newConn(px, nil, false, nil)
		s.pusher.connect(c)
		if c.snapshot().types[typeIndex(resourcev3.ListenerType)].own.names != nil {
			own++
		}
	}
	if own != len(pods) {
		b.Fatalf("%d of %d sidecars have inbound config of their own", own, len(pods))
	}
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		n++
		store.Upsert("bench", &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("new-%d", n), Namespace: "default"},
			Spec:       corev1.ServiceSpec{ClusterIP: fmt.Sprintf("10.97.%d.%d", n/250, n%250+1), Ports: []corev1.ServicePort{{Name: "tcp", Port: 5000}}},
		})
		if _, changed := s.pusher.rebuild(time.Now()); changed != len(pods) {
			b.Fatalf("%d of %d sidecars got a new snapshot", changed, len(pods))
		}
	}
}
