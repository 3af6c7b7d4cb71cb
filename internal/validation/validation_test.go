package validation_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
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
	"github.com/kvmigrate/kvmigrate/internal/validation"
)

// TestMain runs more parallel tests than GOMAXPROCS: new clusters spend
// their first seconds waiting, not computing.
func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", strconv.Itoa(max(runtime.GOMAXPROCS(0), 8)))
	}
	os.Exit(m.Run())
}

func dial(t *testing.T, url string) *endpoint.Conn {
	t.Helper()
	e, err := endpoint.Parse(url)
	require.NoError(t, err)
	c, err := endpoint.Dial(context.Background(), e)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// copyAll copies every key from src to dst with the copy engine, chunk by
// chunk as the workflow does.
func copyAll(t *testing.T, srcURL, dstURL string) {
	t.Helper()
	copyMatching(t, srcURL, dstURL, "", "")
}

// copyMatching copies the keys that SCAN MATCH match TYPE typ selects
// (every key when both are empty), as kvmigrate migrate --match --type.
func copyMatching(t *testing.T, srcURL, dstURL, match, typ string) {
	t.Helper()
	ctx := context.Background()
	src, dst := dial(t, srcURL), dial(t, dstURL)
	sinfo, err := topology.Discover(ctx, src)
	require.NoError(t, err)
	dinfo, err := topology.Discover(ctx, dst)
	require.NoError(t, err)
	c, err := transfer.New(src, dst, transfer.Options{JobID: "vtest", FastPath: dinfo.Accepts(sinfo.RDBVersion),
		SourceFieldTTL: sinfo.HashFieldTTL, TargetFieldTTL: dinfo.HashFieldTTL, Match: match, Type: typ})
	require.NoError(t, err)
	chunks, err := transfer.Plan(sinfo, dinfo, nil)
	require.NoError(t, err)
	for _, ch := range chunks {
		for {
			res, err := c.CopyChunk(ctx, ch, transfer.Limits{})
			require.NoError(t, err)
			require.Zero(t, res.Counters.Failed, "copy failures")
			if res.Done {
				break
			}
			ch = res.Chunk
		}
	}
}

func validate(t *testing.T, srcURL, dstURL string, o validation.Options) validation.Report {
	t.Helper()
	rep, err := validation.Run(context.Background(), dial(t, srcURL), dial(t, dstURL), o)
	require.NoError(t, err)
	return rep
}

// sampleKey is the name sample.Seed gives key i of a kind.
func sampleKey(kind string, i int, ttl bool) string {
	return fmt.Sprintf("%s:%d:%v:%s", kind, i, ttl, sample.Binary[i%len(sample.Binary)])
}

func kinds(issues []validation.Issue) []string {
	var out []string
	for _, is := range issues {
		out = append(out, is.Kind+" "+is.Key)
	}
	slices.Sort(out)
	return out
}

func do(t *testing.T, c valkey.Client, cmds ...valkey.Completed) {
	t.Helper()
	for _, r := range c.DoMulti(context.Background(), cmds...) {
		require.NoError(t, r.Error())
	}
}

func TestCleanCopyPasses(t *testing.T) {
	t.Run("every type in two databases, big keys included, standalone redis 7.0 to valkey 8.0", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
		dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
		ctx := context.Background()
		_, err := sample.Seed(ctx, src.ClientDB(t, 0), sample.Options{PerType: 5, Big: true, BigScale: 4})
		require.NoError(t, err)
		_, err = sample.Seed(ctx, src.ClientDB(t, 5), sample.Options{PerType: 5, Prefix: "db5:"})
		require.NoError(t, err)
		copyAll(t, src.URL(), dst.URL())

		rep := validate(t, src.URL(), dst.URL(), validation.Options{})
		assert.Empty(t, rep.Issues)
		assert.True(t, rep.Passed)
		assert.Zero(t, rep.KeyCountDiscrepancyPct)
		require.Len(t, rep.KeyCounts, 2)
		assert.Equal(t, []int64{75, 75}, []int64{rep.KeyCounts[0].Source, rep.KeyCounts[0].Target}, "db0: 70 sample keys and 5 big ones")
		assert.Equal(t, []int64{70, 70}, []int64{rep.KeyCounts[1].Source, rep.KeyCounts[1].Target}, "db5")
		assert.True(t, rep.Sample.Exhaustive, "145 keys, fewer than the sample: every key is compared")
		assert.Equal(t, 145, rep.Sample.Sampled)
		assert.Equal(t, 140, rep.Sample.Full, "every small key in full")
		assert.Equal(t, 5, rep.Sample.Digest, "the five big keys by digest")
		assert.Empty(t, rep.CountOnly)
		assert.Equal(t, int64(2*(50_000+125_000+12_500+12_500+5_000)), rep.Sample.DigestElements, "every element of the big keys, on both sides")
		assert.Equal(t, "redis", rep.Source.Engine)
		assert.Equal(t, "valkey", rep.Target.Engine)
	})

	t.Run("a 3-master redis 7.0 cluster copied to a valkey 8.1 cluster passes; losing keys on one target master fails", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartCluster(t, kvtest.Require(t, "redis-7.0"), 3)
		dst := kvtest.StartCluster(t, kvtest.Require(t, "valkey-8.1"), 3)
		ctx := context.Background()
		scl := src.Client(t)
		n, err := sample.Seed(ctx, scl, sample.Options{PerType: 5})
		require.NoError(t, err)
		var cmds valkey.Commands
		for i := range 3000 {
			cmds = append(cmds, scl.B().Set().Key("plain:"+strconv.Itoa(i)).Value(strconv.Itoa(i)).Build())
		}
		do(t, scl, cmds...)
		total := int64(n + 3000)
		copyAll(t, src.URL(), dst.URL())

		rep := validate(t, src.URL(), dst.URL(), validation.Options{Sample: 300})
		assert.Empty(t, rep.Issues)
		assert.True(t, rep.Passed)
		require.Len(t, rep.KeyCounts, 1)
		assert.Equal(t, total, rep.KeyCounts[0].Source)
		assert.Equal(t, total, rep.KeyCounts[0].Target)
		assert.False(t, rep.Sample.Exhaustive)
		assert.InDelta(t, 300, rep.Sample.Sampled, 3, "about the requested sample")
		drawn := map[string]int{}
		for _, s := range rep.Sample.Shards {
			if s.Side == "source" {
				drawn[s.Addr] += s.Drawn
			}
		}
		require.Len(t, drawn, 3, "every source master is sampled")
		for addr, d := range drawn {
			assert.Greater(t, d, 60, "master %s: the sample is spread in proportion to the keys (about 100 each)", addr)
		}
		before := map[string]int64{}
		for _, m := range rep.KeyCounts[0].TargetMasters {
			before[m.Addr] = m.Keys
		}

		// Remove 100 keys held by the second target master only.
		node := dst.Nodes[1].Client(t)
		page, err := node.Do(ctx, node.B().Scan().Cursor(0).Match("plain:*").Count(1000).Build()).AsScanEntry()
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(page.Elements), 100)
		var dels valkey.Commands
		for _, k := range page.Elements[:100] {
			dels = append(dels, node.B().Del().Key(k).Build())
		}
		do(t, node, dels...)

		rep = validate(t, src.URL(), dst.URL(), validation.Options{Sample: 300})
		assert.False(t, rep.Passed)
		assert.Equal(t, total, rep.KeyCounts[0].Source)
		assert.Equal(t, total-100, rep.KeyCounts[0].Target, "DBSIZE summed over every master")
		assert.InDelta(t, 100*100/float64(total), rep.KeyCountDiscrepancyPct, 0.001)
		for _, m := range rep.KeyCounts[0].TargetMasters {
			want := before[m.Addr]
			if m.Addr == dst.Nodes[1].Addr() {
				want -= 100
			}
			assert.Equal(t, want, m.Keys, "master %s", m.Addr)
		}
		require.NotEmpty(t, rep.Issues)
		assert.Equal(t, validation.IssueKeyCount, rep.Issues[0].Kind)
		assert.Contains(t, rep.Issues[0].Detail, fmt.Sprintf("%d keys on the source, %d on the target (100 missing on the target)", total, total-100))
		for _, is := range rep.Issues[1:] {
			assert.Equal(t, validation.IssueMissing, is.Kind, "the other issues are sampled keys that are gone: %+v", is)
		}
	})
}

