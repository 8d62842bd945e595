package retry

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
)

// Footprints are the structured log records of the Python module this
// package ports, written through log/slog: a WARN record for each retry
// (with WithLogTries) and an ERROR record when the loop gives up on a
// retryable failure. Handed to slog.NewJSONHandler, a record reads like the
// module's dictionaries:
//
//	{"level":"WARN","msg":"An error happened while we retry to run fetch at the 1 attempt.",
//	 "log_type":"warning","controller":"retry.Do","subject":"Warning at retrying fetch",
//	 "payload":{"type":"*errors.errorString","message":"boom","traceback":["*errors.errorString: boom"],
//	            "attempt":1,"max_attempts":3,"delay":2}}

// footprint writes the record of ev, by its kind: a WARN record before a
// retry (EventRetry, with WithLogTries), an INFO record when a hedge is
// sent (EventHedge, with WithLogTries), an ERROR record when the loop gives
// up on a retryable failure (EventGiveUp), a WARN record when the budget
// denies a retry (EventBudgetDenied) or when the request does not allow a
// retry (EventNotRetried). The texts are built only once the logger says it
// wants the level, so a disabled logger costs nothing.
func (c *config) footprint(ctx context.Context, controller string, ev *Event) {
	if (ev.Kind == EventRetry || ev.Kind == EventHedge || ev.Kind == EventResume) && !c.logTries {
		return
	}
	level, logType := slog.LevelWarn, "warning"
	switch ev.Kind {
	case EventGiveUp:
		level, logType = slog.LevelError, "error"
	case EventHedge:
		level, logType = slog.LevelInfo, "info"
	}
	l := c.log()
	if !l.Enabled(ctx, level) {
		return
	}
	var msg, subject string
	switch ev.Kind {
	case EventRetry:
		msg = "An error happened while we retry to run " + ev.Name + " at the " + strconv.Itoa(ev.Attempt) + " attempt."
		subject = "Warning at retrying " + ev.Name
	case EventGiveUp:
		msg = "We could not finish the current job in the function " + ev.Name + "."
		subject = "Error at " + ev.Name
	case EventBudgetDenied:
		msg = "The retry budget is exhausted, so we stop retrying " + ev.Name + " at the " + strconv.Itoa(ev.Attempt) + " attempt."
		subject = "Retry budget exhausted for " + ev.Name
	case EventResume:
		msg = "The body of " + ev.Name + " broke after " + strconv.FormatInt(ev.ResumedAt, 10) + " bytes, so we resume it at the " + strconv.Itoa(ev.Attempt) + " attempt."
		subject = "Warning at resuming " + ev.Name
	case EventHedge:
		msg = "No attempt of " + ev.Name + " has answered after " + ev.Delay.String() + ", so we hedge it with the " + strconv.Itoa(ev.Attempt) + " attempt."
		subject = "Hedging " + ev.Name
	case EventNotRetried:
		why := "the request is not idempotent and the server may have processed it."
		if ev.outcome == outcomeBodyNotReplayable {
			why = "its request body cannot be sent again."
		}
		msg = "We do not retry " + ev.Name + " after the " + strconv.Itoa(ev.Attempt) + " attempt: " + why
		subject = "Not retrying " + ev.Name
	default:
		return
	}
	l.LogAttrs(ctx, level, msg,
		slog.String("log_type", logType),
		slog.String("controller", controller),
		slog.String("subject", subject),
		payload(ev),
	)
}

func (c *config) log() *slog.Logger {
	if c.logger != nil {
		return c.logger
	}
	return slog.Default()
}

// payload is the footprint's payload group: the error's Go type, its text,
// the chain of wrapped errors (outermost first), and where the loop stands.
// A Transport's records add the request's method and redacted URL, the
// response status (0 without a response), the category and the Retry-After
// the server asked for in seconds (-1 when it asked for none).
//
// The type, message and traceback are written through redactText: no URL
// in them keeps its userinfo, query values or fragment, and a Transport's
// record (ev.reqURL set) holds none of its request URL's secrets anywhere.
func payload(ev *Event) slog.Attr {
	tb := traceback(ev.Err)
	for i, line := range tb {
		tb[i] = redactText(line, ev.reqURL)
	}
	attrs := []slog.Attr{
		slog.String("type", redactText(errType(ev.Err), ev.reqURL)),
		slog.String("message", redactText(errText(ev.Err), ev.reqURL)),
		slog.Any("traceback", tb),
		slog.Int("attempt", ev.Attempt),
		slog.Int("max_attempts", ev.MaxAttempts),
		slog.Float64("delay", ev.Delay.Seconds()),
	}
	if ev.Hedge {
		attrs = append(attrs, slog.Bool("hedge", true))
	}
	if ev.Kind == EventResume || ev.ResumedAt > 0 {
		attrs = append(attrs, slog.Int64("resumed_at", ev.ResumedAt))
	}
	if ev.Method != "" {
		status := 0
		if ev.Response != nil {
			status = ev.Response.StatusCode
		}
		retryAfter := -1.0
		if ev.RetryAfter >= 0 {
			retryAfter = ev.RetryAfter.Seconds()
		}
		attrs = append(attrs,
			slog.String("method", ev.Method),
			slog.String("url", ev.URL),
			slog.Int("status", status),
			slog.String("category", ev.Category.String()),
			slog.Float64("retry_after", retryAfter),
		)
	}
	return slog.Attr{Key: "payload", Value: slog.GroupValue(attrs...)}
}

func errType(err error) string {
	if err == nil {
		return ""
	}
	return fmt.Sprintf("%T", err)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// traceback lists err and every error it wraps, depth first, outermost
// first, each as "type: message". It is the Go counterpart of the Python
// module's traceback.
func traceback(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		if e == nil || len(out) >= 32 {
			return
		}
		out = append(out, errType(e)+": "+e.Error())
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		case interface{ Unwrap() []error }:
			for _, inner := range u.Unwrap() {
				walk(inner)
			}
		}
	}
	walk(err)
	return out
}
