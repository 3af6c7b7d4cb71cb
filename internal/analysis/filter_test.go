package analysis_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
)

// seedUserHashes writes n hashes user:0..n-1 of fields fields with
// 40-byte values, in pipelines.
func seedUserHashes(t *testing.T, c valkey.Client, n, fields int) {
	t.Helper()
	ctx := context.Background()
	val := strings.Repeat("h", 40)
	cmds := make(valkey.Commands, 0, 200)
	flush := func() {
		for _, r := range c.DoMulti(ctx, cmds...) {
			require.NoError(t, r.Error())
		}
		cmds = cmds[:0]
	}
	for i := range n {
		fv := c.B().Hset().Key("user:" + strconv.Itoa(i)).FieldValue()
		for f := range fields {
			fv = fv.FieldValue("field-"+strconv.Itoa(f), val)
		}
		cmds = append(cmds, fv.Build())
		if len(cmds) == cap(cmds) {
			flush()
		}
	}
	flush()
}

// memoryUsage sums MEMORY USAGE over the keys matching pattern.
func memoryUsage(t *testing.T, c valkey.Client, pattern string) (keys, bytes int64) {
	t.Helper()
	ctx := context.Background()
	var cursor uint64
	for {
		page, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
		require.NoError(t, err)
		for _, k := range page.Elements {
			n, err := c.Do(ctx, c.B().MemoryUsage().Key(k).Build()).AsInt64()
			require.NoError(t, err)
			keys++
			bytes += n
		}
		if cursor = page.Cursor; cursor == 0 {
			return keys, bytes
		}
	}
}

