package retry

import (
	"net/http"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeBudget records how the loop calls a RetryBudget and allows the
// first `allow` retries.
type fakeBudget struct {
	mu       sync.Mutex
	allow    int
	calls    []string
	started  []string
	attempts []bool // failed, per attempt
}

func (f *fakeBudget) Started(host string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "started")
	f.started = append(f.started, host)
}

func (f *fakeBudget) Attempted(host string, failed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "attempted")
	f.attempts = append(f.attempts, failed)
}

func (f *fakeBudget) AllowRetry(host string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "allow")
	if f.allow == 0 {
		return false
	}
	f.allow--
	return true
}

func TestRetryBudgetContract(t *testing.T) {
	cases := []struct {
		name     string
		script   []reply
		allow    int
		calls    []string
		attempts []bool
		hits     int
	}{
		{"success at once", []reply{respond(200)}, 5,
			[]string{"started", "attempted"}, []bool{false}, 1},
		{"a 404 is no failure of the host", []reply{respond(404)}, 5,
			[]string{"started", "attempted"}, []bool{false}, 1},
		{"retried until success", []reply{respond(503), fail(syscall.ECONNRESET), respond(200)}, 5,
			[]string{"started", "attempted", "allow", "attempted", "allow", "attempted"}, []bool{true, true, false}, 3},
		{"the budget says no", []reply{respond(503)}, 1,
			[]string{"started", "attempted", "allow", "attempted", "allow"}, []bool{true, true}, 2},
		{"not asked when the attempts ran out", []reply{respond(503)}, 5,
			[]string{"started", "attempted", "allow", "attempted", "allow", "attempted"}, []bool{true, true, true}, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := &fakeBudget{allow: c.allow}
				base := &fakeBase{script: c.script}
				resp, err := NewTransport(base, append(fast, WithBudget(b))...).RoundTrip(newReq(t, "GET", "http://api.example.com:8443/p?q=1", nil))
				require.NoError(t, err)
				_ = resp.Body.Close()
				assert.Equal(t, c.calls, b.calls)
				assert.Equal(t, c.attempts, b.attempts)
				assert.Equal(t, []string{"api.example.com:8443"}, b.started, "host only: no path, no query")
				assert.Equal(t, c.hits, base.Calls())
			})
		})
	}
}

func TestRetryBudgetForDo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &fakeBudget{allow: 1}
		r := &recorder{failures: 10}
		_, err := Do(t.Context(), r.fn, append(fast, WithBudget(b))...)
		var re *Error
		require.ErrorAs(t, err, &re)
		assert.ErrorIs(t, err, ErrBudgetExhausted)
		assert.Equal(t, 2, re.Attempts)
		assert.Equal(t, []string{""}, b.started, "Do has no host")
		// Do does not classify: an error is Unknown, not a retryable
		// category, so it is not reported as a failure of a host.
		assert.Equal(t, []bool{false, false}, b.attempts)
	})
}

func TestTypedNilBudgetTurnsItOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b *Budget
		base := &fakeBase{script: []reply{respond(503)}}
		tr := NewTransport(base, append(fast, WithBudget(b), WithMaxAttempts(50))...)
		assert.Nil(t, tr.cfg.budget, "a typed nil is no budget at all")
		resp, err := tr.RoundTrip(newReq(t, "GET", "http://svc/", nil))
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, 50, base.Calls(), "every retry allowed")
	})
}

var _ RetryBudget = (*Budget)(nil)

// A *Budget used through the interface behaves as before: the default
// Transport budget still stops a storm.
func TestBudgetThroughInterface(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b RetryBudget = &Budget{MinPerSecond: 0.1} // one retry per 10s
		base := &fakeBase{script: []reply{respond(503)}}
		tr := &http.Client{Transport: NewTransport(base, append(fast, WithBudget(b))...)}
		for range 3 {
			resp, err := tr.Get("http://svc/")
			require.NoError(t, err)
			_ = resp.Body.Close()
		}
		assert.Equal(t, 3+1, base.Calls())
	})
}
