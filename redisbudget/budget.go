package redisbudget

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Budget is a retry budget, and a table of host cooldowns, shared by
// every process of a fleet whose Budget uses the same Redis and Prefix. It
// implements retry.RetryBudget and retry.SharedCooldown: give it to
// retry.WithBudget.
//
// # The budget
//
// A retry to a host is allowed while the retries the whole fleet made to
// it in the last Window stay within
//
//	MinPerSecond × Window + Ratio × (requests the whole fleet sent to it in the last Window)
//
// the rule of retry.Budget, with the fleet's counts in place of one
// process's, and the floor (MinPerSecond) for the whole fleet instead of
// for each process. So a fleet of K processes adds the same share of
// retries to a failing host whatever K is; K budgets of their own would
// each add their floor.
//
// # How it is counted
//
// Nothing on a request's path waits on Redis. Each process counts its
// requests and retries per host in memory, and a goroutine sends them to
// Redis every SyncInterval, reading back the fleet's counts for the
// Window and the number of processes that asked for retries to the host,
// in one pipelined round trip whatever the traffic (plus one when a host
// asks for a cooldown, see below). Until the next sync,
// a process may spend a share of the fleet's headroom (what the rule
// above still allows) that the sync gave it: a quarter of the headroom
// divided by the processes that sent requests to the host in the last two
// slots (any of them may start asking for retries at the same moment).
// So decisions may be one SyncInterval stale. The quarter is what bounds
// the harm: a process sees the others' spending only once they have
// synced, up to two intervals late, and in those two intervals the fleet
// spends at most half the headroom. The fleet's retries in a Window
// therefore exceed the rule by at most half of what it allows, and in
// practice by nothing: bench/fleetsim measures it. Shares below one retry
// are spent with that probability.
//
// Counts are kept in Redis per host and per slot of Window/10, numbered by
// Redis's clock (read with TIME at every sync), so the processes' clocks
// need not agree. Every key expires by itself, a little after its slot
// leaves the Window: a fleet that goes away leaves nothing behind. Keys
// hold the Prefix and the host (the request's URL.Host), never a path,
// query or header: "<Prefix>:{<host>}:q:<slot>" (requests),
// "…:r:<slot>" (retries), "…:p:<slot>" (the set of processes that sent
// requests, each named by a random id), "…:cool" (a cooldown). The
// host in braces is a Redis Cluster hash tag: a host's keys live on one
// node.
//
// # Cooldowns
//
// When a Transport holds a host off for a Retry-After (see
// retry.WithHostCooldown), the Budget syncs at once, out of turn, writing
// a key with that time to live; every process learns it at its own next
// sync, and their Transports hold the host off until it ends, then each
// probes it. So a Retry-After seen by one process holds off the fleet
// within one SyncInterval (and a round trip). The Transports of one
// process sharing a Budget learn it at once.
//
// # When Redis fails
//
// Requests never wait on Redis and never fail because of it. Before the
// first sync, and whenever no sync has succeeded for three SyncIntervals
// (Redis down, slow or unreachable), retries are decided by
// Options.Fallback (by default a retry.Budget with the core's defaults,
// which is told of every request all along), and the syncs go on every
// SyncInterval until one succeeds: the Budget is back on Redis by itself,
// and sends the counts it kept meanwhile (the requests of at most the last
// Window). A Redis that lost its data (flushed, restarted) is refilled by
// the next syncs. The Logger gets one line when the Budget falls back and
// one when it is back.
//
// Set the client's ContextTimeoutEnabled so that a sync that Redis does
// not answer is abandoned after two SyncIntervals; otherwise it waits for
// the client's ReadTimeout, and so does Close.
//
// A Budget is safe for concurrent use by many Transports; Close stops its
// goroutine. It shares at most MaxHosts hosts at once.
type Budget struct {
	client redis.UniversalClient
	o      Options
	id     string // this Budget's name in the sets of senders
	origin time.Time
	width  time.Duration // a slot: Window/10
	// fellBack is whether the last sync failed, for the Logger's lines
	// (the sync goroutine's).
	fellBack bool

	hosts atomic.Pointer[map[string]*host]
	mu    sync.Mutex // serializes changes to hosts

	gen     atomic.Uint64 // syncs started: a host's clock of use
	lastOK  atomic.Int64  // since origin, the start of the last successful sync; -1: none
	cooling atomic.Bool   // some host may have a cooldown

	syncs, failures atomic.Uint64

	// Owned by the sync goroutine.
	offset time.Duration // Redis's clock minus this one's, at the last sync
	okAt   time.Duration // since origin, when the last sync succeeded

	base      context.Context // cancelled by Close
	cancel    context.CancelFunc
	done      chan struct{}
	kick      chan struct{} // a cooldown to tell the fleet: sync now
	closeOnce sync.Once
}

// host is a Budget's state for one destination host.
type host struct {
	key string // "<Prefix>:{<host>}:"

	// Counted since the last sync, sent at the next.
	requests atomic.Int64
	retries  atomic.Int64

	used   atomic.Uint64 // gen at its last request
	synced atomic.Bool   // a sync has read the fleet's counts for it
	credit atomic.Uint64 // math.Float64bits of the retries it may still spend
	// coolUntil is the end of its cooldown, since origin (0: none); hold
	// is the end of one this process saw, to be written at the next sync.
	coolUntil atomic.Int64
	hold      atomic.Int64
}