// A migration with --match/--type copies part of the keyspace: the
// analysis must describe that part. 10 % of the keys are big hashes
// (user:*), the rest small strings.
func TestFiltersShapeTheAnalysis(t *testing.T) {
	const (
		hashes  = 2_000
		strs    = 18_000
		fields  = 60
		allKeys = hashes + strs
	)
	for _, engine := range []string{"redis-7.0", "valkey-8.1"} {
		t.Run("user:* hashes among small strings on "+engine, func(t *testing.T) {
			t.Parallel()
			src := kvtest.StartServer(t, kvtest.Require(t, engine))
			dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
			c := src.Client(t)
			before := usedMemory(t, c)
			seedUserHashes(t, c, hashes, fields)
			growth := usedMemory(t, c) - before // the truth: what the matching keys take
			seedStrings(t, c, "s", strs, 16, ttlOf)
			n, usage := memoryUsage(t, c, "user:*")
			require.EqualValues(t, hashes, n)

			t.Run("a partial sample: the figures are the matching keys', extrapolated from the share that matched", func(t *testing.T) {
				r := analyze(t, src.URL(), dst.URL(), analysis.Options{Sample: 1000, Match: "user:*", Type: "hash"})
				require.NotNil(t, r.Filter)
				assert.Equal(t, analysis.Filter{Match: "user:*", Type: "hash", Keys: allKeys, Scanned: r.Filter.Scanned, Matched: r.Filter.Matched}, *r.Filter)
				assert.False(t, r.Sample.Complete, "1,000 of 2,000 matching keys")
				assert.EqualValues(t, 1000, r.Sample.Sampled)
				require.Len(t, r.Types, 1, "only hashes: %+v", r.Types)
				assert.Equal(t, "hash", r.Types[0].Type)
				assert.EqualValues(t, 1000, r.Types[0].Sampled)
				assert.InEpsilon(t, hashes, r.Types[0].Estimated, 0.10)
				assert.InEpsilon(t, hashes, r.EstimatedKeys, 0.10, "matching keys estimated from %d of %d scanned", r.Filter.Matched, r.Filter.Scanned)
				assert.Greater(t, r.Filter.Scanned, int64(5*r.Filter.Matched), "about one scanned key in ten matches")
				assert.InEpsilon(t, 0.1, float64(r.Filter.Matched)/float64(r.Filter.Scanned), 0.15)
				require.Len(t, r.Shards, 1)
				assert.EqualValues(t, allKeys, r.Shards[0].Keys)
				assert.Equal(t, r.EstimatedKeys, r.Shards[0].EstimatedKeys)
				assert.Equal(t, map[string]int64{"hash": 1000}, r.Shards[0].Types)
				for _, k := range r.LargestKeys.ByMemory {
					assert.True(t, strings.HasPrefix(k.Key, "user:"), k.Key)
				}
				assert.InEpsilon(t, growth, r.Memory.EstimatedBytes, 0.20, "estimate %d, used_memory grew %d with the hashes", r.Memory.EstimatedBytes, growth)
				extrapolated := r.Memory.EstimatedBytes - r.Memory.KeyspaceOverheadBytes
				assert.InEpsilon(t, usage, extrapolated, 0.20, "MEMORY USAGE extrapolated %d, summed over the hashes %d", extrapolated, usage)
				assert.Contains(t, r.Memory.Note, "filtered scan")
				assert.Contains(t, r.Memory.Note, strconv.FormatInt(r.Filter.Matched, 10)+" of "+strconv.FormatInt(r.Filter.Scanned, 10)+" keys scanned matched")
				assert.Less(t, r.TTL.Estimated.Under1h, int64(1), "the hashes have no TTL; the strings do")
				assert.InEpsilon(t, hashes, r.TTL.Estimated.None, 0.10)
				t.Logf("%s: %d user:* hashes: used_memory grew %d, MEMORY USAGE sum %d; filtered estimate from %d of about %d (%d of %d scanned matched): %d (%+.1f %% vs growth), ±%.1f %% at 95 %%",
					engine, hashes, growth, usage, r.Sample.Sampled, r.EstimatedKeys, r.Filter.Matched, r.Filter.Scanned,
					r.Memory.EstimatedBytes, pct(r.Memory.EstimatedBytes, growth), 196*r.Memory.RelativeError)
			})

			t.Run("a sample larger than the matching keys counts them exactly", func(t *testing.T) {
				r := analyze(t, src.URL(), dst.URL(), analysis.Options{Match: "user:*", Type: "hash"})
				assert.True(t, r.Sample.Complete)
				assert.EqualValues(t, hashes, r.EstimatedKeys)
				assert.Equal(t, []analysis.TypeCount{{Type: "hash", Sampled: hashes, Estimated: hashes}}, r.Types)
				assert.Equal(t, "exact", r.Memory.Confidence)
				assert.InEpsilon(t, growth, r.Memory.EstimatedBytes, 0.20, "estimate %d, used_memory grew %d", r.Memory.EstimatedBytes, growth)
				assert.InEpsilon(t, usage, r.Memory.EstimatedBytes-r.Memory.KeyspaceOverheadBytes, 0.01, "every hash's MEMORY USAGE")
			})

			t.Run("--match alone and --type alone each select their keys", func(t *testing.T) {
				byMatch := analyze(t, src.URL(), dst.URL(), analysis.Options{Match: "user:*"})
				assert.Equal(t, []analysis.TypeCount{{Type: "hash", Sampled: hashes, Estimated: hashes}}, byMatch.Types)
				byType := analyze(t, src.URL(), dst.URL(), analysis.Options{Type: "string"})
				require.Len(t, byType.Types, 1, "%+v", byType.Types)
				assert.Equal(t, "string", byType.Types[0].Type)
				assert.InEpsilon(t, strs, byType.EstimatedKeys, 0.05)
				assert.InEpsilon(t, strs/5, byType.TTL.Estimated.Under1h, 0.15, "the strings' TTLs")
				none := analyze(t, src.URL(), dst.URL(), analysis.Options{Match: "user:*", Type: "string"})
				assert.Zero(t, none.EstimatedKeys)
				assert.Empty(t, none.Types)
				assert.Contains(t, finding(t, none, analysis.CategorySampling).Message, "matches the filter")
			})

			t.Run("memory_fit blocks only when the matching keys would not fit", func(t *testing.T) {
				all := analyze(t, src.URL(), dst.URL(), analysis.Options{})
				matching := analyze(t, src.URL(), dst.URL(), analysis.Options{Match: "user:*", Type: "hash"})
				needAll := max(all.Memory.EstimatedBytes, all.Memory.ServerBytes)
				need := matching.Memory.EstimatedBytes
				require.Less(t, float64(need), 0.85*float64(needAll), "the strings take a visible share")
				tc := dst.Client(t)
				do(t, tc, "CONFIG", "SET", "maxmemory-policy", "noeviction")
				used := matching.Target.UsedMemory
				do(t, tc, "CONFIG", "SET", "maxmemory", strconv.FormatInt(used+(need+needAll)/2, 10))

				r := analyze(t, src.URL(), dst.URL(), analysis.Options{Match: "user:*", Type: "hash"})
				assert.Empty(t, r.Find(analysis.CategoryMemoryFit), "the hashes fit")
				assert.False(t, r.Blocking)
				r = analyze(t, src.URL(), dst.URL(), analysis.Options{})
				assert.Equal(t, analysis.Blocking, finding(t, r, analysis.CategoryMemoryFit).Severity, "everything does not")

				do(t, tc, "CONFIG", "SET", "maxmemory", strconv.FormatInt(used+need/2, 10))
				r = analyze(t, src.URL(), dst.URL(), analysis.Options{Match: "user:*", Type: "hash"})
				f := finding(t, r, analysis.CategoryMemoryFit)
				assert.Equal(t, analysis.Blocking, f.Severity, "half the hashes' size does not fit them")
				assert.EqualValues(t, r.Memory.EstimatedBytes, f.Data["neededBytes"], "the filtered estimate, not the whole source's MEMORY STATS")
			})
		})
	}
}

