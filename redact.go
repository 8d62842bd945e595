package retry

import (
	"net/url"
	"strings"
)

// RedactURL renders u for footprints and error messages: no userinfo, no
// fragment, and every query value replaced by REDACTED (a query part
// without "=" is replaced whole, since it may be a bare token). It is the one
// place the package turns a request URL into text.
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	var b strings.Builder
	if u.Scheme != "" {
		b.WriteString(u.Scheme)
		b.WriteByte(':')
	}
	if u.Opaque != "" {
		// An opaque part may hold anything, a password included.
		b.WriteString("REDACTED")
	} else {
		if u.Scheme != "" || u.Host != "" {
			b.WriteString("//")
		}
		b.WriteString(u.Host)
		b.WriteString(u.EscapedPath())
	}
	if u.RawQuery != "" || u.ForceQuery {
		b.WriteByte('?')
		for i, part := range strings.Split(u.RawQuery, "&") {
			if i > 0 {
				b.WriteByte('&')
			}
			if k, _, ok := strings.Cut(part, "="); ok {
				b.WriteString(k)
				b.WriteString("=REDACTED")
			} else if part != "" {
				b.WriteString("REDACTED")
			}
		}
	}
	return b.String()
}
