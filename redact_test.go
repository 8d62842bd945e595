package retry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRedactURL(t *testing.T) {
	tests := map[string]string{
		"https://user:hunter2@api.example.com/v1/items?token=s3cret&page=2#frag": "https://api.example.com/v1/items?token=REDACTED&page=REDACTED",
		"http://127.0.0.1:8080/path":    "http://127.0.0.1:8080/path",
		"http://h/p?bareSecret":         "http://h/p?REDACTED",
		"http://h/p?a=&b=1&&c":          "http://h/p?a=REDACTED&b=REDACTED&&REDACTED",
		"http://h/p?":                   "http://h/p?",
		"/relative/path?key=v":          "/relative/path?key=REDACTED",
		"mailto:someone:pw@example.com": "mailto:REDACTED",
		"http://h/a%20b?q=%2Fsecret":    "http://h/a%20b?q=REDACTED",
		"http://user@h/":                "http://h/",
	}
	for in, want := range tests {
		u, err := url.Parse(in)
		require.NoError(t, err)
		assert.Equal(t, want, RedactURL(u), in)
	}
	assert.Empty(t, RedactURL(nil))
}

// FuzzRedactURL checks that the output does not depend on the userinfo or
// on any query value: redacting the same URL with other credentials and
// other values gives the same text, so none of them can be in it.
func FuzzRedactURL(f *testing.F) {
	f.Add("user", "p4ssw0rd", "api.example.com", "/v1", "token", "s3cret")
	f.Add("", "x", "h:8080", "/", "a", "b=c&d")
	f.Fuzz(func(t *testing.T, user, pass, host, path, key, value string) {
		build := func(user, pass, value string) (*url.URL, bool) {
			u := &url.URL{Scheme: "https", User: url.UserPassword(user, pass), Host: host, Path: path,
				RawQuery: url.Values{key: {value}}.Encode()}
			parsed, err := url.Parse(u.String())
			return parsed, err == nil
		}
		secret, ok1 := build(user, pass, value)
		other, ok2 := build("someone", "other-password", "other-value")
		if !ok1 || !ok2 {
			return
		}
		got, want := RedactURL(secret), RedactURL(other)
		if got != want {
			t.Fatalf("the output depends on the userinfo or a query value:\n%q\n%q", got, want)
		}
		if strings.Contains(got, "@") && !strings.Contains(host+path, "@") {
			t.Fatalf("userinfo in %q", got)
		}
	})
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

func TestRedactText(t *testing.T) {
	req := mustURL(t, "https://us3rname:s3cret@api.example.com/v1?token=t0ps3cret&page=2&sig=a%2Fb%2Bc+d&bar3tok3n#frag1")
	tests := []struct {
		name     string
		in       string
		u        *url.URL // the request's URL, or nil (pass 1 only)
		want     string
		wantNilU string // the result without u, if it differs from want
	}{
		{name: "url.Error as it prints",
			in:   `Get "https://us3rname:s3cret@api.example.com/v1?token=t0ps3cret&page=2#frag1": dial tcp 10.0.0.1:443: connect: connection refused`,
			want: `Get "https://api.example.com/v1?token=REDACTED&page=REDACTED": dial tcp 10.0.0.1:443: connect: connection refused`},
		{name: "http.Client stars the password",
			in:   `Get "https://us3rname:***@api.example.com/v1?token=t0ps3cret#frag1": EOF`,
			want: `Get "https://api.example.com/v1?token=REDACTED": EOF`},
		{name: "user only", in: "dial https://us3rname@h/x: EOF", want: "dial https://h/x: EOF"},
		{name: "password only", in: "see https://:s3cret@h/", want: "see https://h/"},
		{name: "fragment only", in: "moved to http://h/p#frag1 today", want: "moved to http://h/p today"},
		{name: "several URLs", u: nil,
			in:   "redirect from http://a:b@x/?q=1 to HTTPS://y/p?t=zz#f, then ftp://h/file and http://[::1]:80/?k",
			want: "redirect from http://x/?q=REDACTED to https://y/p?t=REDACTED, then ftp://h/file and http://[::1]:80/?REDACTED"},
		{name: "trailing punctuation stays text", in: "(see http://h/?t=abc).", want: "(see http://h/?t=REDACTED)."},
		{name: "quoted with escapes", in: `Get "http://h/p?a=\"x\"y&b=\u00e9": EOF`, want: `Get "http://h/p?a=REDACTED&b=REDACTED": EOF`},
		{name: "quoted with a space in the query", in: `Get "http://h/p?a=b c&d=e": EOF`, want: `Get "http://h/p?a=REDACTED&d=REDACTED": EOF`},
		{name: "quoted sentence with two URLs",
			in:   `msg "see http://a/ and http://us3r:pw@b/?k=v" end`,
			want: `msg "see http://a/ and http://b/?k=REDACTED" end`},
		{name: "URL in single quotes and angle brackets", in: "'http://u:p@h/' <http://h/?x=1>", want: "'http://h/' <http://h/?x=REDACTED>"},
		{name: "unparsable URL", in: "bad http://us3rname:s3cret@h:port/x?y=z here", want: "bad http://REDACTED here"},
		{name: "bare secrets", u: req,
			in:       "user us3rname, password s3cret, token t0ps3cret, bare bar3tok3n, anchor frag1",
			want:     "user REDACTED, password REDACTED, token REDACTED, bare REDACTED, anchor REDACTED",
			wantNilU: "user us3rname, password s3cret, token t0ps3cret, bare bar3tok3n, anchor frag1"},
		{name: "query value encoded and decoded", u: req,
			in:       "sig a%2Fb%2Bc+d or a/b+c d or a/b+c+d",
			want:     "sig REDACTED or REDACTED or REDACTED",
			wantNilU: "sig a%2Fb%2Bc+d or a/b+c d or a/b+c+d"},
		{name: "overlapping secrets become one", u: req, in: "xt0ps3crets3crety", want: "xREDACTEDy", wantNilU: "xt0ps3crets3crety"},
		{name: "short values are left outside URLs", u: req,
			in:   "page 2 of 20, http://h/?page=2",
			want: "page 2 of 20, http://h/?page=REDACTED"},
		{name: "reason phrase", u: req,
			in:       "retry: server answered 503 token t0ps3cret expired",
			want:     "retry: server answered 503 token REDACTED expired",
			wantNilU: "retry: server answered 503 token t0ps3cret expired"},
		{name: "no URL", u: req, in: "dial tcp 127.0.0.1:1: connect: connection refused", want: "dial tcp 127.0.0.1:1: connect: connection refused"},
		{name: "URL without secrets", u: req, in: `Get "http://127.0.0.1:8080/p": EOF`, want: `Get "http://127.0.0.1:8080/p": EOF`},
		{name: "no scheme", in: "odd ://u:p@h/?q=1 and 9x://h/?q=1", want: "odd ://u:p@h/?q=1 and 9x://h/?q=REDACTED"},
		{name: "a quote that closes one URL and opens the next",
			in:   `"http://h/?a=Get "http://us3r:pw@h/?b=2": EOF`,
			want: `"http://h/?a=REDACTED"http://h/?b=REDACTED": EOF`},
		{name: "URL in a quoted message", in: `msg "Get \"http://u:p@h/?q=1\": EOF"`, want: `msg "Get \"http://h/?q=REDACTED\": EOF"`},
		{name: "unterminated quote", in: `Get "http://h/?q=1`, want: `Get "http://h/?q=REDACTED`},
		{name: "empty", in: "", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, redactText(tc.in, tc.u))
			want := tc.want
			if tc.wantNilU != "" {
				want = tc.wantNilU
			}
			assert.Equal(t, want, redactText(tc.in, nil), "without the request URL")
		})
	}
}

