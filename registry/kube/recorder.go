package kube

import (
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
)

// NewEventRecorder is the recorder Start makes when Config.EventRecorder is
// nil (component "controlplane", a scheme that knows the Istio types), for
// callers that wrap it, e.g. to record only on the elected leader. Call the
// returned func to stop it.
func NewEventRecorder(client kubernetes.Interface) (record.EventRecorder, func()) {
	return newRecorder(client)
}