// TestCatchesDamage seeds a source and a target identically in 16
// databases, damages one database of the target per case, and validates
// that database alone. Validation connects as an ACL user that may not
// write, so a write attempt would show up as an error.
func TestCatchesDamage(t *testing.T) {
	const acl = "user reader on >reader-pw ~* +@read +@connection +info -@write"
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"), kvtest.WithACL(acl))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"), kvtest.WithACL(acl))
	ctx := context.Background()
	const bigDB = 3
	for db := range 12 {
		for _, s := range []*kvtest.Server{src, dst} {
			_, err := sample.Seed(ctx, s.ClientDB(t, db), sample.Options{PerType: 5})
			require.NoError(t, err)
		}
	}
	for _, s := range []*kvtest.Server{src, dst} {
		_, err := sample.SeedBig(ctx, s.ClientDB(t, bigDB), "", 4) // a 50k-field hash, 125k list, 12.5k set and zset, 5k stream
		require.NoError(t, err)
	}
	url := func(s *kvtest.Server, db int) string {
		return fmt.Sprintf("%s://reader:reader-pw@%s/%d", s.Engine.Kind, s.Addr(), db)
	}
	run := func(t *testing.T, db int, o validation.Options) validation.Report {
		o.DBs = []int{db}
		return validate(t, url(src, db), url(dst, db), o)
	}

	type want struct{ kind, key, detail string }
	cases := []struct {
		name   string
		db     int
		damage func(c valkey.Client) valkey.Commands
		want   []want
	}{
		{"a missing key", 1, func(c valkey.Client) valkey.Commands {
			return valkey.Commands{c.B().Del().Key(sampleKey("set", 2, true)).Build()}
		}, []want{
			{validation.IssueMissing, sampleKey("set", 2, true), "not on the target (source: set, 4 members, expires in"},
			{validation.IssueKeyCount, "", "70 keys on the source, 69 on the target (1 missing on the target)"},
		}},
		{"a changed string byte", 2, func(c valkey.Client) valkey.Commands {
			return valkey.Commands{c.B().Setrange().Key(sampleKey("string", 4, false)).Offset(5).Value("X").Build()}
		}, []want{
			{validation.IssueValue, sampleKey("string", 4, false), "differs from byte 5 on (13 bytes on both sides)"},
		}},
		{"one field value changed in a 50k-field hash, and a score, a member, an element in other big keys: same lengths, only digests catch them", bigDB,
			func(c valkey.Client) valkey.Commands {
				b := c.B()
				return valkey.Commands{
					b.Hset().Key("big:hash").FieldValue().FieldValue("field\x0031337", "value-219360").Build(), // was value-219359
					b.Arbitrary("ZADD").Keys("big:zset").Args("XX", "1000.0000000000001", "m3000").Build(),     // was 1000
					b.Srem().Key("big:set").Member("member\xff777").Build(),
					b.Sadd().Key("big:set").Member("member\xff-777").Build(),
					b.Lset().Key("big:list").Index(99_999).Element("item\r\n99999!").Build(),
				}
			}, []want{
				{validation.IssueDigest, "big:hash", "same length (50000 fields) on both sides, but the content differs"},
				{validation.IssueDigest, "big:list", "same length (125000 elements)"},
				{validation.IssueDigest, "big:set", "same length (12500 members)"},
				{validation.IssueDigest, "big:zset", "exact scores"},
			}},
		{"a wrong score", 4, func(c valkey.Client) valkey.Commands {
			return valkey.Commands{c.B().Arbitrary("ZADD").Keys(sampleKey("zset", 0, false)).Args("XX", "2e-300", "tiny").Build()}
		}, []want{
			{validation.IssueValue, sampleKey("zset", 0, false), "score of member tiny differs: 1e-300 on the source, 2e-300 on the target"},
		}},
		{"a lost TTL", 5, func(c valkey.Client) valkey.Commands {
			return valkey.Commands{c.B().Persist().Key(sampleKey("hash", 3, true)).Build()}
		}, []want{
			{validation.IssueTTL, sampleKey("hash", 3, true), "TTL lost: the source key expires in 1h0m"},
		}},
		{"a TTL that differs", 5 + 1, func(c valkey.Client) valkey.Commands {
			return valkey.Commands{c.B().Pexpire().Key(sampleKey("list", 0, true)).Milliseconds(600_000).Build()}
		}, []want{
			{validation.IssueTTL, sampleKey("list", 0, true), "TTL differs: the source key expires in "},
		}},
		{"a different type", 7, func(c valkey.Client) valkey.Commands {
			k := sampleKey("list", 1, false)
			return valkey.Commands{c.B().Del().Key(k).Build(), c.B().Set().Key(k).Value("x").Build()}
		}, []want{
			{validation.IssueType, sampleKey("list", 1, false), "type differs: list on the source, string on the target"},
		}},
		{"extra keys on the target", 8, func(c valkey.Client) valkey.Commands {
			var cmds valkey.Commands
			for i := range 3 {
				cmds = append(cmds, c.B().Set().Key("extra:"+strconv.Itoa(i)).Value("v").Build())
			}
			return cmds
		}, []want{
			{validation.IssueExtra, "extra:0", "on the target (string, db 8), not on the source"},
			{validation.IssueExtra, "extra:1", ""},
			{validation.IssueExtra, "extra:2", ""},
			{validation.IssueKeyCount, "", "70 keys on the source, 73 on the target (3 more on the target)"},
		}},
		{"a stream group moved and a hash field changed", 9, func(c valkey.Client) valkey.Commands {
			return valkey.Commands{
				c.B().XgroupSetid().Key(sampleKey("stream", 0, false)).Group("g1").Id("5-0").Build(),
				c.B().Hset().Key(sampleKey("hash", 1, false)).FieldValue().FieldValue("n", "one").Build(),
			}
		}, []want{
			{validation.IssueValue, sampleKey("stream", 0, false), "consumer group g1: last-delivered-id 1-1 on the source, 5-0 on the target"},
			{validation.IssueValue, sampleKey("hash", 1, false), "field n value differs (differs from byte 0 on (1 bytes on the source, 3 on the target))"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rep := run(t, tc.db, validation.Options{})
			require.True(t, rep.Passed, "before the damage: %+v", rep.Issues)

			do(t, dst.ClientDB(t, tc.db), tc.damage(dst.ClientDB(t, tc.db))...)
			rep = run(t, tc.db, validation.Options{})
			assert.False(t, rep.Passed)
			label := func(kind, key string) string {
				if key == "" {
					return kind + " "
				}
				return kind + " " + validation.DisplayName(key)
			}
			var wantKinds []string
			for _, w := range tc.want {
				wantKinds = append(wantKinds, label(w.kind, w.key))
			}
			slices.Sort(wantKinds)
			assert.Equal(t, wantKinds, kinds(rep.Issues), "exactly the damage, nothing else")
			for _, w := range tc.want {
				for _, is := range rep.Issues {
					if label(is.Kind, is.Key) == label(w.kind, w.key) {
						assert.Contains(t, is.Detail, w.detail)
						assert.Equal(t, tc.db, is.DB)
					}
				}
			}
			assert.Empty(t, rep.CountOnly, "the default budget is enough for every digest")
		})
	}

	t.Run("a clean database passes", func(t *testing.T) {
		t.Parallel()
		rep := run(t, 10, validation.Options{})
		assert.True(t, rep.Passed)
		assert.Empty(t, rep.Issues)
		assert.Equal(t, 70, rep.Sample.Full)
		assert.Equal(t, 70, rep.Sample.TargetSampled, "every target key looked up too")
	})

	t.Run("redacted keys name the key by hash and never by name", func(t *testing.T) {
		t.Parallel()
		const db = 11
		k := sampleKey("zset", 3, true)
		do(t, dst.ClientDB(t, db), dst.ClientDB(t, db).B().Arbitrary("ZADD").Keys(k).Args("XX", "7", "huge").Build())
		rep := run(t, db, validation.Options{RedactKeys: true})
		require.Len(t, rep.Issues, 1)
		assert.Equal(t, validation.RedactName(k), rep.Issues[0].Key)
		assert.Regexp(t, `^sha256:[0-9a-f]{32}$`, rep.Issues[0].Key)
		assert.Contains(t, rep.Issues[0].Detail, "score of member "+validation.RedactName("huge")+" differs")
		body, err := json.Marshal(rep)
		require.NoError(t, err)
		assert.NotContains(t, string(body), "zset:3", "no key name")
		assert.NotContains(t, string(body), "huge", "no member name")
		assert.NotContains(t, string(body), "e+300", "no score")
		assert.True(t, rep.KeysRedacted)
	})

	t.Run("when the digest budget runs out, the big keys are listed as compared by count only", func(t *testing.T) {
		// Not parallel: it runs before the damage cases (which are), on
		// the intact big keys.
		rep := run(t, bigDB, validation.Options{Budget: time.Nanosecond})
		var got []string
		for _, c := range rep.CountOnly {
			assert.Equal(t, validation.ReasonBudget, c.Reason)
			got = append(got, fmt.Sprintf("%s %s %d", c.Key, c.Type, c.Elements))
		}
		assert.Equal(t, []string{"big:hash hash 50000", "big:list list 125000", "big:set set 12500", "big:stream stream 5000", "big:zset zset 12500"}, got)
		assert.Equal(t, 5, rep.Sample.CountOnly)
		assert.Zero(t, rep.Sample.Digest)
		for _, is := range rep.Issues {
			assert.NotEqual(t, validation.IssueDigest, is.Kind)
		}
	})
}

