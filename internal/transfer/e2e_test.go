package transfer_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/sample"
	"github.com/kvmigrate/kvmigrate/internal/topology"
	"github.com/kvmigrate/kvmigrate/internal/transfer"
)

// side is one started deployment: its URL and a client per database for
// the independent reader.
type side struct {
	url    string
	client func(db int) valkey.Client
}

func standalone(t *testing.T, engine string, opts ...kvtest.Option) side {
	s := kvtest.StartServer(t, kvtest.Require(t, engine), opts...)
	return side{url: s.URL(), client: func(db int) valkey.Client { return s.ClientDB(t, db) }}
}

func cluster(t *testing.T, engine string) side { return clusterOf(t, engine, 3) }

func clusterOf(t *testing.T, engine string, masters int) side {
	c := kvtest.StartCluster(t, kvtest.Require(t, engine), masters)
	cl := c.Client(t)
	return side{url: c.URL(), client: func(db int) valkey.Client {
		require.Zero(t, db, "a cluster has only db 0")
		return cl
	}}
}

func dial(t *testing.T, url string) (*endpoint.Conn, topology.Info) {
	t.Helper()
	ctx := context.Background()
	e, err := endpoint.Parse(url)
	require.NoError(t, err)
	conn, err := endpoint.Dial(ctx, e)
	require.NoError(t, err)
	t.Cleanup(conn.Close)
	info, err := topology.Discover(ctx, conn)
	require.NoError(t, err)
	return conn, info
}

// migration is a copy driven chunk by chunk the way the workflow does.
type migration struct {
	opts     transfer.Options
	limits   transfer.Limits
	dbs      []int
	counters job.Counters
	results  []transfer.Result
}

func (m *migration) run(t *testing.T, src, dst string) {
	t.Helper()
	ctx := context.Background()
	sconn, sinfo := dial(t, src)
	dconn, dinfo := dial(t, dst)
	if m.opts.JobID == "" {
		m.opts.JobID = "test"
	}
	m.opts.FastPath = dinfo.Accepts(sinfo.RDBVersion)
	m.opts.SourceFieldTTL, m.opts.TargetFieldTTL = sinfo.HashFieldTTL, dinfo.HashFieldTTL
	c, err := transfer.New(sconn, dconn, m.opts)
	require.NoError(t, err)
	shards, err := transfer.Plan(sinfo, dinfo, m.dbs)
	require.NoError(t, err)
	for _, ch := range shards {
		for {
			res, err := c.CopyChunk(ctx, ch, m.limits)
			require.NoError(t, err)
			m.counters.Add(res.Counters)
			m.results = append(m.results, res)
			if res.Done {
				break
			}
			ch = res.Chunk
		}
	}
}

func snapshot(t *testing.T, s side, db int) map[string]kvtest.Value {
	return kvtest.Snapshot(context.Background(), t, s.client(db))
}

// before is the source's state, read before the copy starts.
type sourceState struct {
	at   time.Time
	keys map[string]kvtest.Value
}

func read(t *testing.T, s side, db int) sourceState {
	return sourceState{at: time.Now(), keys: snapshot(t, s, db)}
}

// assertCopied reads the target and compares it with the source: TTLs may
// have run down by the time between the two reads, no more.
func assertCopied(t *testing.T, b sourceState, dst side, db int) {
	t.Helper()
	after := snapshot(t, dst, db)
	kvtest.AssertSameData(t, b.keys, after, time.Since(b.at))
}

func seed(t *testing.T, s side, db int, o sample.Options) int {
	n, err := sample.Seed(context.Background(), s.client(db), o)
	require.NoError(t, err)
	return n
}

