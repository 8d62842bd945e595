package retry

import (
	"net/url"
	"slices"
	"strconv"
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

// redactMark stands in for every secret removed from a text.
const redactMark = "REDACTED"

// minSecretLen is the length, in bytes, below which a secret of the request
// URL is not searched for as a bare string (see redactText). Inside a URL
// it is always removed.
const minSecretLen = 4

// redactText returns s, an error's text about a request to u, without the
// secrets a URL may carry: userinfo (user and password), query values and
// fragment. It is applied at the point where this package writes a text
// (footprints, *Error's message); the error values themselves are never
// replaced, so errors.Is and errors.As still reach them.
//
// It works in two passes:
//
//  1. Every absolute URL in s (scheme://…) is rewritten through RedactURL,
//     whatever URL it is. A URL right after an opening double quote that
//     reads as a Go-quoted string holding one URL (no white space before
//     its '?' or '#'), as *url.Error prints it
//     (Get "https://user:pw@host/p?token=abc#frag": …), runs to the
//     closing quote, spaces in its query included, and is quoted again.
//     Any other URL ends at white space, a quote, '<', '>' or a control
//     character; trailing ".,;:!?)" and backslashes (the escape of a
//     closing quote) stay as text. A URL without '@', '?' or '#' holds no
//     secret and is left as it is; one that does not parse becomes
//     "scheme://REDACTED".
//  2. When u is not nil, every remaining literal occurrence in s of u's
//     username, password, opaque part, query values (each whole part when
//     it has no "="), and fragment, both as u.String() writes them and
//     decoded, is replaced by REDACTED. This catches secrets that reach the
//     text outside a URL: a proxy's or a server's message, a reason phrase,
//     a URL that pass 1 cut short. Values shorter than minSecretLen (4)
//     bytes are left alone here: replacing every "1" or "en" of a message
//     would make it unreadable, and a value that short (page=2, lang=en) is
//     no credential; pass 1 still removes it from every URL.
//
// The second pass runs over the first one's output, so no secret of at
// least minSecretLen bytes survives anywhere in the result, except as a
// piece of the word REDACTED itself. Both passes are linear in len(s) (the
// second once per secret form) and allocate nothing when there is nothing
// to redact, unless a secret of u has to be decoded or escaped to be
// searched for.
func redactText(s string, u *url.URL) string {
	s = redactURLsIn(s)
	if u != nil {
		s = redactSecretsIn(s, u)
	}
	return s
}

// redactURLsIn is pass 1 of redactText.
func redactURLsIn(s string) string {
	var b strings.Builder
	copied := 0 // s[:copied] is in b
	used := false
	for i := 0; ; {
		k := strings.Index(s[i:], "://")
		if k < 0 {
			break
		}
		k += i
		start := schemeStart(s, k)
		if start == k {
			i = k + 3
			continue
		}
		from, to, repl, changed := urlAt(s, i, start)
		i = to
		if !changed {
			continue
		}
		if !used {
			used = true
			b.Grow(len(s))
		}
		b.WriteString(s[copied:from])
		b.WriteString(repl)
		copied = to
	}
	if !used {
		return s
	}
	b.WriteString(s[copied:])
	return b.String()
}

// schemeStart returns where the scheme that ends at s[k] (s[k:] starts
// with "://") starts, or k if there is none: a letter followed by letters,
// digits, '+', '-' or '.'.
func schemeStart(s string, k int) int {
	j := k
	for j > 0 && isSchemeByte(s[j-1]) {
		j--
	}
	for j < k && !isLetter(s[j]) {
		j++
	}
	return j
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func isSchemeByte(c byte) bool {
	return isLetter(c) || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'
}

// isURLEnd reports whether c ends a URL that is not quoted: no URL that
// url.URL.String writes holds it outside the query.
func isURLEnd(c byte) bool {
	return c <= ' ' || c == 0x7f || c == '"' || c == '\'' || c == '`' || c == '<' || c == '>'
}

// urlAt finds the extent [from, to) of the URL whose scheme starts at
// s[start] and returns its redacted text, and whether that differs. The
// text before s[floor] belongs to the URL before, if any: a quote there
// closed it, and may open this one too.
func urlAt(s string, floor, start int) (from, to int, repl string, changed bool) {
	if start > 0 && s[start-1] == '"' && !escaped(s, start-1) {
		if end := closingQuote(s, start); end > 0 {
			quoted := s[start-1 : end+1]
			raw, err := strconv.Unquote(quoted)
			if err == nil && oneURL(raw) {
				if !strings.ContainsAny(raw, "@?#") {
					return start - 1, end + 1, "", false
				}
				repl = strconv.Quote(redactRawURL(raw))
				if start-1 < floor {
					return start, end + 1, repl[1:], true
				}
				return start - 1, end + 1, repl, true
			}
		}
	}
	to = start
	for to < len(s) && !isURLEnd(s[to]) {
		to++
	}
	for to > start && strings.IndexByte(".,;:!?)\\", s[to-1]) >= 0 {
		to--
	}
	raw := s[start:to]
	if !strings.ContainsAny(raw, "@?#") {
		return start, to, "", false
	}
	return start, to, redactRawURL(raw), true
}

// oneURL reports whether raw, the contents of a quoted string that starts
// with a URL, may be that URL alone: url.URL.String writes no white space
// or control character before the query, so raw is a quoted sentence if it
// has one there. Otherwise it is taken whole, up to the closing quote: a
// query may hold spaces, and what follows a '?' or '#' is redacted anyway.
func oneURL(raw string) bool {
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '?' || c == '#':
			return true
		case c <= ' ' || c == 0x7f:
			return false
		}
	}
	return true
}

