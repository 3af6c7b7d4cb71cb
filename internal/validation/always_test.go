package validation_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/validation"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// bigKeys are those of kvtest.SeedSmallAndBig.
var bigKeys = kvtest.BigKeys

// largestKeys analyses src against dst with a sample that covers every
// key, and returns the report's largest keys as the workflow passes them.
func largestKeys(t *testing.T, srcURL, dstURL string) []validation.KeyRef {
	t.Helper()
	rep, err := analysis.Analyze(context.Background(), dial(t, srcURL), dial(t, dstURL), analysis.Options{Sample: analysis.MaxSample})
	require.NoError(t, err)
	keys := workflow.LargestKeys(rep)
	names := map[string]bool{}
	for _, k := range keys {
		names[k.Key] = true
	}
	for k := range bigKeys {
		require.True(t, names[k], "the analysis lists %s among its largest keys", k)
	}
	return keys
}

func TestAlwaysComparesTheLargestKeys(t *testing.T) {
	t.Parallel()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	kvtest.SeedSmallAndBig(t, src.ClientDB(t, 0))
	copyAll(t, src.URL(), dst.URL())
	always := largestKeys(t, src.URL(), dst.URL())
	var want int64
	for _, n := range bigKeys {
		want += 2 * n
	}

	t.Run("the random sample alone almost never digests the four big keys", func(t *testing.T) {
		// 500 of 20,004 keys: each big key is drawn with a chance of
		// about 2.5 %, all four about once in 2.5 million runs.
		rep := validate(t, src.URL(), dst.URL(), validation.Options{})
		assert.True(t, rep.Passed)
		assert.Zero(t, rep.Sample.Always)
		assert.Less(t, rep.Sample.Digest, 4, "the problem this option solves")
	})

	t.Run("with the analysis's largest keys, every run digests all four big keys", func(t *testing.T) {
		for run := range 3 {
			rep := validate(t, src.URL(), dst.URL(), validation.Options{Always: always})
			assert.True(t, rep.Passed, "run %d: %v", run, rep.Issues)
			assert.Equal(t, 4, rep.Sample.Digest, "run %d: the big keys, and only they, by digest", run)
			assert.Empty(t, rep.CountOnly, "run %d", run)
			assert.Equal(t, want, rep.Sample.DigestElements, "run %d: every element of the big keys, on both sides", run)
			assert.Positive(t, rep.Sample.Always, "run %d", run)
			assert.LessOrEqual(t, rep.Sample.Always, len(always), "run %d", run)
			assert.Equal(t, rep.Sample.Full+rep.Sample.Digest, rep.Sample.Sampled+rep.Sample.Always,
				"run %d: each drawn or named key compared once", run)
		}
	})

	t.Run("one changed field deep in the big hash is caught, and the issue names the hash", func(t *testing.T) {
		dcl := dst.ClientDB(t, 0)
		do(t, dcl, dcl.B().Hset().Key("big:hash").FieldValue().FieldValue("field:41234", "changed").Build())
		t.Cleanup(func() {
			do(t, dcl, dcl.B().Hset().Key("big:hash").FieldValue().FieldValue("field:41234", "value:41234").Build())
		})
		rep := validate(t, src.URL(), dst.URL(), validation.Options{Always: always})
		assert.False(t, rep.Passed)
		assert.Equal(t, []string{validation.IssueDigest + " big:hash"}, kinds(rep.Issues))
		assert.Equal(t, 4, rep.Sample.Digest)
	})

	t.Run("a named key gone from the source is not an issue", func(t *testing.T) {
		rep := validate(t, src.URL(), dst.URL(), validation.Options{Always: []validation.KeyRef{{Key: "expired:meanwhile"}}})
		assert.True(t, rep.Passed, "%v", rep.Issues)
		assert.Equal(t, 1, rep.Sample.Always)
		assert.Equal(t, 1, rep.Sample.Vanished)
	})
}

// TestAlwaysFollowsDatabasesAndFilters: the named keys go through the
// database mapping and the copy filter like the sampled ones.
func TestAlwaysFollowsDatabasesAndFilters(t *testing.T) {
	t.Parallel()
	src := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	// Source db 3 maps to target db 0 (single-database mode). Both sides
	// are written directly: each big key differs in one element on the
	// target, so a named key that is compared is an issue.
	s3, d0 := src.ClientDB(t, 3), dst.ClientDB(t, 0)
	for _, side := range []struct {
		c       valkey.Client
		changed string
	}{{s3, "v"}, {d0, "changed"}} {
		var cmds valkey.Commands
		for i := range 2000 {
			cmds = append(cmds, side.c.B().Set().Key("small:"+strconv.Itoa(i)).Value("v").Build())
		}
		for _, k := range []string{"big:hash", "other:hash", "big:[x]"} {
			h := side.c.B().Hset().Key(k).FieldValue()
			for j := range 500 {
				v := "v"
				if j == 321 {
					v = side.changed
				}
				h = h.FieldValue(fmt.Sprintf("f%d", j), v)
			}
			cmds = append(cmds, h.Build())
		}
		els := make([]string, 500)
		for j := range els {
			els[j] = "v"
		}
		els[321] = side.changed
		cmds = append(cmds, side.c.B().Rpush().Key("big:list").Element(els...).Build())
		do(t, side.c, cmds...)
	}
	// In source db 0 (not validated) a key of the same name.
	s0 := src.ClientDB(t, 0)
	do(t, s0, s0.B().Set().Key("small:1").Value("v").Build())

	base := validation.Options{Sample: 20, TargetSample: -1, DBs: []int{3}, TargetDB: func(int) int { return 0 }}
	named := []validation.KeyRef{{DB: 3, Key: "big:hash"}, {DB: 3, Key: "other:hash"}, {DB: 3, Key: "big:list"},
		{DB: 3, Key: "big:[x]"}, {DB: 0, Key: "small:1"}, {DB: 3, Key: "big:hash"}}
	tests := []struct {
		name       string
		match, typ string
		wantAlways int
		wantIssues []string
	}{
		{
			name:       "without a filter every named key of the validated database is compared once, in its target database",
			wantAlways: 4,
			wantIssues: []string{"digest big:[x]", "digest big:hash", "digest big:list", "digest other:hash"},
		},
		{
			name:       "a glob drops the named keys it does not select (Redis's matcher: a class, quoted)",
			match:      `big:*`,
			wantAlways: 3,
			wantIssues: []string{"digest big:[x]", "digest big:hash", "digest big:list"},
		},
		{
			name:       "a glob with an escaped bracket selects that key only",
			match:      `big:\[x]`,
			wantAlways: 1,
			wantIssues: []string{"digest big:[x]"},
		},
		{
			name:       "a type filter drops the named keys of other types",
			match:      "big:*",
			typ:        "hash",
			wantAlways: 2,
			wantIssues: []string{"digest big:[x]", "digest big:hash"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			o.Match, o.Type, o.Always = tt.match, tt.typ, named
			rep := validate(t, src.URL(), dst.URL(), o)
			// The sample (20 of 2004 keys) may draw a big key too: it is
			// then compared once, as a sampled key.
			assert.GreaterOrEqual(t, rep.Sample.Always, tt.wantAlways-rep.Sample.Sampled)
			assert.LessOrEqual(t, rep.Sample.Always, tt.wantAlways)
			assert.Equal(t, tt.wantIssues, kinds(rep.Issues))
			for _, is := range rep.Issues {
				assert.Equal(t, 3, is.DB, "reported under its source database")
			}
		})
	}
}
