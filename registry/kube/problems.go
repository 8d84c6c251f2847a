package kube

import (
	"github.com/prometheus/client_golang/prometheus"
	istioscheme "istio.io/client-go/pkg/clientset/versioned/scheme"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	kubescheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/librarymesh/controlplane/registry"
)

// Component is the Event source component.
const Component = "controlplane"

type metrics struct {
	problems *prometheus.CounterVec // kind, reason
	writes   *prometheus.CounterVec // kind, op
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		problems: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "controlplane", Name: "kube_object_problems_total",
			Help: "Problems found in Kubernetes objects (each also an Event), by kind and reason.",
		}, []string{"kind", "reason"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "controlplane", Name: "kube_store_writes_total",
			Help: "Writes of Kubernetes objects to the registry, by kind and op (upsert, delete).",
		}, []string{"kind", "op"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.problems, m.writes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// newRecorder records Events through the API as Component. The scheme
// knows the Istio types, so Events can refer to them.
func newRecorder(kube kubernetes.Interface) (record.EventRecorder, func()) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{kubescheme.AddToScheme, istioscheme.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err) // static registrations; cannot fail
		}
	}
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	return b.NewRecorder(scheme, corev1.EventSource{Component: Component}), b.Shutdown
}

// report turns the store's problems with obj into Warning Events, log
// lines and metrics, once per version of the object.
func (s *Source) report(k key, obj runtime.Object, ps []registry.Problem) {
	if !s.firstReport(k, obj, len(ps) > 0) {
		return
	}
	for _, p := range ps {
		msg := p.Message
		if p.Field != "" {
			msg = p.Field + ": " + p.Message
		}
		s.logger.Warn("kube source: Warning Event for unusable object", "object", k.String(), "field", p.Field,
			"reason", p.Reason, "error", p.Message)
		s.metrics.problems.WithLabelValues(k.Kind, p.Reason).Inc()
		s.events.Event(obj, corev1.EventTypeWarning, p.Reason, msg)
	}
}

// firstReport remembers which version of each object had problems, so that
// writing the same version again (the initial sync, a relist after an
// outage) does not repeat its Events.
func (s *Source) firstReport(k key, obj runtime.Object, hasProblems bool) bool {
	s.reportedMu.Lock()
	defer s.reportedMu.Unlock()
	if !hasProblems {
		delete(s.reported, k)
		return false
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return true
	}
	if s.reported[k] == m.GetResourceVersion() {
		return false
	}
	s.reported[k] = m.GetResourceVersion()
	return true
}

// forget drops what firstReport remembers of a deleted object.
func (s *Source) forget(k key) {
	s.reportedMu.Lock()
	defer s.reportedMu.Unlock()
	delete(s.reported, k)
}
