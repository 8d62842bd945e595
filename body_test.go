package retry

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	h "github.com/retrykit/retry/httptest_helpers"
)

// cloningBase hands the base a copy of each request, as instrumenting
// middleware does, so that resp.Request is that copy and not the request
// the Transport made.
type cloningBase struct{ base http.RoundTripper }

func (c cloningBase) RoundTrip(r *http.Request) (*http.Response, error) {
	return c.base.RoundTrip(r.Clone(r.Context()))
}

// checkGetBody calls req.GetBody, as a caller holding the response might
// after RoundTrip returned: it must give want or an error, never other
// bytes.
func checkGetBody(t *testing.T, req *http.Request, want string) {
	t.Helper()
	if req.GetBody == nil {
		return
	}
	rc, err := req.GetBody()
	if err != nil {
		assert.Contains(t, err.Error(), "retry:")
		return
	}
	got, _ := io.ReadAll(rc)
	_ = rc.Close()
	require.True(t, want == string(got), "GetBody of a returned request gives %d bytes, not that request's %d", len(got), len(want))
}

func TestBodyGetBodyAfterRoundTrip(t *testing.T) {
	bases := map[string]func(*fakeBase) http.RoundTripper{
		"plain":   func(f *fakeBase) http.RoundTripper { return f },
		"cloning": func(f *fakeBase) http.RoundTripper { return cloningBase{f} },
	}
	for name, wrap := range bases {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				for i := range 200 {
					payload := fmt.Sprintf("payload-%d", i)
					var hooked []*http.Request
					tr := NewTransport(wrap(&fakeBase{script: []reply{respond(503), respond(200)}}),
						append(fast, WithOnRetry(func(ev Event) { hooked = append(hooked, ev.Response.Request) }))...)
					req := newReq(t, "PUT", "http://svc/x", &opaqueBody{Reader: strings.NewReader(payload)})
					resp, err := tr.RoundTrip(req)
					require.NoError(t, err)
					require.NoError(t, resp.Body.Close())
					checkGetBody(t, resp.Request, payload)
					for _, r := range hooked {
						checkGetBody(t, r, payload)
					}

					// Neither GetBody above may have put a buffer back twice.
					a, b := getBodyBuffer(), getBodyBuffer()
					require.NotSame(t, a, b, "loop %d: the pool gave out one buffer twice", i)
					a.unref()
					b.unref()
				}
			})
		})
	}
}

func TestBodyGetBodyDuringRetryHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []string
		tr := NewTransport(&fakeBase{script: []reply{respond(503), respond(200)}},
			append(fast, WithOnRetry(func(ev Event) {
				rc, err := ev.Response.Request.GetBody()
				require.NoError(t, err, "while RoundTrip runs, GetBody works")
				b, _ := io.ReadAll(rc)
				_ = rc.Close()
				got = append(got, string(b))
			}))...)
		req := newReq(t, "PUT", "http://svc/x", &opaqueBody{Reader: strings.NewReader("payload-A")})
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, []string{"payload-A"}, got)
	})
}

func TestLoopbackGetBodyAfterRoundTrip(t *testing.T) {
	payload := strings.Repeat("payload-A", 100)
	early := h.Func(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) })
	servers := map[string]*h.Server{
		"HTTP/1.1": h.NewServer(t, early, h.Status(200).Body("ok")),
		"HTTP/2":   h.NewHTTP2Server(t, early, h.Status(200).Body("ok")),
	}
	for name, srv := range servers {
		t.Run(name, func(t *testing.T) {
			client := &http.Client{Transport: NewTransport(srv.Transport(), quick...)}
			for range 20 {
				req := newReq(t, "PUT", srv.URL, &opaqueBody{Reader: strings.NewReader(payload)})
				resp, err := client.Do(req)
				require.NoError(t, err)
				_, _ = io.Copy(io.Discard, resp.Body)
				require.NoError(t, resp.Body.Close())
				assert.Equal(t, 200, resp.StatusCode)
				checkGetBody(t, resp.Request, payload)
			}
		})
	}
}
