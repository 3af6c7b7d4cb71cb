package analysis_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/sample"
)

// Each finding is triggered for real: real servers configured so that the
// rule fires, and the report checked for the finding and its data.
func TestEachFindingIsTriggeredByRealServers(t *testing.T) {
	ctx := context.Background()

	t.Run("a cluster source with a standalone target is blocking, and the gate refuses it unless forced", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartCluster(t, kvtest.Require(t, "valkey-8.0"), 3)
		dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
		seedStrings(t, src.Client(t), "k", 300, 10, noTTL)

		r := analyze(t, src.URL(), dst.URL(), analysis.Options{})
		f := finding(t, r, analysis.CategoryClusterTopology)
		assert.Equal(t, analysis.Blocking, f.Severity)
		assert.Equal(t, 3, f.Data["sourceMasters"])
		assert.True(t, r.Blocking)
		// Every master is sampled on its own and the results combined.
		require.Len(t, r.Shards, 3)
		var keys, sampled int64
		for _, sh := range r.Shards {
			assert.Positive(t, sh.Keys)
			assert.Equal(t, sh.Keys, sh.Sampled, "a full sample of %s", sh.Node)
			keys += sh.Keys
			sampled += sh.Sampled
		}
		assert.EqualValues(t, 300, keys)
		assert.EqualValues(t, 300, sampled)
		assert.EqualValues(t, 300, r.EstimatedKeys)
		for _, m := range r.Source.Masters {
			assert.Positive(t, m.SlotCount)
		}

		err := r.Gate(false)
		require.ErrorIs(t, err, analysis.ErrBlocked)
		var blocked *analysis.BlockedError
		require.ErrorAs(t, err, &blocked)
		require.Len(t, blocked.Findings, 1)
		assert.Equal(t, analysis.CategoryClusterTopology, blocked.Findings[0].Category)
		assert.Contains(t, err.Error(), "cluster_topology")
		assert.NoError(t, r.Gate(true), "force passes the gate")
	})

	t.Run("a standalone source with two databases and a cluster target: resharding warning, multi_db blocking", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
		dst := kvtest.StartCluster(t, kvtest.Require(t, "valkey-8.0"), 3)
		seedStrings(t, src.ClientDB(t, 0), "a", 20, 10, noTTL)
		seedStrings(t, src.ClientDB(t, 3), "b", 20, 10, noTTL)

		r := analyze(t, src.URL(), dst.URL(), analysis.Options{})
		topo := finding(t, r, analysis.CategoryClusterTopology)
		assert.Equal(t, analysis.Warning, topo.Severity)
		assert.Equal(t, 3, topo.Data["targetMasters"])
		multi := finding(t, r, analysis.CategoryMultiDB)
		assert.Equal(t, analysis.Blocking, multi.Severity)
		assert.Equal(t, []int{0, 3}, multi.Data["databases"])
	})

	t.Run("several databases to a standalone target: a warning, blocking when the target has too few databases", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
		roomy := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
		small := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"), kvtest.WithDatabases(4))
		seedStrings(t, src.ClientDB(t, 0), "a", 10, 10, noTTL)
		seedStrings(t, src.ClientDB(t, 5), "b", 10, 10, noTTL)

		r := analyze(t, src.URL(), roomy.URL(), analysis.Options{})
		f := finding(t, r, analysis.CategoryMultiDB)
		assert.Equal(t, analysis.Warning, f.Severity)
		assert.Equal(t, []int{0, 5}, f.Data["databases"])
		assert.Equal(t, []analysis.Database{{DB: 0, Keys: 10}, {DB: 5, Keys: 10}}, r.Source.Databases)

		r = analyze(t, src.URL(), small.URL(), analysis.Options{})
		f = finding(t, r, analysis.CategoryMultiDB)
		assert.Equal(t, analysis.Blocking, f.Severity)
		assert.Equal(t, 4, f.Data["targetDatabases"])
	})

	t.Run("Valkey to Redis is blocking, and Valkey 8.1's RDB 11 keeps the fast path into Redis 8.0", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"))
		dst := kvtest.StartServer(t, kvtest.Require(t, "redis-8.0"))
		_, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 2})
		require.NoError(t, err)

		r := analyze(t, src.URL(), dst.URL(), analysis.Options{})
		f := finding(t, r, analysis.CategoryTypeDirection)
		assert.Equal(t, analysis.Blocking, f.Severity)
		assert.Equal(t, "valkey", f.Data["sourceEngine"])
		assert.Equal(t, "redis", f.Data["targetEngine"])
		assert.Empty(t, r.Find(analysis.CategoryRDBVersion))
		assert.True(t, r.FastPath.Available)
		assert.Equal(t, 11, r.FastPath.SourceRDBVersion)
	})

	t.Run("Redis 8 hash field TTLs are blocking into Valkey 8.1 and carried into Redis 8; RDB 12 rules out the fast path", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartServer(t, kvtest.Require(t, "redis-8.0"))
		valkey := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"))
		redis := kvtest.StartServer(t, kvtest.Require(t, "redis-8.0"))
		c := src.Client(t)
		for i := range 10 {
			k := "h:" + strconv.Itoa(i)
			do(t, c, "HSET", k, "a", "1", "b", "2", "c", "3")
			if i < 3 { // three hashes with field TTLs: 2, 1 and 2 fields
				do(t, c, "HPEXPIRE", k, "600000", "FIELDS", "1", "a")
				if i != 1 {
					do(t, c, "HPEXPIRE", k, "900000", "FIELDS", "1", "c")
				}
			}
		}
		seedStrings(t, c, "s", 5, 10, noTTL)

		r := analyze(t, src.URL(), valkey.URL(), analysis.Options{})
		h := r.HashFieldTTL
		assert.True(t, h.Checked)
		assert.False(t, h.TargetSupported)
		assert.EqualValues(t, 10, h.HashesSampled)
		assert.EqualValues(t, 3, h.HashesWithTTL)
		assert.EqualValues(t, 5, h.FieldsWithTTL)
		assert.EqualValues(t, 3, h.ServerHashes, "INFO keyspace subexpiry")
		f := finding(t, r, analysis.CategoryHFE)
		assert.Equal(t, analysis.Blocking, f.Severity)
		rdb := finding(t, r, analysis.CategoryRDBVersion)
		assert.Equal(t, analysis.Info, rdb.Severity)
		assert.Equal(t, 12, rdb.Data["sourceRDBVersion"])
		assert.Equal(t, 11, rdb.Data["targetRDBVersion"])
		assert.False(t, r.FastPath.Available)

		r = analyze(t, src.URL(), redis.URL(), analysis.Options{})
		f = finding(t, r, analysis.CategoryHFE)
		assert.Equal(t, analysis.Info, f.Severity, "the target carries field TTLs")
		assert.True(t, r.FastPath.Available)
	})

	t.Run("a source without field TTL support is not checked, and says so", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
		dst := kvtest.StartServer(t, kvtest.Require(t, "redis-8.0"))
		do(t, src.Client(t), "HSET", "h", "a", "1")
		r := analyze(t, src.URL(), dst.URL(), analysis.Options{})
		assert.False(t, r.HashFieldTTL.Checked)
		assert.Contains(t, r.HashFieldTTL.Note, "HPEXPIRETIME")
		assert.Empty(t, r.Find(analysis.CategoryHFE))
	})

	t.Run("different maxmemory policies are a warning", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
		dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"), kvtest.WithConfig("maxmemory-policy", "allkeys-lru"))
		r := analyze(t, src.URL(), dst.URL(), analysis.Options{})
		f := finding(t, r, analysis.CategoryMaxMemoryPolicy)
		assert.Equal(t, analysis.Warning, f.Severity)
		assert.Equal(t, "noeviction", f.Data["source"])
		assert.Equal(t, "allkeys-lru", f.Data["target"])
	})

	t.Run("an ACL user only on the source is a warning naming it", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"), kvtest.WithACL("user alice on >alice-pw ~app:* +@read"))
		dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
		r := analyze(t, src.URL(), dst.URL(), analysis.Options{})
		assert.Equal(t, []string{"alice", "default"}, r.Source.Users)
		f := finding(t, r, analysis.CategoryACL)
		assert.Equal(t, analysis.Warning, f.Severity)
		assert.Equal(t, []string{"alice"}, f.Data["users"])
		assert.NotContains(t, f.Message, "alice-pw")
	})

	t.Run("different persistence settings are info", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"), kvtest.WithConfig("appendonly", "yes"), kvtest.WithConfig("save", `"3600 1"`))
		dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"))
		r := analyze(t, src.URL(), dst.URL(), analysis.Options{})
		require.NotNil(t, r.Source.Persistence)
		assert.Equal(t, analysis.Persistence{RDBSave: "3600 1", AOF: true}, *r.Source.Persistence)
		assert.Equal(t, analysis.Persistence{}, *r.Target.Persistence)
		f := finding(t, r, analysis.CategoryPersistence)
		assert.Equal(t, analysis.Info, f.Severity)
		assert.Contains(t, f.Message, "AOF on")
	})

	t.Run("a module loaded only on the source is blocking, and so are its data types", func(t *testing.T) {
		t.Parallel()
		// A real module: RediSearch 1.2 from Debian bookworm, which
		// scripts/engines.sh extracts; Redis 7.0 loads it.
		mod := requireModule(t, "redisearch.so")
		src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"), kvtest.WithConfig("loadmodule", mod))
		dst := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
		c := src.Client(t)
		do(t, c, "FT.CREATE", "idx", "SCHEMA", "title", "TEXT")
		do(t, c, "FT.ADD", "idx", "doc1", "1.0", "FIELDS", "title", "hello")

		r := analyze(t, src.URL(), dst.URL(), analysis.Options{})
		assert.Equal(t, []analysis.Module{{Name: "ft", Version: 10200}}, r.Source.Modules)
		assert.Equal(t, []analysis.Module{}, r.Target.Modules)
		var loaded, types []analysis.Finding
		for _, f := range r.Find(analysis.CategoryModules) {
			if _, ok := f.Data["module"]; ok {
				loaded = append(loaded, f)
			} else {
				types = append(types, f)
			}
		}
		require.Len(t, loaded, 1)
		assert.Equal(t, analysis.Blocking, loaded[0].Severity)
		assert.Equal(t, "ft", loaded[0].Data["module"])
		require.Len(t, types, 1, "keys of module types were sampled")
		assert.Equal(t, analysis.Warning, types[0].Severity, "the fast path is available: DUMP/RESTORE can carry them where the module is loaded")
		assert.Contains(t, types[0].Data["types"], "ft_index0")

		// With the module on both sides there is no module finding.
		both := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"), kvtest.WithConfig("loadmodule", mod))
		r = analyze(t, src.URL(), both.URL(), analysis.Options{})
		for _, f := range r.Find(analysis.CategoryModules) {
			assert.NotContains(t, f.Data, "module", "unexpected %v", f)
		}
	})

	t.Run("a target holding some of the source's keys: target_not_empty with the overlap from the sample", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
		dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
		seedStrings(t, src.Client(t), "k", 1000, 10, noTTL)
		seedStrings(t, dst.Client(t), "k", 300, 10, noTTL)    // k:0..299 exist on both
		seedStrings(t, dst.Client(t), "other", 50, 10, noTTL) // only on the target

		r := analyze(t, src.URL(), dst.URL(), analysis.Options{Sample: 1000})
		o := r.Overlap
		assert.EqualValues(t, 350, o.TargetKeys)
		assert.EqualValues(t, 1000, o.Checked)
		assert.EqualValues(t, 300, o.Existing, "every source key was looked up")
		assert.EqualValues(t, 300, o.Estimated)
		assert.NotEmpty(t, o.Examples)
		f := finding(t, r, analysis.CategoryTargetNotEmpty)
		assert.Equal(t, analysis.Warning, f.Severity)
		assert.EqualValues(t, 300, f.Data["existing"])

		// A partial sample extrapolates the overlap.
		seedStrings(t, src.Client(t), "more", 3000, 10, noTTL)
		seedStrings(t, dst.Client(t), "more", 900, 10, noTTL)
		r = analyze(t, src.URL(), dst.URL(), analysis.Options{Sample: 1000})
		assert.EqualValues(t, 1000, r.Overlap.Checked)
		assert.InEpsilon(t, 1200, r.Overlap.Estimated, 0.15, "1,200 of 4,000 keys overlap")
	})

	t.Run("data that does not fit the target's maxmemory is blocking; filling most of it under eviction is eviction_risk", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
		dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
		seedStrings(t, src.Client(t), "k", 20000, 200, noTTL)
		r := analyze(t, src.URL(), dst.URL(), analysis.Options{})
		require.True(t, r.Memory.Available)
		assert.Empty(t, r.Find(analysis.CategoryMemoryFit), "no maxmemory on the target")
		need := max(r.Memory.EstimatedBytes, r.Memory.ServerBytes) // what the rule compares
		used := r.Target.UsedMemory
		require.Greater(t, need, int64(4<<20), "the dataset takes several MiB")

		c := dst.Client(t)
		do(t, c, "CONFIG", "SET", "maxmemory-policy", "noeviction")
		do(t, c, "CONFIG", "SET", "maxmemory", strconv.FormatInt(used+need/2, 10))
		r = analyze(t, src.URL(), dst.URL(), analysis.Options{})
		f := finding(t, r, analysis.CategoryMemoryFit)
		assert.Equal(t, analysis.Blocking, f.Severity)
		assert.Contains(t, f.Message, "OOM")
		assert.Empty(t, r.Find(analysis.CategoryEvictionRisk))

		do(t, c, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
		r = analyze(t, src.URL(), dst.URL(), analysis.Options{})
		assert.Contains(t, finding(t, r, analysis.CategoryMemoryFit).Message, "evict", "an evicting target loses data instead")

		// The data fills about 88 % (MEMORY STATS moves a little between runs).
		do(t, c, "CONFIG", "SET", "maxmemory", strconv.FormatInt(used+need*100/88, 10))
		r = analyze(t, src.URL(), dst.URL(), analysis.Options{})
		assert.Empty(t, r.Find(analysis.CategoryMemoryFit))
		f = finding(t, r, analysis.CategoryEvictionRisk)
		assert.Equal(t, analysis.Warning, f.Severity)
		assert.GreaterOrEqual(t, f.Data["share"], 0.8)

		do(t, c, "CONFIG", "SET", "maxmemory", strconv.FormatInt(used+need*3, 10))
		r = analyze(t, src.URL(), dst.URL(), analysis.Options{})
		assert.Empty(t, r.Find(analysis.CategoryMemoryFit))
		assert.Empty(t, r.Find(analysis.CategoryEvictionRisk), "plenty of room")
	})

	t.Run("a read-only ACL user: missing permissions become findings, the sample still runs", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"),
			kvtest.WithACL("user ro on >ro-secret ~* &* -@all +@read +@connection"))
		dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
		seedStrings(t, src.ClientDB(t, 0), "a", 40, 10, func(i int) int64 { return int64(i%2) * 3_600_000 * 48 })
		seedStrings(t, src.ClientDB(t, 2), "b", 10, 10, noTTL)
		// The user may not run INFO or CLUSTER SLOTS, so the URL says it is
		// not a cluster.
		url := "redis://ro:ro-secret@" + src.Addr() + "?cluster=false"

		r := analyze(t, url, dst.URL(), analysis.Options{})
		assert.Equal(t, "redis", r.Source.Engine, "from HELLO")
		assert.NotEmpty(t, r.Source.Version)
		assert.Equal(t, []analysis.Database{{DB: 0, Keys: 40}, {DB: 2, Keys: 10}}, r.Source.Databases, "from DBSIZE")
		assert.EqualValues(t, 50, r.Sample.Sampled)
		assert.True(t, r.Memory.Available, "MEMORY USAGE is a read command")
		assert.EqualValues(t, 20, r.TTL.Sampled.Under7d)
		assert.Subset(t, r.Source.Denied, []string{"INFO", "CONFIG GET", "MODULE LIST", "ACL USERS", "SLOWLOG GET"})
		assert.Nil(t, r.Source.Modules, "unknown")
		assert.Nil(t, r.Source.Users, "unknown")
		f := finding(t, r, analysis.CategoryPermissions)
		assert.Equal(t, analysis.Warning, f.Severity)
		assert.Equal(t, "source", f.Data["side"])
		assert.Contains(t, f.Message, "+info")
		assert.NotContains(t, f.Message, "ro-secret")
		assert.Empty(t, r.Find(analysis.CategoryACL), "unknown users are not compared")
		assert.Empty(t, r.Find(analysis.CategoryModules), "unknown modules are not compared")
	})
}