func TestCopyEveryTypeBetweenEngines(t *testing.T) {
	cases := []struct {
		name     string
		src, dst string
		strategy transfer.Strategy
		big      int // big key scale divisor; 0: no big keys
		// fastPath: DUMP/RESTORE expected to carry the small compound keys.
		fastPath bool
	}{
		{"redis 7.0 to valkey 8.0 takes the DUMP/RESTORE fast path", "redis-7.0", "valkey-8.0", transfer.StrategyAuto, 1, true},
		{"valkey 8.0 to redis 7.0 falls back to commands (RDB 11 > 10)", "valkey-8.0", "redis-7.0", transfer.StrategyAuto, 1, false},
		{"redis 8.0 to valkey 8.1 uses commands (RDB 12)", "redis-8.0", "valkey-8.1", transfer.StrategyAuto, 1, false},
		{"valkey 8.1 to redis 8.0 takes the fast path", "valkey-8.1", "redis-8.0", transfer.StrategyAuto, 1, true},
		{"redis 7.0 to valkey 8.0 with commands only", "redis-7.0", "valkey-8.0", transfer.StrategyCommands, 10, false},
		{"valkey 8.1 to redis 8.0 with dump for every key", "valkey-8.1", "redis-8.0", transfer.StrategyDump, 10, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := standalone(t, tc.src)
			dst := standalone(t, tc.dst)
			n := seed(t, src, 0, sample.Options{PerType: 15, Big: tc.big > 0, BigScale: tc.big})
			before := read(t, src, 0)
			require.Len(t, before.keys, n)

			m := &migration{opts: transfer.Options{Strategy: tc.strategy}}
			m.run(t, src.url, dst.url)

			assertCopied(t, before, dst, 0)
			assert.EqualValues(t, n, m.counters.Copied, "copied counter")
			assert.Zero(t, m.counters.Failed)
			assert.Zero(t, m.counters.FieldTTLsDropped)
			// Each stream has a group with no pending entries.
			assert.Zero(t, m.counters.PendingNotCarried)
			assertNoTempKeys(t, dst, 0)
			for _, r := range m.results {
				assert.Equal(t, !tc.fastPath, r.Commands, "shard ended in commands mode")
			}
		})
	}
}

func TestDumpStrategyFallsBackWhenTheTargetRejectsThePayload(t *testing.T) {
	src := standalone(t, "redis-8.0")
	dst := standalone(t, "valkey-8.0")
	n := seed(t, src, 0, sample.Options{PerType: 4})
	before := read(t, src, 0)

	m := &migration{opts: transfer.Options{Strategy: transfer.StrategyDump}}
	m.run(t, src.url, dst.url)

	assertCopied(t, before, dst, 0)
	assert.EqualValues(t, n, m.counters.Copied)
	assert.Positive(t, m.counters.Fallbacks, "RDB 12 payloads are refused by Valkey 8.0 and counted")
	assert.True(t, m.results[len(m.results)-1].Commands)
}

func TestCopyKeepsHashFieldTTLsBetweenEnginesThatHaveThem(t *testing.T) {
	for _, strategy := range []transfer.Strategy{transfer.StrategyAuto, transfer.StrategyCommands} {
		t.Run("redis 8.0 to redis 8.0 with "+string(strategy), func(t *testing.T) {
			src := standalone(t, "redis-8.0")
			dst := standalone(t, "redis-8.0")
			seedFieldTTLs(t, src.client(0))
			before := read(t, src, 0)
			require.Equal(t, 2500, before.keys["hfe:big"].FieldTTLs)
			require.Equal(t, 2, before.keys["hfe:small"].FieldTTLs)

			m := &migration{opts: transfer.Options{Strategy: strategy}}
			m.run(t, src.url, dst.url)

			assertCopied(t, before, dst, 0)
			assert.Zero(t, m.counters.FieldTTLsDropped)
			// Field expiry times are carried exactly (absolute times).
			ctx := context.Background()
			for _, key := range []string{"hfe:small", "hfe:big"} {
				want := src.client(0).Do(ctx, src.client(0).B().Hpexpiretime().Key(key).Fields().Numfields(2).Field("f0", "f1").Build())
				got := dst.client(0).Do(ctx, dst.client(0).B().Hpexpiretime().Key(key).Fields().Numfields(2).Field("f0", "f1").Build())
				w, err := want.AsIntSlice()
				require.NoError(t, err)
				g, err := got.AsIntSlice()
				require.NoError(t, err)
				assert.Equal(t, w, g, key)
			}
		})
	}
	t.Run("redis 8.0 to valkey 8.1 counts the field TTLs it cannot carry", func(t *testing.T) {
		src := standalone(t, "redis-8.0")
		dst := standalone(t, "valkey-8.1")
		seedFieldTTLs(t, src.client(0))
		m := &migration{}
		m.run(t, src.url, dst.url)
		assert.EqualValues(t, 2502, m.counters.FieldTTLsDropped)
		assert.EqualValues(t, 2, m.counters.Copied)
		got, err := dst.client(0).Do(context.Background(), dst.client(0).B().Hlen().Key("hfe:big").Build()).AsInt64()
		require.NoError(t, err)
		assert.EqualValues(t, 5000, got, "the fields themselves are copied")
	})
}

