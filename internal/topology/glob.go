package topology

// MatchGlob reports whether SCAN MATCH pattern selects key: Redis's
// stringmatchlen (util.c), case-sensitive, byte by byte. '*' any run of
// bytes, '?' one byte, '[...]' a class ('^' negates, 'a-z' a range,
// reversed ranges swapped, an unterminated class ends with the pattern),
// '\' quotes the next byte. The empty key matches no pattern (SCAN does
// not filter with "*", which callers treat as no filter).
func MatchGlob(pattern, key string) bool {
	skipLonger := false
	return globMatchAt(pattern, key, &skipLonger, 0)
}

func globMatchAt(p, s string, skipLonger *bool, nesting int) bool {
	if nesting > 1000 { // as Redis: abusive patterns match nothing
		return false
	}
	for len(p) > 0 && len(s) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 1 && p[1] == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return true
			}
			for len(s) > 0 {
				if globMatchAt(p[1:], s, skipLonger, nesting+1) {
					return true
				}
				if *skipLonger {
					return false
				}
				s = s[1:]
			}
			*skipLonger = true
			return false
		case '?':
			s = s[1:]
		case '[':
			p = p[1:]
			not := len(p) > 0 && p[0] == '^'
			if not {
				p = p[1:]
			}
			match := false
		class:
			for {
				switch {
				case len(p) >= 2 && p[0] == '\\':
					p = p[1:]
					match = match || p[0] == s[0]
				case len(p) > 0 && p[0] == ']':
					break class
				case len(p) == 0:
					// Unterminated: Redis steps back so that the p = p[1:]
					// below leaves the pattern empty.
					p = " "
					break class
				case len(p) >= 3 && p[1] == '-':
					lo, hi := p[0], p[2]
					if lo > hi {
						lo, hi = hi, lo
					}
					match = match || lo <= s[0] && s[0] <= hi
					p = p[2:]
				default:
					match = match || p[0] == s[0]
				}
				p = p[1:]
			}
			if match == not {
				return false
			}
			s = s[1:]
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			fallthrough
		default:
			if p[0] != s[0] {
				return false
			}
			s = s[1:]
		}
		p = p[1:]
		if len(s) == 0 {
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			break
		}
	}
	return len(p) == 0 && len(s) == 0
}
