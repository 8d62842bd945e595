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

func FuzzRedactURL(f *testing.F) {
	f.Add("user", "p4ssw0rd", "api.example.com", "/v1", "token", "s3cret")
	f.Add("", "x", "h:80", "/", "a", "b=c")
	f.Fuzz(func(t *testing.T, user, pass, host, path, key, value string) {
		u := &url.URL{Scheme: "https", User: url.UserPassword(user, pass), Host: host, Path: path,
			RawQuery: url.Values{key: {value}}.Encode()}
		u2, err := url.Parse(u.String())
		if err != nil {
			return
		}
		out := RedactURL(u2)
		// The secret may still appear by coincidence in the parts that are
		// kept (host, path, key); only check secrets that do not.
		kept := u2.Host + u2.EscapedPath() + url.QueryEscape(key) + key
		if len(pass) >= 3 && !strings.Contains(kept, pass) && !strings.Contains("REDACTED", pass) && strings.Contains(out, pass) {
			t.Fatalf("password %q in %q", pass, out)
		}
		enc := url.QueryEscape(value)
		if len(value) >= 3 && !strings.Contains(kept, value) && !strings.Contains(kept, enc) &&
			!strings.Contains("REDACTED", value) && (strings.Contains(out, value) || strings.Contains(out, enc)) {
			t.Fatalf("query value %q in %q", value, out)
		}
		if strings.Contains(out, "@") && !strings.Contains(kept, "@") {
			t.Fatalf("userinfo in %q", out)
		}
	})
}