// New returns a Budget that shares its counts through client, and starts
// its sync goroutine; call Close to stop it. opts' zero fields take the
// defaults given in Options. New panics on a nil client and on Options
// that Validate rejects.
func New(client redis.UniversalClient, opts Options) *Budget {
	if client == nil {
		panic("redisbudget.New: nil client")
	}
	o, err := opts.resolved()
	if err != nil {
		panic(err)
	}
	b := &Budget{
		client: client,
		o:      o,
		id:     fmt.Sprintf("%016x", rand.Uint64()),
		origin: time.Now(),
		width:  o.Window / slots,
		done:   make(chan struct{}),
		kick:   make(chan struct{}, 1),
	}
	b.base, b.cancel = context.WithCancel(context.Background())
	b.lastOK.Store(-1)
	go b.loop()
	return b
}

// Close stops the sync goroutine, after the sync in flight if any, and
// returns nil. The Budget still works afterwards, on its Fallback alone.
// Close may be called more than once.
func (b *Budget) Close() error {
	b.closeOnce.Do(b.cancel)
	<-b.done
	return nil
}

// Started records that a request to host starts; see retry.RetryBudget.
// It counts in memory (and in the Fallback); nothing waits on Redis.
func (b *Budget) Started(host string) {
	b.o.Fallback.Started(host)
	if h := b.host(host); h != nil {
		h.requests.Add(1)
		if g := b.gen.Load(); h.used.Load() != g {
			h.used.Store(g)
		}
	}
}

// Attempted passes the attempt on to the Fallback; see retry.RetryBudget.
func (b *Budget) Attempted(host string, failed bool) { b.o.Fallback.Attempted(host, failed) }

// AllowRetry reports whether a retry to host fits in the fleet's budget,
// and if so spends it, from the share the last sync gave this process; see
// Budget. While Redis is unreachable, and for a host new to this process
// until the next sync, the Fallback decides.
func (b *Budget) AllowRetry(host string) bool {
	h := b.host(host)
	if h == nil {
		return b.o.Fallback.AllowRetry(host)
	}
	if !h.synced.Load() || b.stale() {
		if !b.o.Fallback.AllowRetry(host) {
			return false
		}
		h.retries.Add(1)
		return true
	}
	for {
		bits := h.credit.Load()
		c := math.Float64frombits(bits)
		if c <= 0 {
			return false
		}
		left, ok := c-1, true
		if c < 1 {
			left, ok = 0, rand.Float64() < c
		}
		if h.credit.CompareAndSwap(bits, math.Float64bits(left)) {
			if ok {
				h.retries.Add(1)
			}
			return ok
		}
	}
}

// HoldOff records that host asked to be left alone until until, and has the
// sync goroutine tell the fleet at once, without waiting for the interval.
// See retry.SharedCooldown.
func (b *Budget) HoldOff(host string, until time.Time) {
	h := b.host(host)
	if h == nil {
		return
	}
	end := int64(until.Sub(b.origin))
	raise(&h.hold, end)
	raise(&h.coolUntil, end)
	b.cooling.Store(true)
	select {
	case b.kick <- struct{}{}:
	default: // a sync is due already
	}
}

// CoolingUntil returns the end of host's cooldown as the fleet last told
// this process (or as this process told it), or the zero Time; see
// retry.SharedCooldown. It costs one atomic load while no host cools down.
func (b *Budget) CoolingUntil(host string) time.Time {
	if !b.cooling.Load() {
		return time.Time{}
	}
	m := b.hosts.Load()
	if m == nil {
		return time.Time{}
	}
	h := (*m)[host]
	if h == nil {
		return time.Time{}
	}
	if end := h.coolUntil.Load(); end > 0 {
		return b.origin.Add(time.Duration(end))
	}
	return time.Time{}
}

// Stats are counts of a Budget's syncs, for tests and dashboards.
type Stats struct {
	// Syncs is how many syncs (pipelined round trips to Redis) were made,
	// Failures how many of them failed.
	Syncs, Failures uint64
	// FallingBack is true while the Fallback decides retries: Redis is
	// unreachable, or the Budget has had nothing to sync (no requests)
	// for three SyncIntervals and has not synced since.
	FallingBack bool
	// Hosts is how many hosts are shared now.
	Hosts int
}

// Stats returns the Budget's counts so far.
func (b *Budget) Stats() Stats {
	s := Stats{Syncs: b.syncs.Load(), Failures: b.failures.Load(), FallingBack: b.stale()}
	if m := b.hosts.Load(); m != nil {
		s.Hosts = len(*m)
	}
	return s
}

// stale reports whether the fleet's counts are too old to decide on: no
// sync has succeeded yet, or none in the last three SyncIntervals.
func (b *Budget) stale() bool {
	ok := b.lastOK.Load()
	return ok < 0 || time.Since(b.origin)-time.Duration(ok) > 3*b.o.SyncInterval
}

// host returns host's state, adding it when it is new; nil when MaxHosts
// hosts are shared already.
func (b *Budget) host(name string) *host {
	if m := b.hosts.Load(); m != nil {
		if h, ok := (*m)[name]; ok {
			return h
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var old map[string]*host
	if m := b.hosts.Load(); m != nil {
		old = *m
	}
	if h, ok := old[name]; ok {
		return h
	}
	if len(old) >= MaxHosts {
		return nil
	}
	m := make(map[string]*host, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	h := &host{key: b.o.Prefix + ":{" + hashTag(name) + "}:"}
	h.used.Store(b.gen.Load())
	m[name] = h
	b.hosts.Store(&m)
	return h
}

// hashTag makes a host name safe inside a Redis Cluster hash tag: braces
// (which no valid host holds) become underscores.
func hashTag(host string) string {
	if !strings.ContainsAny(host, "{}") {
		return host
	}
	return strings.NewReplacer("{", "_", "}", "_").Replace(host)
}

// raise stores v in a if it is greater than a's value.
func raise(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if old >= v || a.CompareAndSwap(old, v) {
			return
		}
	}
}
