package validation

import (
	"context"
	"fmt"
	"slices"

	"github.com/valkey-io/valkey-go"
)

// alwaysKeys returns the keys of Options.Always to compare besides the
// drawn ones: in a validated database whose target can hold it, selected
// by the filter, not drawn already, each once. It sets v.first to every
// such key, drawn or not, for the digest queue.
func (v *run) alwaysKeys(ctx context.Context, drawn []sampleKey) ([]sampleKey, error) {
	if len(v.o.Always) == 0 {
		return nil, nil
	}
	pairs := make(map[int]dbPair, len(v.pairs))
	for _, p := range v.pairs {
		pairs[p.src] = p
	}
	seen := make(map[KeyRef]bool, len(drawn))
	for _, k := range drawn {
		seen[KeyRef{DB: k.pair.src, Key: k.key}] = true
	}
	v.first = map[KeyRef]bool{}
	var out []sampleKey
	for _, r := range v.o.Always {
		p, ok := pairs[r.DB]
		if !ok || p.noTarget || (v.o.Match != "" && !globMatch(v.o.Match, r.Key)) {
			continue
		}
		v.first[r] = true
		if !seen[r] {
			seen[r] = true
			out = append(out, sampleKey{pair: p, key: r.Key})
		}
	}
	if v.o.Type == "" || len(out) == 0 {
		return out, nil
	}
	return v.ofType(ctx, out)
}

// ofType keeps the keys whose type on the source is Options.Type, and
// those gone from it (compareBatch counts them as vanished).
func (v *run) ofType(ctx context.Context, keys []sampleKey) ([]sampleKey, error) {
	var out []sampleKey
	for _, group := range byPair(keys) {
		scl, err := v.src.Client(group[0].pair.src)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		for batch := range slices.Chunk(group, probeBatch) {
			cmds := make(valkey.Commands, len(batch))
			for i, k := range batch {
				cmds[i] = scl.B().Type().Key(k.key).Build()
			}
			for i, r := range scl.DoMulti(ctx, cmds...) {
				typ, err := r.ToString()
				if err != nil {
					if transportErr(err) {
						return nil, fmt.Errorf("source: TYPE: %w", err)
					}
					typ = v.o.Type // compareBatch reports the read error
				}
				if typ == v.o.Type || typ == "none" {
					out = append(out, batch[i])
				}
			}
		}
	}
	return out, nil
}

// globMatch reports whether SCAN MATCH pattern selects key: Redis's
// stringmatchlen (util.c), case-sensitive, byte by byte. '*' any run of
// bytes, '?' one byte, '[...]' a class ('^' negates, 'a-z' a range,
// reversed ranges swapped, an unterminated class ends with the pattern),
// '\' quotes the next byte. The empty key matches no pattern (SCAN does
// not filter with "*", which Options.withDefaults clears).
func globMatch(pattern, key string) bool {
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
