package retry

import (
	"context"
	"errors"
)

// outcome is how one call (a Do, or a Transport's RoundTrip) ended, as the
// label of retry_http_requests_total.
type outcome uint8

const (
	outcomeOK                outcome = iota // the final category is Success
	outcomeNotRetryable                     // the final category, or the method, is not retried
	outcomeExhausted                        // the attempts ran out
	outcomeCanceled                         // the caller canceled
	outcomeDeadline                         // the caller's deadline passed, or the next wait would pass it
	outcomeRetryAfterTooLong                // Retry-After asked for more than the max delay
	outcomeBudgetExhausted                  // the retry budget denied a retry
	outcomeBodyNotReplayable                // the request body could not be sent again
	outcomeRequestError                     // the request could not be sent: an invalid request option, a body that failed to read, WithPrepareRetry failed
	outcomeCooldown                         // the host's cooldown would outlast the deadline
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	outcomeOK:                "ok",
	outcomeNotRetryable:      "not_retryable",
	outcomeExhausted:         "exhausted",
	outcomeCanceled:          "canceled",
	outcomeDeadline:          "deadline",
	outcomeRetryAfterTooLong: "retry_after_too_long",
	outcomeBudgetExhausted:   "budget_exhausted",
	outcomeBodyNotReplayable: "body_not_replayable",
	outcomeRequestError:      "request_error",
	outcomeCooldown:          "cooldown",
}

func (o outcome) String() string { return outcomeNames[o] }

func outcomeOfContext(err error) outcome {
	if errors.Is(err, context.DeadlineExceeded) {
		return outcomeDeadline
	}
	return outcomeCanceled
}
