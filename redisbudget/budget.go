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
// retry.WithBudget. A nil *Budget is no budget: it allows every retry.
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
// Redis every SyncInterval, reading back the fleet's counts for the Window
// and the number of processes that sent to the host in it, in one
// pipelined round trip whatever the traffic (plus one out of turn when a
// host asks for a cooldown or a host is new, at most one such per
// interval, which then skips the next regular one). Until its next sync, a
// process may spend the share of the fleet's headroom (what the rule above
// still allows) that its last sync gave it: a quarter of the headroom
// divided by the processes sending to the host. So decisions may be one
// SyncInterval stale. The quarter is what bounds the harm: a process sees
// the others' spending only once they have synced, up to two intervals
// late, and in those two intervals the fleet spends at most half the
// headroom. The fleet's retries in a Window therefore exceed the rule by
// at most half of what it allows, and in practice by nothing:
// bench/fleetsim measures it. A share below one retry is spent with that
// probability.
//
// A host new to a process (or back after idleWindows Windows without
// requests from it) gets its share at its second sync, when the other
// processes that started sending to it at the same moment are counted
// too: its first sync is made at once, so that takes one to two
// SyncIntervals, during which its retries are denied. Its first request is
// sent without waiting for a cooldown the fleet may know of (the process
// learns it at that sync). A Budget shares at most MaxHosts hosts at once;
// beyond them, the Fallback alone decides and no cooldown is shared.
//
// Counts are kept in Redis per host and per slot of Window/10, numbered by
// Redis's clock (read with TIME at every sync), so the processes' clocks
// need not agree. Every key expires by itself, a little after its slot
// leaves the Window: a fleet that goes away leaves nothing behind. Keys
// hold the Prefix and the host (the request's URL.Host; "<none>" for Do),
// never a path, query or header: "<Prefix>:{<host>}:q:<slot>" (requests),
// "…:r:<slot>" (retries), "…:p" (the processes sending, each a random id
// scored by its last slot), "…:cool" (a cooldown). The host in braces is a
// Redis Cluster hash tag: a host's keys live on one node, and any
// redis.UniversalClient works, a ClusterClient included. Redis 7.0 or
// later is needed (PEXPIRE … GT).
//
// # Cooldowns
//
// When a Transport holds a host off for a Retry-After (see
// retry.WithHostCooldown), the Budget syncs at once, out of turn, writing
// a key with that time to live; every process that sent to the host
// recently learns it at its own next sync, and their Transports hold the
// host off until it ends, then each probes it. So a Retry-After seen by
// one process holds off the fleet within one SyncInterval and a round
// trip (two intervals when another out-of-turn sync was just made). The
// Transports of one process sharing a Budget learn it at once. A flushed
// Redis loses the cooldowns running; the processes keep theirs.
//
// # When Redis fails
//
// Requests never wait on Redis and never fail because of it. Before the
// first sync, and whenever no sync has succeeded for three SyncIntervals
// (Redis down, slow or unreachable), retries are decided by
// Options.Fallback (by default a retry.Budget with the core's defaults,
// which is told of every request all along), and the syncs go on every
// SyncInterval until one succeeds: the Budget is back on Redis by itself.
// What a failed sync counted is sent again only where an error errs on the
// strict side, since Redis may have applied a sync that it answered too
// late: retries always (counted twice, they deny more), requests only when
// the connection was refused (nothing was sent). So after an outage of
// Redis, the fleet's budget may be stricter than its rule for a Window.
// Counts kept over more than a Window are scaled down to a Window's worth. A Redis that lost its data (flushed,
// restarted) is refilled by the next syncs. The Logger gets one line when
// the Fallback takes over and one when the Budget is back on Redis.
//
// Set the client's ContextTimeoutEnabled so that a sync that Redis does
// not answer is abandoned after two SyncIntervals; otherwise it waits for
// the client's ReadTimeout, and so does Close.
//
// A process syncs the hosts it sent to in the last idleWindows (3)
// Windows: about 8 commands a host per sync. A process that sent nothing
// for that long sends nothing to Redis.
//
// A Budget is safe for concurrent use by many Transports; Close stops its
// goroutine.
type Budget struct {
	client redis.UniversalClient
	o      Options
	id     string // this Budget's name in the sets of senders
	origin time.Time
	width  time.Duration // a slot: Window/10
	// fellBack is whether the Logger was told that the fallback took
	// over, writeLogged whether it was told of a failed write (the sync
	// goroutine's).
	fellBack, writeLogged bool

	hosts atomic.Pointer[map[string]*host]
	mu    sync.Mutex // serializes changes to hosts, and HoldOff with setCooling and forget

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
	syncs  atomic.Int32  // syncs that read the fleet's counts for it
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
	if b == nil {
		return
	}
	b.o.Fallback.Started(host)
	if h := b.host(host); h != nil {
		h.requests.Add(1)
		if g := b.gen.Load(); h.used.Load() != g {
			h.used.Store(g)
		}
	}
}

// Attempted passes the attempt on to the Fallback; see retry.RetryBudget.
func (b *Budget) Attempted(host string, failed bool) {
	if b != nil {
		b.o.Fallback.Attempted(host, failed)
	}
}

// AllowRetry reports whether a retry to host fits in the fleet's budget,
// and if so spends it, from the share the last sync gave this process; see
// Budget. A host new to this process gets its share at its second sync
// (a sync is made at once when it comes, so within about one
// SyncInterval); until then its retries are denied. While Redis is
// unreachable the Fallback decides. A nil *Budget allows every retry.
func (b *Budget) AllowRetry(host string) bool {
	if b == nil {
		return true
	}
	h := b.host(host)
	if h == nil {
		return b.o.Fallback.AllowRetry(host)
	}
	if b.stale() {
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
	if b == nil {
		return
	}
	end := int64(until.Sub(b.origin))
	for {
		h := b.host(host)
		if h == nil {
			return
		}
		b.mu.Lock()                               // see setCooling and forget
		if m := b.hosts.Load(); (*m)[host] == h { // not forgotten meanwhile
			raise(&h.hold, end)
			raise(&h.coolUntil, end)
			b.cooling.Store(true)
			b.mu.Unlock()
			break
		}
		b.mu.Unlock()
	}
	b.syncSoon()
}

// syncSoon asks the sync goroutine for a sync out of turn.
func (b *Budget) syncSoon() {
	select {
	case b.kick <- struct{}{}:
	default: // asked already
	}
}

// CoolingUntil returns the end of host's cooldown as the fleet last told
// this process (or as this process told it), or the zero Time; see
// retry.SharedCooldown. It costs one atomic load while no host cools down.
func (b *Budget) CoolingUntil(host string) time.Time {
	if b == nil || !b.cooling.Load() {
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
	b.syncSoon() // so that the host gets its share soon
	return h
}

// hashTag makes a host name safe inside a Redis Cluster hash tag: braces
// (which no valid host holds) become underscores, and the empty host of Do
// becomes "<none>" (an empty tag would not be one; no valid host holds
// angle brackets either).
func hashTag(host string) string {
	if host == "" {
		return "<none>"
	}
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