func seedFieldTTLs(t *testing.T, c valkey.Client) {
	ctx := context.Background()
	b := c.B()
	at := time.Now().Add(time.Hour).UnixMilli()
	fv := b.Hset().Key("hfe:big").FieldValue()
	var withTTL []string
	for i := range 5000 {
		fv = fv.FieldValue(fmt.Sprintf("f%d", i), "v")
		if i%2 == 0 || i == 1 {
			withTTL = append(withTTL, fmt.Sprintf("f%d", i))
		}
	}
	withTTL = withTTL[:2500]
	require.NoError(t, c.Do(ctx, fv.Build()).Error())
	require.NoError(t, c.Do(ctx, b.Hpexpireat().Key("hfe:big").UnixTimeMilliseconds(at).Fields().Numfields(int64(len(withTTL))).Field(withTTL...).Build()).Error())
	require.NoError(t, c.Do(ctx, b.Hset().Key("hfe:small").FieldValue().FieldValue("f0", "a").FieldValue("f1", "b").FieldValue("f2", "c").Build()).Error())
	require.NoError(t, c.Do(ctx, b.Hpexpireat().Key("hfe:small").UnixTimeMilliseconds(at+1234).Fields().Numfields(2).Field("f0", "f1").Build()).Error())
}

func TestCopyAcrossTopologies(t *testing.T) {
	t.Run("standalone valkey 8.0 to a 3-master valkey 8.1 cluster", func(t *testing.T) {
		src := standalone(t, "valkey-8.0")
		dst := cluster(t, "valkey-8.1")
		n := seed(t, src, 0, sample.Options{PerType: 30, Big: true, BigScale: 10})
		before := read(t, src, 0)
		m := &migration{opts: transfer.Options{BatchSize: 50}, limits: transfer.Limits{MaxKeys: 100}}
		m.run(t, src.url, dst.url)
		assertCopied(t, before, dst, 0)
		assert.EqualValues(t, n, m.counters.Copied)
		assert.Greater(t, len(m.results), 3, "the key budget splits the shard into chunks")
		assertNoTempKeys(t, dst, 0)
	})
	t.Run("a redis 7.0 cluster to a valkey 8.0 cluster", func(t *testing.T) {
		src := cluster(t, "redis-7.0")
		dst := cluster(t, "valkey-8.0")
		n := seed(t, src, 0, sample.Options{PerType: 30, Big: true, BigScale: 10})
		before := read(t, src, 0)
		m := &migration{}
		m.run(t, src.url, dst.url)
		assertCopied(t, before, dst, 0)
		assert.EqualValues(t, n, m.counters.Copied)
		nodes := map[string]bool{}
		for _, r := range m.results {
			nodes[r.Node] = true
		}
		assert.Len(t, nodes, 3, "every source master is scanned")
	})
	t.Run("a 4-master valkey 8.1 cluster to a 3-master redis 8.0 cluster: other slot owners", func(t *testing.T) {
		src := clusterOf(t, "valkey-8.1", 4)
		dst := cluster(t, "redis-8.0")
		n := seed(t, src, 0, sample.Options{PerType: 30, Big: true, BigScale: 10})
		before := read(t, src, 0)
		m := &migration{opts: transfer.Options{Strategy: transfer.StrategyCommands}}
		m.run(t, src.url, dst.url)
		assertCopied(t, before, dst, 0)
		assert.EqualValues(t, n, m.counters.Copied)
		nodes := map[string]bool{}
		for _, r := range m.results {
			nodes[r.Node] = true
		}
		assert.Len(t, nodes, 4, "every source master is scanned")
		assertNoTempKeys(t, dst, 0)
	})
	t.Run("several databases of a standalone server to a standalone server", func(t *testing.T) {
		src := standalone(t, "redis-7.0")
		dst := standalone(t, "redis-8.0")
		dbs := []int{0, 3, 15}
		before := map[int]sourceState{}
		for _, db := range dbs {
			seed(t, src, db, sample.Options{PerType: 3, Prefix: fmt.Sprintf("db%d:", db)})
			before[db] = read(t, src, db)
		}
		m := &migration{}
		m.run(t, src.url, dst.url)
		for _, db := range dbs {
			assertCopied(t, before[db], dst, db)
		}
		assert.Empty(t, snapshot(t, dst, 1), "no keys land in databases the source does not use")
	})
	t.Run("a cluster source to a standalone target is refused", func(t *testing.T) {
		_, sinfo := dial(t, cluster(t, "valkey-8.0").url)
		_, dinfo := dial(t, standalone(t, "valkey-8.0").url)
		_, err := transfer.Plan(sinfo, dinfo, nil)
		require.ErrorIs(t, err, transfer.ErrTopology)
	})
	t.Run("databases other than 0 to a cluster are refused, naming them", func(t *testing.T) {
		src := standalone(t, "valkey-8.0")
		seed(t, src, 0, sample.Options{PerType: 1})
		seed(t, src, 2, sample.Options{PerType: 1})
		_, sinfo := dial(t, src.url)
		_, dinfo := dial(t, cluster(t, "valkey-8.0").url)
		_, err := transfer.Plan(sinfo, dinfo, nil)
		require.ErrorIs(t, err, transfer.ErrTopology)
		assert.Contains(t, err.Error(), "db2 (14 keys)")
		shards, err := transfer.Plan(sinfo, dinfo, []int{0})
		require.NoError(t, err)
		assert.Len(t, shards, 1)
	})
}

