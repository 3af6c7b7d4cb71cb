package endpoint

import (
	"regexp"
	"strings"
)

// Value patterns. A quoted value may lack its closing quote (then it runs
// to the end of the line); a bare value starts with anything but a quote
// and runs to white space, so a quote inside a password is covered.
const (
	dquoted = `"(?:[^"\\\n]|\\.)*\\?"?`
	squoted = `'[^'\n]*'?`
	token   = dquoted + `|` + squoted + `|[^\s"']\S*`
)

var redactRules = []struct {
	re *regexp.Regexp
	// fn receives the submatches (index 0 is the whole match) and returns
	// the replacement of the whole match.
	fn func(m []string) string
}{
	{
		// scheme://user:password@ — the password runs to the last '@'
		// before white space or a quote, so an unencoded '@' in it is
		// covered too (at worst a host is redacted with it).
		re: regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)([^\s:/@"'<>]*):([^\s"'<>]*)@`),
		fn: func(m []string) string { return m[1] + m[2] + ":" + redacted + "@" },
	},
	{
		// "password": "…" (JSON), bare value stops at , } ]
		re: regexp.MustCompile(`(?i)("[\w.-]*` + secretKey + `"[ \t]*:[ \t]*)(` + dquoted + `|[^\s,}\]]+)`),
		fn: func(m []string) string { return m[1] + redactToken(m[2]) },
	},
	{
		// password = "…", password: …, REDISCLI_AUTH=…, ?password=…&
		re: regexp.MustCompile(`(?i)(\b[\w.-]*` + secretKey + `'?[ \t]*(?::|=)[ \t]*)(` + dquoted + `|` + squoted + `|[^\s"'&][^\s&]*)`),
		fn: func(m []string) string { return m[1] + redactToken(m[2]) },
	},
	{
		// redis.conf and CONFIG SET: requirepass pw, masterauth pw, and
		// MONITOR's "config" "set" "requirepass" "pw".
		re: regexp.MustCompile(`(?i)(\b(?:requirepass|masterauth)["']?[ \t]+)(` + dquoted + `|` + squoted + `|[^\s"':=]\S*)`),
		fn: func(m []string) string { return m[1] + redactToken(m[2]) },
	},
	{
		// redis-cli -a pw, --pass pw, --password=pw
		re: regexp.MustCompile(`(^|[\s"'])(-a|--pass|--password)([ \t]+|=)(` + token + `)`),
		fn: func(m []string) string { return m[1] + m[2] + m[3] + redactToken(m[4]) },
	},
	{
		// AUTH pw, AUTH user pw, HELLO 3 AUTH user pw, MONITOR's "auth" "user" "pw".
		// Upper case only when bare, so English "auth" is left alone.
		re: regexp.MustCompile(`(\bAUTH\b|(?i:["']auth["']))([ \t]+)(` + token + `)(?:([ \t]+)(` + token + `))?`),
		fn: func(m []string) string {
			if m[5] == "" {
				return m[1] + m[2] + redactToken(m[3])
			}
			return m[1] + m[2] + m[3] + m[4] + redactToken(m[5])
		},
	},
}

// secretKey matches the end of a key whose value is a credential.
const secretKey = `(?:password|passwd|passphrase|pass|pwd|secret|token|requirepass|masterauth|auth)`

// Redact returns s with credentials replaced by "xxxxx": the password of
// every scheme://user:password@ URL, values of password-like keys
// (password = "…", password: …, "password":"…", REDISCLI_AUTH=…),
// requirepass/masterauth settings, redis-cli's -a/--pass, and the password
// of AUTH commands (AUTH pw, AUTH user pw, HELLO 3 AUTH user pw). It errs
// on the side of redacting too much. Use it on text from other programs
// (redis-shake logs, server replies) before logging or storing it.
func Redact(s string) string {
	for _, r := range redactRules {
		s = replaceSubmatch(r.re, s, r.fn)
	}
	return s
}

func replaceSubmatch(re *regexp.Regexp, s string, fn func([]string) string) string {
	idx := re.FindAllStringSubmatchIndex(s, -1)
	if idx == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, loc := range idx {
		m := make([]string, len(loc)/2)
		for i := range m {
			if loc[2*i] >= 0 {
				m[i] = s[loc[2*i]:loc[2*i+1]]
			}
		}
		b.WriteString(s[last:loc[0]])
		b.WriteString(fn(m))
		last = loc[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// redactToken replaces a token, keeping its quotes.
func redactToken(t string) string {
	if t == "" || t[0] != '"' && t[0] != '\'' {
		return redacted
	}
	q := string(t[0])
	if len(t) >= 2 && t[len(t)-1] == t[0] && !strings.HasSuffix(t, `\`+q) {
		return q + redacted + q
	}
	return q + redacted
}
