package retry

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"1", time.Second, true},
		{"120", 2 * time.Minute, true},
		{" 7 ", 7 * time.Second, true},
		{"Mon, 30 Nov 2026 12:00:05 GMT", 5 * time.Second, true},     // IMF-fixdate
		{"Monday, 30-Nov-26 12:01:00 GMT", time.Minute, true},        // RFC 850
		{"Mon Nov 30 12:00:10 2026", 10 * time.Second, true},         // asctime
		{"Mon, 30 Nov 2026 11:00:00 GMT", 0, true},                   // in the past
		{"99999999999999999999", time.Duration(math.MaxInt64), true}, // too long, never negative
		{"9223372036", 9223372036 * time.Second, true},
		{"9223372037", time.Duration(math.MaxInt64), true},
		{"", 0, false},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"+3", 0, false},
		{"soon", 0, false},
		{"5s", 0, false},
		{"Mon, 30 Nov 2026", 0, false},
	}
	for _, tt := range tests {
		d, ok := parseRetryAfter(tt.in, now)
		assert.Equal(t, tt.ok, ok, "%q", tt.in)
		assert.Equal(t, tt.want, d, "%q", tt.in)
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "99999999999999999999", "-1", "1.5",
		"Mon, 30 Nov 2026 12:00:05 GMT", "Monday, 30-Nov-26 12:01:00 GMT", "Mon Nov 30 12:00:10 2026", "Fri, 31 Dec 9999 23:59:59 GMT"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	s := schedule{sleep: time.Second, factor: 2, maxDelay: 30 * time.Second}
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := parseRetryAfter(v, now)
		if d < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v, negative", v, d)
		}
		if !ok && d != 0 {
			t.Fatalf("parseRetryAfter(%q) = %v with ok=false", v, d)
		}
		// The wait the loop derives from it is never above the cap: a
		// longer Retry-After stops the retries instead.
		if wait := max(s.base(1), d); d <= s.maxDelay && wait > s.maxDelay {
			t.Fatalf("wait %v above the cap", wait)
		}
	})
}
