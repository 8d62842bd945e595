package retry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// jsonRecords runs fn with a JSON logger and returns the decoded records.
func jsonRecords(t *testing.T, fn func(Option)) []map[string]any {
	t.Helper()
	var buf bytes.Buffer
	fn(WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
	var out []map[string]any
	dec := json.NewDecoder(&buf)
	for dec.More() {
		var m map[string]any
		require.NoError(t, dec.Decode(&m))
		out = append(out, m)
	}
	return out
}

func TestFootprintRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		recs := jsonRecords(t, func(logger Option) {
			_, _ = Do(t.Context(), func(context.Context) (int, error) {
				return 0, fmt.Errorf("dial: %w", errFlaky)
			}, logger, WithLogTries(true), WithName("fetch_user"))
		})
		require.Len(t, recs, 3, "two warnings and one error")
		for i, rec := range recs[:2] {
			assert.Equal(t, "WARN", rec["level"])
			assert.Equal(t, fmt.Sprintf("An error happened while we retry to run fetch_user at the %d attempt.", i+1), rec["msg"])
			assert.Equal(t, "warning", rec["log_type"])
			assert.Equal(t, "retry.Do", rec["controller"])
			assert.Equal(t, "Warning at retrying fetch_user", rec["subject"])
		}
		p := recs[0]["payload"].(map[string]any)
		assert.Equal(t, "*fmt.wrapError", p["type"])
		assert.Equal(t, "dial: flaky", p["message"])
		assert.Equal(t, []any{"*fmt.wrapError: dial: flaky", "*errors.errorString: flaky"}, p["traceback"])
		assert.EqualValues(t, 1, p["attempt"])
		assert.EqualValues(t, 3, p["max_attempts"])
		assert.EqualValues(t, 2, p["delay"])
		assert.EqualValues(t, 4, recs[1]["payload"].(map[string]any)["delay"])

		last := recs[2]
		assert.Equal(t, "ERROR", last["level"])
		assert.Equal(t, "We could not finish the current job in the function fetch_user.", last["msg"])
		assert.Equal(t, "error", last["log_type"])
		assert.Equal(t, "retry.Do", last["controller"])
		assert.Equal(t, "Error at fetch_user", last["subject"])
		assert.EqualValues(t, 3, last["payload"].(map[string]any)["attempt"])
	})
}

func TestFootprintOnlyErrorWithoutLogTries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		recs := jsonRecords(t, func(logger Option) {
			_, _ = Do(t.Context(), func(context.Context) (int, error) { return 0, errFlaky }, logger)
		})
		require.Len(t, recs, 1)
		assert.Equal(t, "ERROR", recs[0]["level"])
	})
}

func TestFootprintErrorOnDeadlineRule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		recs := jsonRecords(t, func(logger Option) {
			_, _ = Do(ctx, func(context.Context) (int, error) { return 0, errFlaky }, logger)
		})
		require.Len(t, recs, 1)
		assert.Equal(t, "ERROR", recs[0]["level"])
	})
}

func TestFootprintSilentCases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cases := map[string]func(context.Context, Option){
			"success": func(ctx context.Context, l Option) {
				_, _ = Do(ctx, func(context.Context) (int, error) { return 1, nil }, l, WithLogTries(true))
			},
			"not retryable": func(ctx context.Context, l Option) {
				_, _ = Do(ctx, func(context.Context) (int, error) { return 0, errFlaky }, l, WithLogTries(true), WithRetryOn(context.Canceled))
			},
			"permanent": func(ctx context.Context, l Option) {
				_, _ = Do(ctx, func(context.Context) (int, error) { return 0, Permanent(errFlaky) }, l, WithLogTries(true))
			},
			"caller cancels": func(ctx context.Context, l Option) {
				ctx, cancel := context.WithCancel(ctx)
				time.AfterFunc(time.Second, cancel)
				_, _ = Do(ctx, func(context.Context) (int, error) { return 0, errFlaky }, l)
			},
		}
		for name, run := range cases {
			recs := jsonRecords(t, func(l Option) { run(t.Context(), l) })
			assert.Empty(t, recs, name)
		}
	})
}

