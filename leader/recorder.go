package leader

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
)

// Recorder returns an EventRecorder that passes Events to next only while e
// leads, so that replicas seeing the same problem do not each record it.
func (e *Elector) Recorder(next record.EventRecorder) record.EventRecorder {
	return gatedRecorder{next: next, leading: e.IsLeader}
}

type gatedRecorder struct {
	next    record.EventRecorder
	leading func() bool
}

func (g gatedRecorder) Event(obj runtime.Object, eventtype, reason, message string) {
	if g.leading() {
		g.next.Event(obj, eventtype, reason, message)
	}
}

func (g gatedRecorder) Eventf(obj runtime.Object, eventtype, reason, messageFmt string, args ...any) {
	if g.leading() {
		g.next.Eventf(obj, eventtype, reason, messageFmt, args...)
	}
}

func (g gatedRecorder) AnnotatedEventf(obj runtime.Object, annotations map[string]string, eventtype, reason, messageFmt string, args ...any) {
	if g.leading() {
		g.next.AnnotatedEventf(obj, annotations, eventtype, reason, messageFmt, args...)
	}
}