func assertNoTempKeys(t *testing.T, s side, db int) {
	t.Helper()
	for _, node := range s.client(db).Nodes() {
		keys, err := node.Do(context.Background(), node.B().Keys().Pattern(transfer.TempPrefix+"*").Build()).AsStrSlice()
		require.NoError(t, err)
		assert.Empty(t, keys, "temporary keys left on %s", strings.Join(keys, ", "))
	}
}

func TestMatchAndTypeSelectTheKeysCopied(t *testing.T) {
	cases := []struct {
		name  string
		opts  transfer.Options
		wants func(key string, v kvtest.Value) bool
	}{
		{"a MATCH glob copies only the keys it matches", transfer.Options{Match: "hash:*"},
			func(k string, _ kvtest.Value) bool { return strings.HasPrefix(k, "hash:") }},
		{"a TYPE filter copies only keys of that type", transfer.Options{Type: "zset"},
			func(_ string, v kvtest.Value) bool { return v.Type == "zset" }},
		{"both together intersect", transfer.Options{Match: "*:true:*", Type: "list"},
			func(k string, v kvtest.Value) bool { return v.Type == "list" && strings.Contains(k, ":true:") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := standalone(t, "valkey-8.0")
			dst := standalone(t, "valkey-8.1")
			seed(t, src, 0, sample.Options{PerType: 10})
			all := read(t, src, 0)
			want := sourceState{at: all.at, keys: map[string]kvtest.Value{}}
			for k, v := range all.keys {
				if tc.wants(k, v) {
					want.keys[k] = v
				}
			}
			require.NotEmpty(t, want.keys)
			require.Less(t, len(want.keys), len(all.keys))
			m := &migration{opts: tc.opts}
			m.run(t, src.url, dst.url)
			assertCopied(t, want, dst, 0)
			assert.EqualValues(t, len(want.keys), m.counters.Copied)
		})
	}
}
