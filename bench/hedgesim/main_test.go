package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestDrawFollowsTheDistribution(t *testing.T) {
	const n = 100000
	slow := 0
	for k := range uint64(n) {
		d := draw(7, k)
		require.Equal(t, d, draw(7, k), "a draw is a function of seed and k")
		if d == slowLatency {
			slow++
			continue
		}
		require.GreaterOrEqual(t, d, fastMin)
		require.Less(t, d, fastMin+fastSpan)
	}
	assert.InDelta(t, slowShare, float64(slow)/n, 0.002)
	assert.NotEqual(t, draws(7), draws(8), "another seed, other draws")
}

func draws(seed uint64) []time.Duration {
	d := make([]time.Duration, 100)
	for k := range d {
		d[k] = draw(seed, uint64(k))
	}
	return d
}

func TestCheckBody(t *testing.T) {
	want := pattern[:smallBody]
	buf := make([]byte, 1000) // smaller than the body: several reads
	cases := map[string]struct {
		body   io.Reader
		ok     bool
		failed bool
	}{
		"whole":       {body: bytes.NewReader(want), ok: true},
		"short":       {body: bytes.NewReader(want[:smallBody-1])},
		"long":        {body: io.MultiReader(bytes.NewReader(want), bytes.NewReader([]byte{0}))},
		"wrong byte":  {body: io.MultiReader(bytes.NewReader(want[:100]), bytes.NewReader([]byte{want[100] + 1}), bytes.NewReader(want[101:]))},
		"shifted":     {body: bytes.NewReader(pattern[1 : smallBody+1])},
		"read failed": {body: io.MultiReader(bytes.NewReader(want[:100]), iotest.ErrReader(io.ErrUnexpectedEOF)), failed: true},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ok, err := checkBody(c.body, want, buf)
			assert.Equal(t, c.ok, ok)
			assert.Equal(t, c.failed, err != nil, "err %v", err)
		})
	}
}

func TestQuantileIsTheNearestRank(t *testing.T) {
	s := make([]time.Duration, 1000)
	for i := range s {
		s[i] = time.Duration(i + 1)
	}
	assert.Equal(t, time.Duration(500), quantile(s, 0.5))
	assert.Equal(t, time.Duration(999), quantile(s, 0.999))
	assert.Equal(t, time.Duration(1000), quantile(s, 1))
	assert.Equal(t, time.Duration(1), quantile(s[:1], 0.999))
}

// TestServerChecksBodies sends the per-request server a whole PUT body, a
// wrong one and a GET, with request ids whose latency is fast.
func TestServerChecksBodies(t *testing.T) {
	defer goleak.VerifyNone(t)
	s := newServer(perRequest)
	hs := httptest.NewServer(s)
	defer hs.Close()
	s.reset(1)
	fast := []uint64{}
	for id := uint64(0); len(fast) < 3; id++ {
		if draw(1, id) < slowLatency {
			fast = append(fast, id)
		}
	}
	send := func(method string, id uint64, body []byte) (int, []byte) {
		var r io.Reader
		if body != nil {
			r = bytes.NewReader(body)
		}
		req, err := http.NewRequest(method, hs.URL, r)
		require.NoError(t, err)
		req.Header.Set(requestIDKey, strconv.FormatUint(id, 10))
		resp, err := hs.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, got
	}

	code, got := send(http.MethodPut, fast[0], pattern[:smallBody])
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, pattern[:smallBody], got)
	code, _ = send(http.MethodPut, fast[1], pattern[1:smallBody+1])
	assert.Equal(t, http.StatusBadRequest, code)
	code, got = send(http.MethodGet, fast[2], nil)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, pattern[:smallBody], got)

	assert.Equal(t, int64(3), s.hits.Load())
	assert.Equal(t, int64(1), s.bad.Load())
	assert.Equal(t, int64(0), s.cut.Load())

	// A client that gives up in the middle of the body: cut off, not bad.
	conn, err := net.Dial("tcp", hs.Listener.Addr().String())
	require.NoError(t, err)
	_, err = fmt.Fprintf(conn, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", smallBody)
	require.NoError(t, err)
	_, err = conn.Write(pattern[:100])
	require.NoError(t, err)
	require.NoError(t, conn.Close())
	require.Eventually(t, func() bool { return s.cut.Load() == 1 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, int64(4), s.hits.Load())
	assert.Equal(t, int64(1), s.bad.Load())
}