func TestBaseline(t *testing.T) {
	t.Run("records five snapshots in the job store, then compares the target after the migration", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
		dst := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
		ctx := context.Background()
		store := job.NewMemory()
		j := job.Job{ID: job.NewID(), Kind: job.KindMigration}
		require.NoError(t, store.Create(ctx, j))

		taken, err := validation.RecordBaseline(ctx, dial(t, dst.URL()), store, j.ID,
			validation.RecordOptions{Count: 5, Window: 400 * time.Millisecond, Interval: 50 * time.Millisecond})
		require.NoError(t, err)
		require.Len(t, taken, 5)
		names, err := store.ReportNames(ctx, j.ID, validation.SnapshotPrefix)
		require.NoError(t, err)
		assert.Len(t, names, 5)
		for i, s := range taken {
			assert.Positive(t, s.UsedMemory)
			assert.Positive(t, s.FragmentationRatio)
			assert.Equal(t, 1, s.Masters)
			if i > 0 {
				assert.True(t, s.At.After(taken[i-1].At))
			}
		}
		assert.GreaterOrEqual(t, taken[4].At.Sub(taken[0].At), 300*time.Millisecond, "spread over the 400 ms window")

		start := time.Now()
		for _, s := range []*kvtest.Server{src, dst} {
			_, err := sample.Seed(ctx, s.Client(t), sample.Options{PerType: 3})
			require.NoError(t, err)
		}
		rep := validate(t, src.URL(), dst.URL(), validation.Options{Baseline: &validation.BaselineCheck{
			Store: store, JobID: j.ID, MigrationStart: start, Interval: 50 * time.Millisecond}})
		require.NotNil(t, rep.Baseline)
		assert.True(t, rep.Baseline.Compared, rep.Baseline.Skipped)
		assert.Equal(t, 5, rep.Baseline.Before)
		var metrics []string
		for _, m := range rep.Baseline.Metrics {
			metrics = append(metrics, m.Metric)
			assert.False(t, m.Regression, "%+v", m)
		}
		assert.Equal(t, []string{"cpuPercent", "opsPerSec", "fragmentationRatio", "usedMemory"}, metrics)
		assert.True(t, rep.Passed, "%+v", rep.Issues)
		all, err := validation.Snapshots(ctx, store, j.ID)
		require.NoError(t, err)
		assert.Len(t, all, 6, "the after snapshot is stored too")
		assert.True(t, all[5].At.After(start))
	})

	t.Run("fewer than five snapshots before the start: not compared, and not an issue", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		var snaps []validation.Snapshot
		for i := range 6 {
			snaps = append(snaps, validation.Snapshot{At: start.Add(time.Duration(i-4) * time.Second), CPUPercent: 1})
		}
		r := validation.CompareBaseline(snaps, validation.Snapshot{At: start.Add(time.Hour), CPUPercent: 99}, start, 0)
		assert.False(t, r.Compared)
		assert.Equal(t, 4, r.Before)
		assert.Equal(t, "4 snapshots taken before the migration started; 5 needed", r.Skipped)
	})

	base := func(f func(i int, s *validation.Snapshot)) []validation.Snapshot {
		var out []validation.Snapshot
		for i := range 5 {
			s := validation.Snapshot{At: time.Unix(int64(1000+i), 0), OpsPerSec: 5000 + float64(i*10), UsedMemory: 1 << 30,
				FragmentationRatio: 1.1, CPUPercent: 30 + float64(i)}
			if f != nil {
				f(i, &s)
			}
			out = append(out, s)
		}
		return out
	}
	steady := validation.Snapshot{At: time.Unix(2000, 0), OpsPerSec: 5010, UsedMemory: 1<<30 + 100<<20, FragmentationRatio: 1.12, CPUPercent: 33}
	for _, tc := range []struct {
		name  string
		after func(s *validation.Snapshot)
		want  []string // metrics that regressed
	}{
		{"steady figures plus the migrated data are no regression", func(*validation.Snapshot) {}, nil},
		{"CPU 25 points above the baseline is a regression", func(s *validation.Snapshot) { s.CPUPercent = 60 }, []string{"cpuPercent"}},
		{"throughput down by a third is a regression", func(s *validation.Snapshot) { s.OpsPerSec = 3300 }, []string{"opsPerSec"}},
		{"fragmentation from 1.1 to 1.6 is a regression", func(s *validation.Snapshot) { s.FragmentationRatio = 1.6 }, []string{"fragmentationRatio"}},
		{"memory grown by more than twice the source's data is a regression", func(s *validation.Snapshot) { s.UsedMemory = 1<<30 + 400<<20 }, []string{"usedMemory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			after := steady
			tc.after(&after)
			r := validation.CompareBaseline(base(nil), after, time.Unix(1500, 0), 150<<20)
			require.True(t, r.Compared)
			var got []string
			for _, m := range r.Metrics {
				if m.Regression {
					got = append(got, m.Metric)
					assert.NotEmpty(t, m.Detail)
				}
			}
			assert.Equal(t, tc.want, got)
		})
	}
	t.Run("an idle baseline cannot regress in throughput, a small heap not in fragmentation", func(t *testing.T) {
		t.Parallel()
		idle := base(func(_ int, s *validation.Snapshot) { s.OpsPerSec, s.UsedMemory, s.FragmentationRatio = 2, 1<<20, 9 })
		r := validation.CompareBaseline(idle, validation.Snapshot{At: time.Unix(2000, 0), OpsPerSec: 0, UsedMemory: 4 << 20,
			FragmentationRatio: 30, CPUPercent: 31}, time.Unix(1500, 0), 0)
		for _, m := range r.Metrics {
			assert.False(t, m.Regression, "%+v", m)
		}
	})
}

