package analysis_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
)

// ttlOf spreads keys over the five TTL buckets by their number: i%5 is
// none, 30 min, 5 h, 3 d, 30 d.
func ttlOf(i int) int64 {
	const h = 3_600_000
	return []int64{0, h / 2, 5 * h, 72 * h, 720 * h}[i%5]
}

// The estimates against the truth: seeded data whose size and TTLs are
// known, memory against the growth of INFO used_memory while seeding.
func TestEstimatesMatchTheTruth(t *testing.T) {
	const keys = 20_000

	for _, engine := range []string{"redis-7.0", "valkey-8.1"} {
		t.Run("uniform strings on "+engine+": exact counts on a full sample, memory within 15 % on a partial one", func(t *testing.T) {
			t.Parallel()
			src := kvtest.StartServer(t, kvtest.Require(t, engine))
			dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
			c := src.Client(t)
			empty := analyze(t, src.URL(), dst.URL(), analysis.Options{})
			before := usedMemory(t, c)
			seedStrings(t, c, "key", keys, 100, ttlOf)
			growth := usedMemory(t, c) - before

			full := analyze(t, src.URL(), dst.URL(), analysis.Options{Sample: analysis.MaxSample})
			assert.True(t, full.Sample.Complete)
			assert.EqualValues(t, keys, full.Sample.Sampled)
			want := analysis.Buckets{None: keys / 5, Under1h: keys / 5, Under24h: keys / 5, Under7d: keys / 5, Over7d: keys / 5}
			assert.Equal(t, want, full.TTL.Sampled, "buckets are exact on a full sample")
			assert.Equal(t, want, full.TTL.Estimated)
			assert.Equal(t, []analysis.TypeCount{{Type: "string", Sampled: keys, Estimated: keys}}, full.Types)
			assert.Equal(t, "exact", full.Memory.Confidence)
			assert.Zero(t, full.Memory.SlotOverheadBytes, "a standalone server has one table per database")
			assert.InEpsilon(t, growth, full.Memory.EstimatedBytes, 0.15, "estimate %d, used_memory grew %d", full.Memory.EstimatedBytes, growth)
			// MEMORY STATS includes a fixed part (server structures): its growth is the data's.
			serverGrowth := full.Memory.ServerBytes - empty.Memory.ServerBytes
			// Two figures of the servers themselves, taken moments apart: they
		// differ by the clients' buffers and allocator noise (+2 % to +10 %
		// seen), so only a gross disagreement fails here.
		assert.InEpsilon(t, growth, serverGrowth, 0.25, "MEMORY STATS grew %d, used_memory %d", serverGrowth, growth)

			part := analyze(t, src.URL(), dst.URL(), analysis.Options{}) // 5,000 of 20,000
			assert.False(t, part.Sample.Complete)
			assert.EqualValues(t, analysis.DefaultSample, part.Sample.Sampled)
			assert.EqualValues(t, keys, part.EstimatedKeys)
			assert.InEpsilon(t, growth, part.Memory.EstimatedBytes, 0.15, "estimate %d, used_memory grew %d", part.Memory.EstimatedBytes, growth)
			assert.LessOrEqual(t, part.Memory.LowBytes, part.Memory.EstimatedBytes)
			assert.GreaterOrEqual(t, part.Memory.HighBytes, part.Memory.EstimatedBytes)
			for name, got := range map[string]int64{
				"none": part.TTL.Estimated.None, "<1h": part.TTL.Estimated.Under1h, "<24h": part.TTL.Estimated.Under24h,
				"<7d": part.TTL.Estimated.Under7d, ">7d": part.TTL.Estimated.Over7d,
			} {
				assert.InEpsilon(t, keys/5, got, 0.15, "bucket %s", name)
			}
			t.Logf("%s, 20,000 strings: used_memory grew %d; estimate %d from every key (%+.1f %%), %d from 5,000 (%+.1f %%, ±%.1f %% at 95 %%); MEMORY STATS grew %d (%+.1f %%)",
				engine, growth, full.Memory.EstimatedBytes, pct(full.Memory.EstimatedBytes, growth),
				part.Memory.EstimatedBytes, pct(part.Memory.EstimatedBytes, growth), 196*part.Memory.RelativeError,
				serverGrowth, pct(serverGrowth, growth))
		})
	}

	t.Run("small hashes on redis-8.0, and the largest keys found", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartServer(t, kvtest.Require(t, "redis-8.0"))
		dst := kvtest.StartServer(t, kvtest.Require(t, "redis-8.0"))
		c := src.Client(t)
		ctx := context.Background()
		before := usedMemory(t, c)
		cmds := make(valkey.Commands, 0, 10_000)
		for i := range 10_000 {
			cmds = append(cmds, c.B().Hset().Key("h:"+strconv.Itoa(i)).FieldValue().
				FieldValue("name", "user-"+strconv.Itoa(i)).FieldValue("email", "someone@example.com").
				FieldValue("score", strconv.Itoa(i*7)).FieldValue("bio", "a short text of some length").Build())
		}
		for _, r := range c.DoMulti(ctx, cmds...) {
			require.NoError(t, r.Error())
		}
		growth := usedMemory(t, c) - before

		r := analyze(t, src.URL(), dst.URL(), analysis.Options{Sample: 2000})
		assert.InEpsilon(t, growth, r.Memory.EstimatedBytes, 0.15, "estimate %d, used_memory grew %d", r.Memory.EstimatedBytes, growth)
		t.Logf("redis-8.0 hashes: used_memory grew %d; estimate %d from 2,000 of 10,000 (%+.1f %%)", growth, r.Memory.EstimatedBytes, pct(r.Memory.EstimatedBytes, growth))

		// One big hash and one long list among them: a full sample finds both.
		big := make([]string, 0, 2*3000)
		for i := range 3000 {
			big = append(big, "field-"+strconv.Itoa(i), "value-"+strconv.Itoa(i))
		}
		do(t, c, append([]string{"HSET", "big:hash"}, big...)...)
		list := make([]string, 0, 5000)
		for i := range 5000 {
			list = append(list, strconv.Itoa(i))
		}
		do(t, c, append([]string{"RPUSH", "big:list"}, list...)...)
		r = analyze(t, src.URL(), dst.URL(), analysis.Options{Sample: 20_000})
		require.NotEmpty(t, r.LargestKeys.ByMemory)
		assert.Equal(t, "big:hash", r.LargestKeys.ByMemory[0].Key)
		assert.EqualValues(t, 3000, r.LargestKeys.ByMemory[0].Elements)
		require.NotEmpty(t, r.LargestKeys.ByElements)
		assert.Equal(t, "big:list", r.LargestKeys.ByElements[0].Key)
		assert.EqualValues(t, 5000, r.LargestKeys.ByElements[0].Elements)
		assert.Equal(t, "list", r.LargestKeys.ByElements[0].Type)
	})

	t.Run("a cluster: every master sampled and extrapolated from its own key count", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartCluster(t, kvtest.Require(t, "valkey-8.0"), 3)
		dst := kvtest.StartCluster(t, kvtest.Require(t, "valkey-8.0"), 3)
		ctx := context.Background()
		empty := analyze(t, src.URL(), dst.URL(), analysis.Options{})
		before := map[string]int64{}
		for _, n := range src.Nodes {
			before[n.Addr()] = usedMemory(t, n.Client(t))
		}
		seedStrings(t, src.Client(t), "key", 15_000, 100, ttlOf)
		var growth, usage int64
		for _, n := range src.Nodes {
			c := n.Client(t)
			growth += usedMemory(t, c) - before[n.Addr()]
			// The truth for the extrapolation: MEMORY USAGE of every key.
			var cursor uint64
			for {
				page, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Count(1000).Build()).AsScanEntry()
				require.NoError(t, err)
				for _, k := range page.Elements {
					u, err := c.Do(ctx, c.B().MemoryUsage().Key(k).Build()).AsInt64()
					require.NoError(t, err)
					usage += u
				}
				if cursor = page.Cursor; cursor == 0 {
					break
				}
			}
		}

		r := analyze(t, src.URL(), dst.URL(), analysis.Options{Sample: 3000})
		require.Len(t, r.Shards, 3)
		var sampled int64
		for _, sh := range r.Shards {
			assert.InDelta(t, float64(sh.Keys)/5, sh.Sampled, 1, "the sample is shared by key count: %s", sh.Node)
			assert.InDelta(t, 5000, sh.Keys, 300)
			sampled += sh.Sampled
		}
		assert.EqualValues(t, 3000, sampled)
		assert.EqualValues(t, 15_000, r.EstimatedKeys)
		extrapolated := r.Memory.EstimatedBytes - r.Memory.KeyspaceOverheadBytes
		assert.InEpsilon(t, usage, extrapolated, 0.05, "MEMORY USAGE extrapolated %d, summed over every key %d", extrapolated, usage)
		// Valkey 8 keeps a hash table per slot: MEMORY USAGE and the
		// single-table model miss it (-41 % here before it was counted);
		// the masters' MEMORY STATS figures hold it, and a fixed part of a
		// few hundred KiB per master, which small datasets like this one
		// overestimate by.
		assert.Positive(t, r.Memory.SlotOverheadBytes)
		assert.GreaterOrEqual(t, float64(r.Memory.EstimatedBytes), 0.95*float64(growth), "the per-slot tables are counted")
		assert.InEpsilon(t, growth, r.Memory.EstimatedBytes, 0.35)
		serverGrowth := r.Memory.ServerBytes - empty.Memory.ServerBytes
		// Two figures of the servers themselves, taken moments apart: they
		// differ by the clients' buffers and allocator noise (+2 % to +10 %
		// seen), so only a gross disagreement fails here.
		assert.InEpsilon(t, growth, serverGrowth, 0.25, "MEMORY STATS grew %d, used_memory %d", serverGrowth, growth)
		assert.InEpsilon(t, 3000, r.TTL.Estimated.Under1h, 0.2)
		t.Logf("valkey-8.0 cluster, 15,000 keys: used_memory grew %d; MEMORY USAGE of every key %d, extrapolated from 3,000 %d (%+.1f %%); estimate with hash tables %d (%+.1f %%), of which per-slot %d (without: %+.1f %%); MEMORY STATS grew %d (%+.1f %%)",
			growth, usage, extrapolated, pct(extrapolated, usage), r.Memory.EstimatedBytes, pct(r.Memory.EstimatedBytes, growth),
			r.Memory.SlotOverheadBytes, pct(r.Memory.EstimatedBytes-r.Memory.SlotOverheadBytes, growth), serverGrowth, pct(serverGrowth, growth))
	})
}

func pct(got, want int64) float64 { return 100 * float64(got-want) / float64(want) }