// countingHandler is disabled and counts calls of Handle.
type countingHandler struct{ handled int }

func (h *countingHandler) Enabled(context.Context, slog.Level) bool  { return false }
func (h *countingHandler) Handle(context.Context, slog.Record) error { h.handled++; return nil }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler        { return h }
func (h *countingHandler) WithGroup(string) slog.Handler             { return h }

func TestFootprintDisabledLoggerCostsNothing(t *testing.T) {
	h := &countingHandler{}
	c := newConfig([]Option{WithLogger(slog.New(h)), WithLogTries(true)})
	ev := &Event{Name: "x", Attempt: 1, MaxAttempts: 3, Err: errFlaky, Delay: time.Second}
	allocs := testing.AllocsPerRun(100, func() {
		for _, k := range []EventKind{EventRetry, EventGiveUp, EventBudgetDenied, EventNotRetried} {
			ev.Kind = k
			c.footprint(context.Background(), "retry.Do", ev)
		}
	})
	assert.Zero(t, allocs)
	assert.Zero(t, h.handled)
}

func TestTracebackOfJoinedErrors(t *testing.T) {
	err := fmt.Errorf("outer: %w", &Error{Attempts: 2, Err: errFlaky, Cause: context.Canceled})
	assert.Equal(t, []string{
		"*fmt.wrapError: outer: retry: stopped after 2 attempts (context canceled): flaky",
		"*retry.Error: retry: stopped after 2 attempts (context canceled): flaky",
		"*errors.errorString: context canceled",
		"*errors.errorString: flaky",
	}, traceback(err))
	assert.Nil(t, traceback(nil))
}

// TestFootprintRedactsErrorText: the payload's type, message and traceback
// hold no URL secret: URLs in Do's error texts are redacted, and a
// Transport's event (reqURL set) loses its request's secrets everywhere.
func TestFootprintRedactsErrorText(t *testing.T) {
	u, err := url.Parse("http://us3rname:s3cret@127.0.0.1:8080/p?token=t0ps3cret#frag")
	require.NoError(t, err)
	urlErr := &url.Error{Op: "Get", URL: u.String(), Err: errFlaky}

	t.Run("Do", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			recs := jsonRecords(t, func(logger Option) {
				_, _ = Do(t.Context(), func(context.Context) (int, error) {
					return 0, fmt.Errorf("fetch: %w", urlErr)
				}, logger, WithLogTries(true))
			})
			require.Len(t, recs, 3)
			p := recs[0]["payload"].(map[string]any)
			assert.Equal(t, `fetch: Get "http://127.0.0.1:8080/p?token=REDACTED": flaky`, p["message"])
			assert.Equal(t, []any{
				`*fmt.wrapError: fetch: Get "http://127.0.0.1:8080/p?token=REDACTED": flaky`,
				`*url.Error: Get "http://127.0.0.1:8080/p?token=REDACTED": flaky`,
				`*errors.errorString: flaky`,
			}, p["traceback"])
		})
	})

	t.Run("Transport event", func(t *testing.T) {
		var buf bytes.Buffer
		c := newConfig([]Option{WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))), WithLogTries(true)})
		ev := &Event{Name: "GET " + RedactURL(u), Attempt: 1, MaxAttempts: 3, Method: "GET", URL: RedactURL(u), RetryAfter: -1,
			Err: fmt.Errorf("proxy: bad token t0ps3cret for us3rname (password s3cret, #frag): %w", urlErr), reqURL: u}
		ev.Kind = EventRetry
		c.footprint(context.Background(), "retry.Transport", ev)
		ev.Kind = EventGiveUp
		c.footprint(context.Background(), "retry.Transport", ev)
		out := buf.String()
		assert.Equal(t, 2, strings.Count(out, `"message":"proxy: bad token REDACTED for REDACTED (password REDACTED, #REDACTED): Get \"http://127.0.0.1:8080/p?token=REDACTED\": flaky"`), out)
		for _, secret := range []string{"us3rname", "s3cret", "t0ps3cret", "frag"} {
			assert.NotContains(t, out, secret)
		}
		assert.Same(t, urlErr, errors.Unwrap(ev.Err), "the event's error is left as it is")
	})
}