func TestReportJSON(t *testing.T) {
	src := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "redis-8.0"))
	for _, s := range []*kvtest.Server{src, dst} {
		do(t, s.Client(t), s.Client(t).B().Set().Key("greeting").Value("hello").Build(),
			s.Client(t).B().Set().Key("same").Value("1").Build())
	}
	do(t, dst.Client(t), dst.Client(t).B().Set().Key("greeting").Value("hellO").Build())
	rep := validate(t, src.URL(), dst.URL(), validation.Options{})
	body, err := json.Marshal(rep)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(body, &got))
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	assert.Equal(t, []string{"countOnly", "elapsedMs", "issues", "keyCountDiscrepancyPct", "keyCounts", "keysRedacted",
		"passed", "sample", "source", "startedAt", "target"}, keys, "stable camelCase fields")
	assert.Equal(t, false, got["passed"])
	issues := got["issues"].([]any)
	require.Len(t, issues, 1)
	assert.Equal(t, map[string]any{"kind": "value", "db": 0.0, "key": "greeting", "type": "string",
		"detail": "differs from byte 4 on (5 bytes on both sides)"}, issues[0])
	counts := got["keyCounts"].([]any)[0].(map[string]any)
	assert.Equal(t, 2.0, counts["source"])
	assert.Equal(t, 2.0, counts["target"])
	assert.Contains(t, counts, "sourceMasters")
	assert.Contains(t, got["sample"], "digestElements")
}

