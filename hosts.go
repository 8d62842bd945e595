package retry

import (
	"strings"
	"sync"
	"sync/atomic"
)

// MaxHosts is how many destination hosts a Budget keeps apart at once.
// When one more host comes, the idlest of them is forgotten: its state
// starts afresh if it comes back. So a Budget's memory stays bounded (a
// few hundred bytes a host) however many hosts it sees.
const MaxHosts = 1024

// hostTable maps a destination host to its state, a V, for at most
// MaxHosts hosts (or max, when set). The zero hostTable is empty and ready.
//
// Looking up a known host takes no lock and does not allocate: the map is
// copied on write and read through an atomic pointer, so requests to one
// host or to many never wait for each other. Adding a host copies the map
// under a mutex, which only other additions wait for; when the table is
// full the idlest host goes. A pointer returned by get stays valid after
// its host was evicted; it only no longer belongs to the table.
type hostTable[V any] struct {
	m  atomic.Pointer[map[string]*hostEntry[V]]
	mu sync.Mutex // serializes additions
	// tick counts additions: it is the table's clock of use. An entry
	// records the tick of its last use; the idlest has the oldest.
	tick atomic.Int64
	max  int // 0 means MaxHosts
}

type hostEntry[V any] struct {
	used atomic.Int64 // tick of the last use
	v    V
}

// get returns host's state, adding a zero V for a host not seen yet (and
// evicting the idlest host when the table is full).
func (t *hostTable[V]) get(host string) *V {
	if m := t.m.Load(); m != nil {
		if e, ok := (*m)[host]; ok {
			// Written only when it changes, that is after an addition:
			// in between, use leaves the entry's cache line shared.
			if tk := t.tick.Load(); e.used.Load() != tk {
				e.used.Store(tk)
			}
			return &e.v
		}
	}
	return t.add(host)
}

// peek returns host's state, or nil when the table has none: unlike get,
// it adds nothing, and it does not count as a use.
func (t *hostTable[V]) peek(host string) *V {
	if m := t.m.Load(); m != nil {
		if e, ok := (*m)[host]; ok {
			return &e.v
		}
	}
	return nil
}

// add is get's slow path: host is (most likely) missing.
func (t *hostTable[V]) add(host string) *V {
	t.mu.Lock()
	defer t.mu.Unlock()
	var old map[string]*hostEntry[V]
	if p := t.m.Load(); p != nil {
		old = *p
	}
	if e, ok := old[host]; ok { // added meanwhile
		return &e.v
	}
	limit := t.max
	if limit <= 0 {
		limit = MaxHosts
	}
	evict := len(old) >= limit
	var victim string
	if evict {
		first, oldest := true, int64(0)
		for k, e := range old {
			if u := e.used.Load(); first || u < oldest {
				victim, oldest, first = k, u, false
			}
		}
	}
	next := make(map[string]*hostEntry[V], min(len(old)+1, limit))
	for k, e := range old {
		if !evict || k != victim {
			next[k] = e
		}
	}
	e := &hostEntry[V]{}
	e.used.Store(t.tick.Add(1))
	// The key may share memory with a whole URL: keep only the host.
	next[strings.Clone(host)] = e
	t.m.Store(&next)
	return &e.v
}

// len returns the number of hosts in the table.
func (t *hostTable[V]) len() int {
	if p := t.m.Load(); p != nil {
		return len(*p)
	}
	return 0
}