func TestRedactTextSecretsOfOpaqueAndEncodedUserinfo(t *testing.T) {
	u := &url.URL{Scheme: "https", User: url.UserPassword("us er", "p@ss/w:rd"), Host: "h", Fragment: "a b/c"}
	u = mustURL(t, u.String())
	text := "as " + u.User.String() + " or us er and p@ss/w:rd; #" + u.EscapedFragment() + " or a b/c"
	assert.Equal(t, "as REDACTED:REDACTED or REDACTED and REDACTED; #REDACTED or REDACTED", redactText(text, u))

	opaque := mustURL(t, "mailto:someone@secret.example")
	assert.Equal(t, "bad address mailto:REDACTED", redactText("bad address mailto:someone@secret.example", opaque))
}

func TestRedactTextAllocatesNothingWithoutSecrets(t *testing.T) {
	u := mustURL(t, "http://us3rname:s3cret@127.0.0.1:8080/p?token=t0ps3cret&page=2#frag1")
	for _, text := range []string{
		"dial tcp 127.0.0.1:8080: connect: connection refused",
		`Get "http://127.0.0.1:8080/p": read tcp: connection reset by peer`,
		"retry: server answered 503 Service Unavailable",
	} {
		var out string
		allocs := testing.AllocsPerRun(100, func() { out = redactText(text, u) })
		assert.Zero(t, allocs, text)
		assert.Equal(t, text, out)
	}
}