func TestHashFieldTTLs(t *testing.T) {
	t.Parallel()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-8.0"))
	same := kvtest.StartServer(t, kvtest.Require(t, "redis-8.0"))
	without := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1")) // no per-field expiry
	for _, s := range []*kvtest.Server{src, same, without} {
		c := s.Client(t)
		do(t, c, c.B().Hset().Key("session").FieldValue().FieldValue("token", "t").FieldValue("user", "u").Build())
		if s != without {
			do(t, c, c.B().Hpexpire().Key("session").Milliseconds(3_600_000).Fields().Numfields(1).Field("token").Build())
		}
	}
	rep := validate(t, src.URL(), same.URL(), validation.Options{})
	assert.True(t, rep.Passed, "field TTLs carried: %+v", rep.Issues)

	c := same.Client(t)
	do(t, c, c.B().Hpersist().Key("session").Fields().Numfields(1).Field("token").Build())
	rep = validate(t, src.URL(), same.URL(), validation.Options{})
	require.Len(t, rep.Issues, 1)
	assert.Equal(t, validation.IssueTTL, rep.Issues[0].Kind)
	assert.Contains(t, rep.Issues[0].Detail, "hash field TTLs differ: field token: TTL lost: the source field expires in")

	rep = validate(t, src.URL(), without.URL(), validation.Options{})
	require.Len(t, rep.Issues, 1)
	assert.Equal(t, "1 fields have a TTL on the source; the target has no per-field expiry, so they never expire there", rep.Issues[0].Detail)
}
