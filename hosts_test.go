package retry

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// has reports whether host is in the table, without counting as a use.
func (t *hostTable[V]) has(host string) bool {
	p := t.m.Load()
	if p == nil {
		return false
	}
	_, ok := (*p)[host]
	return ok
}

func TestHostTableKeepsStatePerHost(t *testing.T) {
	var tab hostTable[int]
	*tab.get("a") = 1
	*tab.get("b") = 2
	*tab.get("") = 3
	assert.Equal(t, 1, *tab.get("a"))
	assert.Equal(t, 2, *tab.get("b"))
	assert.Equal(t, 3, *tab.get(""), `"" (Do) is a host like any other`)
	assert.Same(t, tab.get("a"), tab.get("a"), "one state per host")
	assert.Equal(t, 3, tab.len())
}

func TestHostTableEvictsTheIdlest(t *testing.T) {
	const bound = 8
	tab := hostTable[int]{max: bound}
	hot := tab.get("hot")
	*hot = 42
	for i := range 10 * bound {
		tab.get("h" + strconv.Itoa(i))
		require.LessOrEqual(t, tab.len(), bound, "after adding host %d", i)
		tab.get("hot") // in use all along
	}
	assert.Equal(t, bound, tab.len())
	assert.True(t, tab.has("hot"), "the host in use survives")
	assert.Same(t, hot, tab.get("hot"), "with its state")
	assert.Equal(t, 42, *tab.get("hot"))
	// The newest hosts stay, the idle ones went.
	for i := 10*bound - (bound - 1); i < 10*bound; i++ {
		assert.True(t, tab.has("h"+strconv.Itoa(i)), "recent host %d", i)
	}
	assert.False(t, tab.has("h0"), "the idlest host went first")
}

func TestHostTableBoundedAtMaxHosts(t *testing.T) {
	var tab hostTable[struct{}]
	for i := range 10 * MaxHosts {
		tab.get(strconv.Itoa(i))
		if tab.len() > MaxHosts {
			require.Failf(t, "table over its bound", "%d hosts after adding %d", tab.len(), i+1)
		}
	}
	assert.Equal(t, MaxHosts, tab.len())
	assert.True(t, tab.has(strconv.Itoa(10*MaxHosts-1)), "the most recently used host is kept")
	assert.False(t, tab.has("0"))
}

func TestHostTableConcurrent(t *testing.T) {
	const bound, goroutines, rounds = 32, 32, 300
	t.Run("as many hosts as places", func(t *testing.T) {
		// All goroutines add the same hosts at once: each host gets one
		// state, which keeps every count.
		tab := hostTable[atomic.Int64]{max: bound}
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for i := range rounds {
					tab.get("h" + strconv.Itoa(i%bound)).Add(1)
				}
			})
		}
		wg.Wait()
		assert.Equal(t, bound, tab.len())
		var total int64
		for i := range bound {
			total += tab.get("h" + strconv.Itoa(i)).Load()
		}
		assert.Equal(t, int64(goroutines*rounds), total, "no host was added twice")
	})
	t.Run("hosts come and go", func(t *testing.T) {
		// 512 hosts through 32 places: under -race, no race, and the
		// table never grows past its bound.
		tab := hostTable[atomic.Int64]{max: bound}
		var wg sync.WaitGroup
		var over atomic.Int64
		for g := range goroutines {
			wg.Go(func() {
				for i := range rounds {
					tab.get(fmt.Sprintf("churn-%d-%d", g, i%16)).Add(1)
					if n := tab.len(); n > bound {
						over.Store(int64(n))
					}
				}
			})
		}
		wg.Wait()
		assert.Zero(t, over.Load(), "hosts in the table at some point beyond the bound of %d", bound)
		assert.Equal(t, bound, tab.len())
	})
}

func TestHostTableLookupAllocatesNothing(t *testing.T) {
	var tab hostTable[int]
	// Built at run time, as a request's URL.Host is.
	host := strconv.Itoa(8443)
	host = "api.example.com:" + host
	for i := range 100 {
		tab.get(strconv.Itoa(i))
	}
	tab.get(host)
	assert.Zero(t, testing.AllocsPerRun(1000, func() { *tab.get(host)++ }))
}
