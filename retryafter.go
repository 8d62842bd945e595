package retry

import (
	"math"
	"net/http"
	"strings"
	"time"
)

// parseRetryAfter reads a Retry-After header value (RFC 9110, section
// 10.2.3) relative to now. It accepts delta-seconds (1*DIGIT) and the three
// HTTP-date forms (IMF-fixdate, RFC 850, asctime); a date in the past means
// 0. Negative, fractional, empty and garbage values report ok = false, so
// that the backoff applies. A number of seconds too large for a Duration
// gives the largest Duration, never a negative one.
func parseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.Trim(v, " \t")
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		const maxSeconds = math.MaxInt64 / int64(time.Second)
		var secs int64
		for i := 0; i < len(v); i++ {
			c := v[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			if secs > maxSeconds {
				continue // keep checking the syntax; the value is capped below
			}
			secs = secs*10 + int64(c-'0')
		}
		if secs > maxSeconds {
			return time.Duration(math.MaxInt64), true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if !t.After(now) {
		return 0, true
	}
	return t.Sub(now), true // Sub saturates at the largest Duration
}
