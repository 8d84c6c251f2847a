package registry

import (
	"log/slog"
	"sync"
	"sync/atomic"

	memdb "github.com/hashicorp/go-memdb"
)

// Defaults for the Store options.
const (
	DefaultDomainSuffix = "cluster.local"
	DefaultTrustDomain  = "cluster.local"
	defaultChangeLog    = 1024
)

// Store is the mesh model. Sources write API objects into it (Upsert,
// Delete, ReplaceOrigin, Apply); readers take an immutable View. It is safe
// for concurrent writers and readers: writes are serialised and each
// effective write publishes a new View and a Change.
type Store struct {
	logger      *slog.Logger
	conv        converter
	trustDomain string
	changeLimit int
	db          *memdb.MemDB
	view        atomic.Pointer[view]

	mu       sync.Mutex // serialises writes; guards the fields below
	revision uint64
	problems map[string]map[ObjectKey][]Problem // origin -> object -> problems
	changes  []Change                           // the newest changes, oldest first
	dropped  uint64                             // the newest revision no longer in changes
	logLimit logLimiter                         // problem log lines

	subMu   sync.Mutex
	subs    map[int]chan struct{}
	nextSub int
}

// Option configures a Store.
type Option func(*Store)

// WithDomainSuffix sets the cluster domain of Kubernetes Service host names
// (NAME.NAMESPACE.svc.SUFFIX). The default is cluster.local.
func WithDomainSuffix(suffix string) Option { return func(s *Store) { s.conv.domainSuffix = suffix } }

// WithTrustDomain sets the SPIFFE trust domain of service accounts. The
// default is cluster.local.
func WithTrustDomain(td string) Option { return func(s *Store) { s.trustDomain = td } }

// WithChangeLog sets how many changes ChangesSince remembers (default 1024).
func WithChangeLog(n int) Option { return func(s *Store) { s.changeLimit = max(n, 1) } }

// NewStore returns an empty store at revision 0.
func NewStore(logger *slog.Logger, opts ...Option) *Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		logger:      logger,
		conv:        converter{domainSuffix: DefaultDomainSuffix},
		trustDomain: DefaultTrustDomain,
		changeLimit: defaultChangeLog,
		db:          newDB(),
		problems:    map[string]map[ObjectKey][]Problem{},
		subs:        map[int]chan struct{}{},
	}
	for _, o := range opts {
		o(s)
	}
	s.view.Store(fullView(s.db.Txn(false), 0, s.trustDomain))
	return s
}

// View returns the current model. It is immutable and cheap to take.
func (s *Store) View() View { return s.view.Load() }

// TrustDomain is the trust domain used in service account SPIFFE IDs.
func (s *Store) TrustDomain() string { return s.trustDomain }

// DomainSuffix is the cluster domain of Kubernetes Service host names.
func (s *Store) DomainSuffix() string { return s.conv.domainSuffix }

// Subscribe returns a channel with one slot that is signalled after each
// change to the model, and a function that ends the subscription. A
// subscriber that is slow sees one signal for many changes.
func (s *Store) Subscribe() (<-chan struct{}, func()) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	id := s.nextSub
	s.nextSub++
	ch := make(chan struct{}, 1)
	s.subs[id] = ch
	return ch, func() {
		s.subMu.Lock()
		defer s.subMu.Unlock()
		delete(s.subs, id)
	}
}

func (s *Store) notify() {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for _, ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default: // already signalled
		}
	}
}

// writeTxn starts a write transaction that records its changes for
// commitLocked.
func (s *Store) writeTxn() *memdb.Txn {
	txn := s.db.Txn(true)
	txn.TrackChanges()
	return txn
}
