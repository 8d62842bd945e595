package retry

import (
	"net/url"
	"strings"
	"testing"

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