// TestRedactTextIsLinear runs texts made to defeat the scan: were it
// quadratic, each would take minutes.
func TestRedactTextIsLinear(t *testing.T) {
	u := mustURL(t, "http://us3rname:s3cret@h/p?token=t0ps3cret&a=aaaa#frag")
	for _, unit := range []string{`\"a://b?c `, `"a://b `, "a://", `"a://b?c\`, "aaaa", "a://a://?", "\""} {
		text := strings.Repeat(unit, 500_000/len(unit))
		start := time.Now()
		_ = redactText(text, u)
		assert.Less(t, time.Since(start), 2*time.Second, "%q", unit)
	}
}

func TestErrorMessageIsRedacted(t *testing.T) {
	u := mustURL(t, "http://us3rname:s3cret@127.0.0.1:8080/p?token=t0ps3cret#frag")
	base := &url.Error{Op: "Get", URL: u.String(), Err: syscall.ECONNRESET}

	// Without the request URL (Do), the URLs in the text are redacted.
	e := &Error{Attempts: 3, Err: base}
	assert.Equal(t, `retry: giving up after 3 attempts: Get "http://127.0.0.1:8080/p?token=REDACTED": connection reset by peer`, e.Error())

	// With it (Transport), its secrets are removed wherever they are.
	e = &Error{Attempts: 1, Err: fmt.Errorf("proxy: token t0ps3cret for us3rname refused: %w", base), Cause: context.Canceled, url: u}
	assert.Equal(t, `retry: stopped after 1 attempt (context canceled): proxy: token REDACTED for REDACTED refused: Get "http://127.0.0.1:8080/p?token=REDACTED": connection reset by peer`, e.Error())

	// The error values are untouched.
	assert.ErrorIs(t, e, syscall.ECONNRESET)
	assert.ErrorIs(t, e, context.Canceled)
	var ue *url.Error
	require.ErrorAs(t, e, &ue)
	assert.Same(t, base, ue)
	assert.Equal(t, u.String(), ue.URL)
	assert.True(t, errors.Is(e, base))
}

// overlapsMark reports whether s and "REDACTED" could overlap when written
// next to each other: a secret that does can be made of the mark and the
// text around it, without having leaked.
func overlapsMark(s string) bool {
	for i := 1; i < len(redactMark)+len(s); i++ {
		// Place s at offset i-len(s) relative to the mark.
		off := i - len(s)
		match := true
		for j := 0; j < len(s); j++ {
			if k := off + j; k >= 0 && k < len(redactMark) && s[j] != redactMark[k] {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

// FuzzRedactText checks both passes of redactText on a text that holds the
// request URL as *url.Error prints it and each of its secrets bare:
//   - without the request URL, the result does not depend on the URL's
//     userinfo, query value or fragment: the same text about a URL with
//     other secrets redacts to the same result;
//   - with it, no secret of at least minSecretLen bytes is left, as the URL
//     writes it or decoded (unless it can be made of the word REDACTED and
//     what is around it).
func FuzzRedactText(f *testing.F) {
	f.Add("us3rname", "s3cret", "t0ps3cret", "frag", "proxy said", "EOF")
	f.Fuzz(fuzzRedactTextBody)
}

// fuzzRedactTextBody is FuzzRedactText's check.
func fuzzRedactTextBody(t *testing.T, user, pass, value, frag, prefix, suffix string) {
	build := func(user, pass, value, frag string) (*url.URL, string, bool) {
		u := &url.URL{Scheme: "https", User: url.UserPassword(user, pass), Host: "api.example.com", Path: "/v1",
			RawQuery: url.Values{"token": {value}}.Encode(), Fragment: frag}
		parsed, err := url.Parse(u.String())
		if err != nil {
			return nil, "", false
		}
		return parsed, (&url.Error{Op: "Get", URL: parsed.String(), Err: errors.New(suffix)}).Error(), true
	}
	u, errText, ok1 := build(user, pass, value, frag)
	_, otherText, ok2 := build("someone", "other-password", "other-value", "other-fragment")
	if !ok1 || !ok2 {
		return
	}
	got, want := redactText(prefix+": "+errText, nil), redactText(prefix+": "+otherText, nil)
	if got != want {
		t.Fatalf("the output depends on the URL's secrets:\n%q\n%q", got, want)
	}

	text := prefix + ": " + errText + " (user " + user + ", password " + pass + ", token " + value + ", fragment " + frag + ")"
	out := redactText(text, u)
	rawUser, rawPass, _ := strings.Cut(u.User.String(), ":")
	_, rawValue, _ := strings.Cut(u.RawQuery, "=")
	for _, secret := range []string{user, pass, value, frag, rawUser, rawPass, rawValue, u.EscapedFragment()} {
		if len(secret) >= minSecretLen && !overlapsMark(secret) && strings.Contains(out, secret) {
			t.Fatalf("secret %q left in %q (from %q)", secret, out, text)
		}
	}
}