// escaped reports whether s[i] follows an odd number of backslashes: it is
// a character of a quoted string, not a quote that opens one. (Scanning
// from a quote that does not open a string could take each such URL to the
// end of s, which would make the whole quadratic.)
func escaped(s string, i int) bool {
	n := 0
	for i > 0 && s[i-1] == '\\' {
		i--
		n++
	}
	return n%2 == 1
}

// closingQuote returns the index of the double quote that closes a Go
// quoted string whose contents start at s[i], or -1.
func closingQuote(s string, i int) int {
	for ; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		case '\n':
			return -1
		}
	}
	return -1
}

// redactRawURL redacts one URL found in a text; raw holds "://".
func redactRawURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// Where its secrets are cannot be told: keep the scheme only.
		return raw[:strings.Index(raw, "://")+3] + redactMark
	}
	return RedactURL(u)
}

// redactSecretsIn is pass 2 of redactText.
func redactSecretsIn(s string, u *url.URL) string {
	var spans [][2]int
	forEachSecret(u, func(secret string) {
		if len(secret) < minSecretLen {
			return
		}
		for i := 0; ; {
			k := strings.Index(s[i:], secret)
			if k < 0 {
				return
			}
			i += k + len(secret)
			spans = append(spans, [2]int{i - len(secret), i})
		}
	})
	if spans == nil {
		return s
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	var b strings.Builder
	b.Grow(len(s))
	copied := 0
	for i := 0; i < len(spans); {
		from, to := spans[i][0], spans[i][1]
		// Overlapping or touching secrets become one REDACTED.
		for i++; i < len(spans) && spans[i][0] <= to; i++ {
			to = max(to, spans[i][1])
		}
		b.WriteString(s[copied:from])
		b.WriteString(redactMark)
		copied = to
	}
	b.WriteString(s[copied:])
	return b.String()
}

// forEachSecret calls f with every secret of u that RedactURL leaves out,
// as u.String() writes it and decoded (f may see a value twice, or empty).
func forEachSecret(u *url.URL, f func(string)) {
	if u.User != nil {
		name := u.User.Username()
		pw, _ := u.User.Password()
		f(name)
		f(pw)
		if needsEscape(name) || needsEscape(pw) {
			rawName, rawPW, _ := strings.Cut(u.User.String(), ":")
			f(rawName)
			f(rawPW)
		}
	}
	f(u.Opaque)
	for rest := u.RawQuery; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, "&")
		_, v, ok := strings.Cut(part, "=")
		if !ok {
			v = part // a bare token
		}
		f(v)
		if strings.ContainsAny(v, "%+") {
			if d, err := url.QueryUnescape(v); err == nil {
				f(d)
			}
			if d, err := url.PathUnescape(v); err == nil {
				f(d)
			}
		}
	}
	f(u.Fragment)
	f(u.RawFragment)
	if needsEscape(u.Fragment) {
		f(u.EscapedFragment())
	}
}

// needsEscape reports whether s has a byte that url.URL.String may write
// escaped: anything but letters, digits and "-._~".
func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && (c < '0' || c > '9') && c != '-' && c != '.' && c != '_' && c != '~' {
			return true
		}
	}
	return false
}
