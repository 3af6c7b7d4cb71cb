package validation

import (
	"context"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/topology"
)

func TestDigestQueueNamedKeysFirst(t *testing.T) {
	var big []bigKey
	for _, n := range []int64{500, 101, 9_000_000, 3000, 120_000} {
		big = append(big, bigKey{key: strconv.FormatInt(n, 10), n: n})
	}
	for _, n := range []int64{7000, 200, 50_000} {
		big = append(big, bigKey{key: "named" + strconv.FormatInt(n, 10), n: n, first: true})
	}
	q := newDigestQueue(big)
	take := func(lane int) string {
		b, ok := q.next(lane)
		require.True(t, ok)
		return b.key
	}
	// Four workers start at once: the named keys go first on every lane,
	// lane 0 from the largest, the others from the smallest.
	assert.Equal(t, []string{"named50000", "named200", "named7000", "101"},
		[]string{take(0), take(1), take(2), take(3)})
	assert.Equal(t, "9000000", take(0), "then lane 0 goes on from the top of the others")
	assert.Equal(t, []string{"500", "3000", "120000"}, []string{take(1), take(1), take(2)})
	_, ok := q.next(0)
	assert.False(t, ok, "every key handed out once")
}

// TestGlobMatchAgreesWithScan checks topology.MatchGlob against the server's own
// SCAN MATCH on the same keys and patterns.
func TestGlobMatchAgreesWithScan(t *testing.T) {
	t.Parallel()
	srv := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	c := srv.ClientDB(t, 0)
	ctx := context.Background()
	keys := []string{"a", "ab", "abc", "b", "big:hash", "big:[x]", "big:x", "big:\\", "user:1", "user:12", "user:a",
		"x*y", "x?y", "xzy", "[", "]", "-", "^", "a-b", "é", "\n", "caT", "cat", "cut", "c]t", "c\\t"}
	patterns := []string{"*", "a*", "*b*", "?", "??", "a?c", "big:*", `big:\[x]`, "big:[x]", "big:[^x]*", "big:\\\\",
		"user:[0-9]", "user:[0-9]*", "user:[9-0]", "user:[^0-9]", "x\\*y", "x[*?]y", "[", "[]", "[^]", "[a-]", "[\\]]",
		"c[a-z]t", "c[]]t", "c[\\]]t", "c[A-Z]T", "*t", "**a**", "a**", "c\\", "[abc", "[^abc", "?\xa9"}
	var cmds valkey.Commands
	for _, k := range keys {
		cmds = append(cmds, c.B().Set().Key(k).Value("v").Build())
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		require.NoError(t, r.Error())
	}
	for _, p := range patterns {
		var want []string
		for cursor := uint64(0); ; {
			page, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(p).Count(1000).Build()).AsScanEntry()
			require.NoError(t, err)
			want = append(want, page.Elements...)
			if cursor = page.Cursor; cursor == 0 {
				break
			}
		}
		var got []string
		for _, k := range keys {
			if p == "*" || topology.MatchGlob(p, k) { // SCAN does not match with "*" (withDefaults clears it)
				got = append(got, k)
			}
		}
		slices.Sort(want)
		want = slices.Compact(want)
		slices.Sort(got)
		assert.Equal(t, want, got, "pattern %q", p)
	}
}