// In a cluster, each master keeps a hash table per slot, which MEMORY
// USAGE does not see; the estimate takes it from the masters' MEMORY
// STATS, for a filtered copy too.
func TestFilteredClusterEstimate(t *testing.T) {
	const hashes, strs = 1_500, 13_500
	// Valkey 8.0: a few hundred bytes per occupied slot; Redis 8.0: about
	// 2.6 KiB (measured: see the README).
	for _, engine := range []string{"valkey-8.0", "redis-8.0"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			src := kvtest.StartCluster(t, kvtest.Require(t, engine), 3)
			dst := kvtest.StartCluster(t, kvtest.Require(t, engine), 3)
			used := func() (n int64) {
				for _, node := range src.Nodes {
					n += usedMemory(t, node.Client(t))
				}
				return n
			}
			c := src.Client(t)
			before := used()
			seedUserHashes(t, c, hashes, 20)
			growth := used() - before
			seedStrings(t, c, "s", strs, 100, ttlOf)
			all := used() - before

			r := analyze(t, src.URL(), dst.URL(), analysis.Options{Sample: 1000, Match: "user:*"})
			require.NotNil(t, r.Filter)
			assert.False(t, r.Sample.Complete, "about 333 of 500 hashes a master: extrapolated")
			assert.InEpsilon(t, hashes, r.EstimatedKeys, 0.10)
			assert.Positive(t, r.Memory.SlotOverheadBytes)
			assert.InEpsilon(t, growth, r.Memory.EstimatedBytes, 0.20, "estimate %d (per-slot %d), used_memory grew %d with the hashes",
				r.Memory.EstimatedBytes, r.Memory.SlotOverheadBytes, growth)
			withoutSlots := r.Memory.EstimatedBytes - r.Memory.SlotOverheadBytes
			assert.Less(t, float64(withoutSlots), 0.9*float64(growth), "without the per-slot tables it undercounts")

			u := analyze(t, src.URL(), dst.URL(), analysis.Options{Sample: 3000})
			assert.InDelta(t, u.Memory.ServerBytes, u.Memory.EstimatedBytes, 3,
				"without a filter every master's estimate comes to its MEMORY STATS figure: the per-slot part is what that holds beyond the rest")
			t.Logf("%s cluster: %d user:* hashes grew used_memory %d; filtered estimate %d (%+.1f %%), of which per-slot %d; "+
				"all %d keys grew %d; estimate %d (%+.1f %%), of which per-slot %d; serverBytes %d (%+.1f %%)",
				engine, hashes, growth, r.Memory.EstimatedBytes, pct(r.Memory.EstimatedBytes, growth), r.Memory.SlotOverheadBytes,
				hashes+strs, all, u.Memory.EstimatedBytes, pct(u.Memory.EstimatedBytes, all), u.Memory.SlotOverheadBytes,
				u.Memory.ServerBytes, pct(u.Memory.ServerBytes, all))
		})
	}
}
