package analysis_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
)

// bigKeys are the five huge keys of the sweep tests and their lengths.
var bigKeys = map[string]int64{
	"big:hash":     50_000,
	"big:list":     100_000,
	"big:set":      20_000,
	"other:zset":   20_000,
	"other:stream": 5_000,
}

// seedBigKeys writes bigKeys in pipelines of 1,000 elements a command.
func seedBigKeys(t *testing.T, c valkey.Client) {
	t.Helper()
	ctx := context.Background()
	const per = 1000
	var cmds valkey.Commands
	for from := 0; from < 100_000; from += per {
		hash := c.B().Hset().Key("big:hash").FieldValue()
		list := c.B().Rpush().Key("big:list").Element()
		set := c.B().Sadd().Key("big:set").Member()
		zset := c.B().Zadd().Key("other:zset").ScoreMember()
		var h, s, z bool
		for i := from; i < from+per; i++ {
			f := strconv.Itoa(i)
			list = list.Element(f)
			if i < 50_000 {
				hash, h = hash.FieldValue(f, f), true
			}
			if i < 20_000 {
				set, s = set.Member(f), true
				zset, z = zset.ScoreMember(float64(i), f), true
			}
			if i < 5_000 {
				cmds = append(cmds, c.B().Xadd().Key("other:stream").Id("*").FieldValue().FieldValue("n", f).Build())
			}
		}
		cmds = append(cmds, list.Build())
		if h {
			cmds = append(cmds, hash.Build())
		}
		if s {
			cmds = append(cmds, set.Build())
		}
		if z {
			cmds = append(cmds, zset.Build())
		}
		for _, r := range c.DoMulti(ctx, cmds...) {
			require.NoError(t, r.Error())
		}
		cmds = cmds[:0]
	}
}

// byElements returns the report's largest keys by elements: name → info.
func byElements(r *analysis.Report) map[string]analysis.KeyInfo {
	out := map[string]analysis.KeyInfo{}
	for _, k := range r.LargestKeys.ByElements {
		out[k.Key] = k
	}
	return out
}

// requireBigKeys checks that the report lists every key of want, with its
// exact length and a memory figure, found by the sweep (or by a sample of
// every key), and that the sweep says it is complete.
func requireBigKeys(t *testing.T, r *analysis.Report, want map[string]int64) {
	t.Helper()
	require.NotNil(t, r.LargestKeys.Sweep)
	sw := r.LargestKeys.Sweep
	assert.True(t, sw.Complete, "sweep %+v", sw)
	assert.Empty(t, sw.StoppedBy)
	for _, sh := range sw.Shards {
		assert.True(t, sh.Swept && sh.Complete, "%+v", sh)
		assert.Equal(t, 1.0, sh.Fraction)
	}
	got := byElements(r)
	for key, n := range want {
		k, ok := got[key]
		if assert.True(t, ok, "%s is not among the largest keys by elements: %v", key, r.LargestKeys.ByElements) {
			assert.Equal(t, n, k.Elements, key)
			if !r.Sample.Complete {
				assert.Equal(t, analysis.FoundBySweep, k.FoundBy, key)
			}
			assert.Positive(t, k.Bytes, "%s: MEMORY USAGE of the sweep's keys", key)
		}
	}
	mem := map[string]bool{}
	for _, k := range r.LargestKeys.ByMemory {
		mem[k.Key] = true
	}
	for key := range want {
		assert.True(t, mem[key], "%s is among the largest keys by memory: %v", key, r.LargestKeys.ByMemory)
	}
}

