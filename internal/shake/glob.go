package shake

import (
	"errors"
	"regexp"
	"strings"
	"unicode/utf8"
)

// GlobRegexp translates a Redis glob-style pattern (SCAN MATCH, KEYS: the
// --match option) into the Go regular expression that matches the same
// keys, for redis-shake's filter.allow_key_regex (redis-shake matches keys
// with Go's regexp, unanchored; the expression is anchored).
//
// It follows Redis's own matcher (stringmatchlen in util.c) rule by rule:
// '*' any run of characters, '?' one character, '[...]' a class with '^'
// for negation, 'a-z' ranges (reversed ones swapped), '\' quoting the next
// character inside and outside classes, '[]' matching nothing, '[^]' any
// character, an unterminated class ending at the end of the pattern, and
// '[a-]' a range up to ']'. Keys and patterns may hold newlines.
//
// One difference is inherent: Redis matches bytes and Go's regexp matches
// UTF-8 characters, so on non-ASCII keys '?' and classes match one
// character where Redis matches one byte (Redis's "?" does not match "é",
// which is two bytes; the expression does). ASCII patterns on any
// non-empty keys match exactly alike. (The empty key: Redis's matcher never
// matches it, SCAN and KEYS special-case the pattern "*"; the expression
// of a pattern of stars matches it.) A pattern that is not valid UTF-8 cannot be written
// to redis-shake's configuration and is refused.
func GlobRegexp(glob string) (string, error) {
	if !utf8.ValidString(glob) {
		return "", errors.New("the pattern is not valid UTF-8: redis-shake's configuration cannot hold it (use command mode)")
	}
	p := []rune(glob)
	var b strings.Builder
	b.WriteString(`(?s)^`)
	for len(p) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			b.WriteString(`.*`)
			continue
		case '?':
			b.WriteString(`.`)
		case '[':
			p = globClass(&b, p[1:])
			continue
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			b.WriteString(regexp.QuoteMeta(string(p[0])))
		default:
			b.WriteString(regexp.QuoteMeta(string(p[0])))
		}
		p = p[1:]
	}
	b.WriteString(`$`)
	return b.String(), nil
}

// globClass writes the class that starts at p (just after '[') and returns
// the rest of the pattern.
func globClass(b *strings.Builder, p []rune) []rune {
	not := len(p) > 0 && p[0] == '^'
	if not {
		p = p[1:]
	}
	var items strings.Builder
	for {
		switch {
		case len(p) >= 2 && p[0] == '\\':
			classRune(&items, p[1])
			p = p[2:]
			continue
		case len(p) > 0 && p[0] == ']':
			p = p[1:]
		case len(p) == 0: // unterminated: the class ends with the pattern
		case len(p) >= 3 && p[1] == '-':
			lo, hi := p[0], p[2]
			if lo > hi {
				lo, hi = hi, lo
			}
			classRune(&items, lo)
			items.WriteByte('-')
			classRune(&items, hi)
			p = p[3:]
			continue
		default:
			classRune(&items, p[0])
			p = p[1:]
			continue
		}
		break
	}
	switch {
	case items.Len() == 0 && not:
		b.WriteString(`.`) // [^]: any character
	case items.Len() == 0:
		b.WriteString(`[^\x00-\x{10FFFF}]`) // []: nothing
	case not:
		b.WriteString(`[^` + items.String() + `]`)
	default:
		b.WriteString(`[` + items.String() + `]`)
	}
	return p
}

// classRune writes r as a member of a Go character class.
func classRune(b *strings.Builder, r rune) {
	if r < utf8.RuneSelf && !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == ' ') && r > 0x20 && r != 0x7f {
		b.WriteByte('\\') // any ASCII punctuation may be escaped
	}
	b.WriteRune(r)
}
