package retry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The secrets of the request URLs below: none of them may reach a footprint
// or an error message.
var urlSecrets = []string{"us3rname", "s3cret", "t0ps3cret", "frag"}

// secretURL is a request URL with every kind of secret in it.
func secretURL(hostPort string) string {
	return "http://us3rname:s3cret@" + hostPort + "/p?token=t0ps3cret#frag"
}

// assertNoSecret fails if text holds any of urlSecrets.
func assertNoSecret(t *testing.T, text, what string) {
	t.Helper()
	var leaked []string
	for _, s := range urlSecrets {
		if strings.Contains(text, s) {
			leaked = append(leaked, s)
		}
	}
	assert.Empty(t, leaked, "%s leak secrets:\n%s", what, text)
}

// jsonLogger returns WithLogger writing JSON records into the buffer.
func jsonLogger(buf *bytes.Buffer) Option {
	return WithLogger(slog.New(slog.NewJSONHandler(buf, nil)))
}

// TestTransportRedactsBaseErrorText: the text of the base's error is
// redacted in footprints and in *Error's message, whether the secrets are
// in a URL (as *url.Error prints it) or bare, while errors.Is and
// errors.As still reach the base's error values unchanged.
func TestTransportRedactsBaseErrorText(t *testing.T) {
	cases := map[string]struct {
		err func(*http.Request) error
		// wired: passes only once the Transport hands the request URL to
		// Event and *Error (bare secrets need it; URLs in the text do not).
		wired bool
	}{
		"url.Error with the raw URL": {err: func(r *http.Request) error {
			return &url.Error{Op: "Get", URL: r.URL.String(), Err: syscall.ECONNRESET}
		}},
		"bare secrets in the text": {wired: true, err: func(r *http.Request) error {
			pw, _ := r.URL.User.Password()
			return &url.Error{Op: "Get", URL: "http://127.0.0.1/p", Err: fmt.Errorf(
				"proxy said: user %s with password %s, token %s, anchor %s: %w",
				r.URL.User.Username(), pw, r.URL.Query().Get("token"), r.URL.Fragment, syscall.ECONNRESET)}
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if tc.wired {
			}
			synctest.Test(t, func(t *testing.T) {
				base := &fakeBase{script: []reply{func(r *http.Request) (*http.Response, error) { return nil, tc.err(r) }}}
				var buf bytes.Buffer
				tr := NewTransport(base, WithSleepTime(time.Second), WithLogTries(true), jsonLogger(&buf))
				resp, err := tr.RoundTrip(newReq(t, "GET", secretURL("127.0.0.1:8080"), nil))
				require.Nil(t, resp)
				require.Error(t, err)
				assert.Equal(t, 3, base.Calls())

				logs := buf.String()
				assert.Equal(t, 3, strings.Count(logs, "\n"), "two WARN records and one ERROR record:\n%s", logs)
				assert.Contains(t, logs, "REDACTED")
				assert.Contains(t, logs, "connection reset by peer", "the rest of the text stays")
				assertNoSecret(t, logs, "the footprints")
				assertNoSecret(t, err.Error(), "err.Error()")
				assert.True(t, strings.HasPrefix(err.Error(), "retry: giving up after 3 attempts: "), err.Error())

				// The error values are the base's, untouched.
				assert.ErrorIs(t, err, syscall.ECONNRESET)
				var re *Error
				require.ErrorAs(t, err, &re)
				var ue *url.Error
				require.ErrorAs(t, err, &ue)
				assert.Same(t, ue, re.Err, "the last attempt's error itself")
				assert.Contains(t, ue.Error(), "s3cret", "the base's own error is not rewritten")
			})
		})
	}
}

// clientBase is an http.Client used as a base RoundTripper, as an SDK that
// only takes a client would use it: its errors are *url.Error with the URL
// (password starred out, query and fragment as they are).
type clientBase struct{ c *http.Client }

func (b clientBase) RoundTrip(r *http.Request) (*http.Response, error) { return b.c.Do(r) }

// TestTransportRedactsHTTPClientBaseErrors sends through an http.Client to
// a loopback port where nothing listens.
func TestTransportRedactsHTTPClientBaseErrors(t *testing.T) {
	var buf bytes.Buffer
	ht := &http.Transport{}
	defer ht.CloseIdleConnections()
	tr := NewTransport(clientBase{&http.Client{Transport: ht}},
		WithSleepTime(time.Millisecond), WithLogTries(true), jsonLogger(&buf))
	resp, err := tr.RoundTrip(newReq(t, "GET", secretURL(closedAddr(t)), nil))
	require.Nil(t, resp)
	require.Error(t, err)

	logs := buf.String()
	assert.Equal(t, 3, strings.Count(logs, "\n"), "two WARN records and one ERROR record:\n%s", logs)
	assert.Contains(t, logs, "connection refused")
	assertNoSecret(t, logs, "the footprints")
	assertNoSecret(t, err.Error(), "err.Error()")

	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	var ue *url.Error
	require.ErrorAs(t, err, &ue)
	assert.Contains(t, ue.URL, "t0ps3cret", "the base's own error is not rewritten")
}

// TestTransportRedactsReasonPhrase: a server may echo a request secret in
// its reason phrase, which the footprints and *Error quote (as "retry:
// server answered <status>"). Needs the Transport's wiring (for the bare
// token; the URL in the phrase is redacted without it).
func TestTransportRedactsReasonPhrase(t *testing.T) {
	status := "503 bad token t0ps3cret, see http://us3rname:s3cret@elsewhere/x?token=t0ps3cret#frag"
	reply503 := func(r *http.Request) (*http.Response, error) {
		resp, _ := respond(503)(r)
		resp.Status = status
		return resp, nil
	}
	t.Run("footprints", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			base := &fakeBase{script: []reply{reply503}}
			var buf bytes.Buffer
			tr := NewTransport(base, WithSleepTime(time.Second), WithLogTries(true), jsonLogger(&buf))
			resp, err := tr.RoundTrip(newReq(t, "GET", secretURL("127.0.0.1:8080"), nil))
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, status, resp.Status, "the response is the server's")

			logs := buf.String()
			assert.Equal(t, 3, strings.Count(logs, "\n"), logs)
			assert.Contains(t, logs, "retry: server answered 503 bad token REDACTED, see http://elsewhere/x?token=REDACTED")
			assertNoSecret(t, logs, "the footprints")
		})
	})

	// A caller that gives up during a wait gets a *Error about the status.
	t.Run("error", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			base := &fakeBase{script: []reply{reply503}}
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(time.Second/2, cancel)
			tr := NewTransport(base, WithSleepTime(time.Second), discard)
			req, err := http.NewRequestWithContext(ctx, "GET", secretURL("127.0.0.1:8080"), nil)
			require.NoError(t, err)
			resp, err := tr.RoundTrip(req)
			require.Nil(t, resp)
			require.Error(t, err)
			assert.True(t, errors.Is(err, context.Canceled))
			assert.Contains(t, err.Error(), "server answered 503 bad token REDACTED")
			assertNoSecret(t, err.Error(), "err.Error()")
		})
	})
}
