package kube

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
)

// key names one object in the queue.
type key struct {
	Kind, Namespace, Name string
}

func (k key) String() string { return k.Kind + " " + k.Namespace + "/" + k.Name }

// handler only queues keys; workers do the rest.
func (s *Source) handler(kind string) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { s.enqueue(kind, obj) },
		UpdateFunc: func(old, obj any) {
			if sameVersion(old, obj) {
				return // a resync: nothing changed
			}
			s.enqueue(kind, obj)
		},
		DeleteFunc: func(obj any) { s.enqueue(kind, obj) },
	}
}

func sameVersion(old, obj any) bool {
	a, errA := meta.Accessor(old)
	b, errB := meta.Accessor(obj)
	return errA == nil && errB == nil && a.GetResourceVersion() == b.GetResourceVersion()
}

// enqueue queues obj's key; obj may be a tombstone.
func (s *Source) enqueue(kind string, obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		s.logger.Error("kube source: object without metadata", "kind", kind, "error", err)
		return
	}
	s.queue.Add(key{Kind: kind, Namespace: m.GetNamespace(), Name: m.GetName()})
}

func (s *Source) runWorker() {
	for s.processNext() {
	}
}

func (s *Source) processNext() bool {
	k, shutdown := s.queue.Get()
	if shutdown {
		return false
	}
	defer s.queue.Done(k)
	if err := s.sync(k); err != nil {
		s.logger.Error("kube source: sync failed, retrying", "object", k.String(), "error", err)
		s.queue.AddRateLimited(k)
		return true
	}
	s.queue.Forget(k)
	return true
}

// sync writes the cached state of one object to the store: an upsert if the
// informer has it, a delete if not.
func (s *Source) sync(k key) error {
	kd := s.kinds[k.Kind]
	if kd == nil || !kd.toStore {
		return nil
	}
	inf := kd.informerFor(k.Namespace)
	if inf == nil {
		return nil // not a watched namespace
	}
	cacheKey := k.Name
	if k.Namespace != "" {
		cacheKey = k.Namespace + "/" + k.Name
	}
	item, exists, err := inf.GetIndexer().GetByKey(cacheKey)
	if err != nil {
		return fmt.Errorf("read %s from cache: %w", k, err)
	}
	if !exists {
		s.cfg.Store.Delete(Origin, k.Kind, k.Namespace, k.Name)
		s.forget(k)
		s.metrics.writes.WithLabelValues(k.Kind, "delete").Inc()
		return nil
	}
	obj, ok := item.(runtime.Object)
	if !ok {
		return fmt.Errorf("%s: cache holds %T", k, item)
	}
	s.metrics.writes.WithLabelValues(k.Kind, "upsert").Inc()
	s.report(k, obj, s.cfg.Store.Upsert(Origin, obj))
	return nil
}