// A random sample of 5,000 of 30,005 keys finds all five huge keys
// about once in 8,000 runs ((5000/30005)^5): the sweep finds them every
// time, on a standalone source and on a cluster.
func TestTheSweepFindsEveryBigKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		engine  string
		cluster bool
	}{
		{"standalone valkey-8.1", "valkey-8.1", false},
		{"standalone redis-7.0", "redis-7.0", false},
		{"3-master cluster redis-8.0", "redis-8.0", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var srcURL, dstURL string
			var c valkey.Client
			if tc.cluster {
				src := kvtest.StartCluster(t, kvtest.Require(t, tc.engine), 3)
				dst := kvtest.StartCluster(t, kvtest.Require(t, tc.engine), 3)
				srcURL, dstURL, c = src.URL(), dst.URL(), src.Client(t)
			} else {
				src := kvtest.StartServer(t, kvtest.Require(t, tc.engine))
				dst := kvtest.StartServer(t, kvtest.Require(t, tc.engine))
				srcURL, dstURL, c = src.URL(), dst.URL(), src.Client(t)
			}
			seedStrings(t, c, "s", 30_000, 20, noTTL)
			seedBigKeys(t, c)

			for run := range 3 {
				r := analyze(t, srcURL, dstURL, analysis.Options{})
				require.False(t, r.Sample.Complete, "the sample is %d of %d keys", r.Sample.Sampled, r.EstimatedKeys)
				requireBigKeys(t, r, bigKeys)
				if tc.cluster {
					assert.Len(t, r.LargestKeys.Sweep.Shards, 3, "one per master")
				}
				var text strings.Builder
				require.NoError(t, r.WriteText(&text))
				assert.Contains(t, text.String(), "Big-key sweep: complete")
				assert.Contains(t, text.String(), "big:list")
				if run == 0 {
					t.Logf("sweep: %+v\n%s", *r.LargestKeys.Sweep, text.String())
				}
			}

			t.Run("--match lists the big keys it selects only", func(t *testing.T) {
				// s:* and big:*, not other:*; too many keys for the sample.
				r := analyze(t, srcURL, dstURL, analysis.Options{Match: "[bs]*"})
				require.False(t, r.Sample.Complete)
				requireBigKeys(t, r, map[string]int64{"big:hash": 50_000, "big:list": 100_000, "big:set": 20_000})
				for _, k := range append(r.LargestKeys.ByElements, r.LargestKeys.ByMemory...) {
					assert.False(t, strings.HasPrefix(k.Key, "other:"), "%s does not match the filter", k.Key)
				}
				// A filter that the sample covers whole: the sample's keys.
				r = analyze(t, srcURL, dstURL, analysis.Options{Match: "big:*"})
				require.True(t, r.Sample.Complete)
				requireBigKeys(t, r, map[string]int64{"big:hash": 50_000, "big:list": 100_000, "big:set": 20_000})
				assert.Len(t, r.LargestKeys.ByElements, 3)
			})

			t.Run("--type sweeps that type only", func(t *testing.T) {
				r := analyze(t, srcURL, dstURL, analysis.Options{Type: "zset"})
				require.NotNil(t, r.LargestKeys.Sweep)
				assert.Equal(t, []string{"zset"}, r.LargestKeys.Sweep.Types)
				requireBigKeys(t, r, map[string]int64{"other:zset": 20_000})
			})

			t.Run("a tiny time budget leaves the sweep incomplete, and the report says so", func(t *testing.T) {
				r := analyze(t, srcURL, dstURL, analysis.Options{TimeBudget: time.Nanosecond})
				sw := r.LargestKeys.Sweep
				require.NotNil(t, sw)
				assert.False(t, sw.Complete)
				assert.Equal(t, "timeBudget", sw.StoppedBy)
				for _, sh := range sw.Shards {
					assert.False(t, sh.Complete)
					assert.Less(t, sh.Fraction, 1.0)
				}
				var text strings.Builder
				require.NoError(t, r.WriteText(&text))
				assert.Contains(t, text.String(), "Big-key sweep: INCOMPLETE, stopped by the time budget")
			})

			t.Run("NoSweep leaves the largest keys to the sample", func(t *testing.T) {
				r := analyze(t, srcURL, dstURL, analysis.Options{NoSweep: true})
				assert.Nil(t, r.LargestKeys.Sweep)
				for _, k := range r.LargestKeys.ByElements {
					assert.Equal(t, analysis.FoundBySample, k.FoundBy)
				}
			})
		})
	}
}

// A read-only user that may not run MEMORY still gets the big keys by
// elements; one that may not SCAN gets no sweep, with a note, not an
// error.
func TestTheSweepWithoutPermissions(t *testing.T) {
	src := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"),
		kvtest.WithACL("user nomem on >pw ~* &* -@all +@read +@connection -memory"),
		kvtest.WithACL("user noscan on >pw ~* &* -@all +@read +@connection -scan"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	c := src.Client(t)
	seedStrings(t, c, "s", 10_000, 20, noTTL)
	seedBigKeys(t, c)

	r := analyze(t, "redis://nomem:pw@"+src.Addr()+"?cluster=false", dst.URL(), analysis.Options{Sample: analysis.MinSample})
	require.NotNil(t, r.LargestKeys.Sweep)
	assert.True(t, r.LargestKeys.Sweep.Complete)
	assert.Contains(t, r.Source.Denied, "MEMORY USAGE")
	got := byElements(r)
	for key, n := range bigKeys {
		assert.Equal(t, n, got[key].Elements, key)
	}

	r = analyze(t, "redis://noscan:pw@"+src.Addr()+"?cluster=false", dst.URL(), analysis.Options{})
	require.NotNil(t, r.LargestKeys.Sweep)
	sw := r.LargestKeys.Sweep
	assert.False(t, sw.Complete)
	assert.Empty(t, sw.StoppedBy)
	assert.Contains(t, sw.Note, "skipped")
	assert.False(t, sw.Shards[0].Swept)
	assert.Contains(t, r.Source.Denied, "SCAN")
	var text strings.Builder
	require.NoError(t, r.WriteText(&text))
	assert.Contains(t, text.String(), "Big-key sweep: INCOMPLETE")
}

// The sweep's cost on a million keys: the analysis with and without it,
// on the same data. Set KVMIGRATE_SWEEP_COST=1 to run it (a minute of
// seeding).
func TestSweepCost(t *testing.T) {
	if os.Getenv("KVMIGRATE_SWEEP_COST") == "" {
		t.Skip("KVMIGRATE_SWEEP_COST is not set")
	}
	src := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"))
	c := src.Client(t)
	ctx := context.Background()
	cmds := make(valkey.Commands, 0, 100)
	for i := 0; i < 1_000_000; i += 1000 {
		kv := c.B().Mset().KeyValue()
		for j := i; j < i+1000; j++ {
			kv = kv.KeyValue("s:"+strconv.Itoa(j), "v"+strconv.Itoa(j))
		}
		cmds = append(cmds, kv.Build())
		if len(cmds) == cap(cmds) {
			for _, r := range c.DoMulti(ctx, cmds...) {
				require.NoError(t, r.Error())
			}
			cmds = cmds[:0]
		}
	}
	seedBigKeys(t, c)
	for range 2 {
		off := analyze(t, src.URL(), dst.URL(), analysis.Options{NoSweep: true})
		on := analyze(t, src.URL(), dst.URL(), analysis.Options{})
		requireBigKeys(t, on, bigKeys)
		t.Logf("1,000,005 keys: analysis without the sweep %d ms, with it %d ms: ratio %.2f",
			off.DurationMs, on.DurationMs, float64(on.DurationMs)/float64(max(off.DurationMs, 1)))
	}
}
