package shake

import (
	"context"
	"regexp"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/topology"
)

func TestGlobRegexp(t *testing.T) {
	tests := []struct {
		glob      string
		match, no []string
	}{
		{"user:*", []string{"user:", "user:1", "user:\n"}, []string{"User:1", "xuser:1", "use"}},
		{"*", []string{"a", "\n\n"}, nil},
		{"a?c", []string{"abc", "a\nc", "a?c"}, []string{"ac", "abbc"}},
		{"[abc]x", []string{"ax", "cx"}, []string{"dx", "x", "abx"}},
		{"[^a-c]", []string{"d", "]", "\n"}, []string{"a", "b", "c", ""}},
		{"[z-a]", []string{"a", "m", "z"}, []string{"A", "-"}},
		{"[]x", nil, []string{"x", "]x", "[]x"}},
		{"[^]", []string{"a", "]", "^"}, []string{"", "ab"}},
		{"[abc", []string{"a", "c"}, []string{"[abc", "d"}},
		{"[a-]", []string{"a", "]", "^", "_"}, []string{"-", "b"}},
		{`[\]]`, []string{"]"}, []string{`\`, "[]"}},
		{`\*lit`, []string{"*lit"}, []string{"xlit", `\*lit`}},
		{`x\`, []string{`x\`}, []string{"x"}},
		{"a.b+c(d)|e$^", []string{"a.b+c(d)|e$^"}, []string{"aXb+c(d)|e$^", "abbc"}},
		{"**a**", []string{"a", "xax"}, []string{"b"}},
	}
	for _, tt := range tests {
		t.Run(tt.glob, func(t *testing.T) {
			expr, err := GlobRegexp(tt.glob)
			require.NoError(t, err)
			re, err := regexp.Compile(expr)
			require.NoError(t, err, expr)
			for _, k := range tt.match {
				assert.True(t, re.MatchString(k), "%q should match %q (%s)", tt.glob, k, expr)
				assert.True(t, topology.MatchGlob(tt.glob, k), "the reference matcher disagrees on %q %q", tt.glob, k)
			}
			for _, k := range tt.no {
				assert.False(t, re.MatchString(k), "%q should not match %q (%s)", tt.glob, k, expr)
				assert.False(t, topology.MatchGlob(tt.glob, k), "the reference matcher disagrees on %q %q", tt.glob, k)
			}
		})
	}
	_, err := GlobRegexp("user:\xff*")
	assert.Error(t, err, "invalid UTF-8 cannot go into redis-shake's configuration")
}

// TestGlobRegexpAgreesWithRedis asks a real server which keys each pattern
// matches (SCAN MATCH) and compares with the translated expression.
func TestGlobRegexpAgreesWithRedis(t *testing.T) {
	ctx := context.Background()
	srv := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	c := srv.Client(t)
	keys := []string{
		"user:1", "user:10", "User:1", "user:", "a", "ab", "abc", "abd", "a]c", "a-c", `a\c`, "a*c", "a?c", "a[c",
		"x\ny", "^a", "]", "-", "^", "_", "zzz", "a.c", "a+c", "(x)", "$1", "a b", "[abc", "*lit", `x\`, "x",
	}
	for _, k := range keys {
		require.NoError(t, c.Do(ctx, c.B().Set().Key(k).Value("1").Build()).Error())
	}
	patterns := []string{
		"user:*", "*", "a?c", "?", "[abc]*", "[^a-c]*", "[z-a]", "[]*", "[^]", "[abc", "[a-]", `[\]]`, `\*lit`, `x\`,
		"*[", "a[", "a[-]c", `a[\-]c`, "[-a]", "a[]-]c", "[^^]", "x?y", "*?*", "a*c", `a\*c`, "[a-c-e]*", "[$.]*",
		"(x)", "a b", "[[]abc", "*\\", "u*:1*", "[U]ser:1",
	}
	for _, pat := range patterns {
		var want []string
		cursor := uint64(0)
		for {
			e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(pat).Count(1000).Build()).AsScanEntry()
			require.NoError(t, err)
			want = append(want, e.Elements...)
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
		expr, err := GlobRegexp(pat)
		require.NoError(t, err)
		re := regexp.MustCompile(expr)
		var got []string
		for _, k := range keys {
			if re.MatchString(k) {
				got = append(got, k)
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		assert.Equal(t, want, got, "pattern %q (%s)", pat, expr)
	}
}

// FuzzGlobRegexp compares the expression with a port of Redis's matcher on
// ASCII patterns and keys, and checks that any valid pattern compiles.
func FuzzGlobRegexp(f *testing.F) {
	for _, s := range [][2]string{{"user:*", "user:1"}, {"[a-]", "]"}, {"[^]", "x"}, {`a\`, `a\`}, {"[]", ""}, {"[\\", "\\"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, glob, key string) {
		expr, err := GlobRegexp(glob)
		if !utf8.ValidString(glob) {
			require.Error(t, err)
			return
		}
		require.NoError(t, err)
		re, err := regexp.Compile(expr)
		require.NoError(t, err, "%q -> %s", glob, expr)
		if ascii(glob) && ascii(key) && key != "" { // see GlobRegexp on the empty key
			assert.Equal(t, topology.MatchGlob(glob, key), re.MatchString(key), "%q on %q (%s)", glob, key, expr)
		}
	})
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