// The module rule on module lists this machine cannot load for real (the
// real-server case is above): a source with valkey-json, valkey-bloom and
// Redis 8's built-in vectorset (MODULE LIST gives it no path), a target
// with only bloom.
func TestModuleRuleOnCapturedLists(t *testing.T) {
	src := []analysis.Module{{Name: "bf", Version: 10000}, {Name: "json", Version: 10002}, {Name: "vectorset", Version: 1, BuiltIn: true}}
	dst := []analysis.Module{{Name: "bf", Version: 10000}}
	r := &analysis.Report{Source: analysis.Side{Modules: src}, Target: analysis.Side{Modules: dst}}
	fs := analysis.Findings(r)
	var mods []analysis.Finding
	for _, f := range fs {
		if f.Category == analysis.CategoryModules {
			mods = append(mods, f)
		}
	}
	require.Len(t, mods, 2)
	assert.Equal(t, analysis.Blocking, mods[0].Severity)
	assert.Equal(t, "json", mods[0].Data["module"])
	assert.Equal(t, analysis.Warning, mods[1].Severity, "a built-in module without keys of its types")
	assert.Equal(t, "vectorset", mods[1].Data["module"])

	// Nothing is compared when either list is unknown (null).
	r.Target.Modules = nil
	for _, f := range analysis.Findings(r) {
		assert.NotEqual(t, analysis.CategoryModules, f.Category)
	}
}
