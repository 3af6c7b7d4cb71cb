package validation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/validation"
)

var mixedTypes = []string{"string", "hash", "list", "set", "zset"}

// seedMixed writes n keys named prefix+type+":"+i, the types in turn
// (string, hash, list, set, zset), every third one with a TTL of an hour.
func seedMixed(t *testing.T, c valkey.Client, prefix string, n int) {
	t.Helper()
	var cmds valkey.Commands
	for i := range n {
		typ := mixedTypes[i%len(mixedTypes)]
		k := prefix + typ + ":" + strconv.Itoa(i)
		b := c.B()
		v := "v" + strconv.Itoa(i)
		switch typ {
		case "string":
			cmds = append(cmds, b.Set().Key(k).Value(v).Build())
		case "hash":
			cmds = append(cmds, b.Hset().Key(k).FieldValue().FieldValue("a", v).FieldValue("b", "2").Build())
		case "list":
			cmds = append(cmds, b.Rpush().Key(k).Element(v, "x", v).Build())
		case "set":
			cmds = append(cmds, b.Sadd().Key(k).Member(v, "m").Build())
		case "zset":
			cmds = append(cmds, b.Zadd().Key(k).ScoreMember().ScoreMember(1.5, v).ScoreMember(2, "m").Build())
		}
		if i%3 == 0 {
			cmds = append(cmds, b.Expire().Key(k).Seconds(3600).Build())
		}
	}
	do(t, c, cmds...)
}

// TestFilters validates copies made with a filter (kvmigrate --match,
// --type): only the keys the filter selects are counted, sampled and
// looked up, on both sides. The validation connects as an ACL user that
// may not write.
func TestFilters(t *testing.T) {
	const acl = "user reader on >reader-pw ~* +@read +@connection +info -@write"
	reader := func(s *kvtest.Server) string {
		return fmt.Sprintf("%s://reader:reader-pw@%s", s.Engine.Kind, s.Addr())
	}
	ctx := context.Background()
	// 100 keys of five types; 50 of them match user:*.
	newSource := func(t *testing.T) *kvtest.Server {
		src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"), kvtest.WithACL(acl))
		seedMixed(t, src.Client(t), "user:", 50)
		seedMixed(t, src.Client(t), "other:", 50)
		return src
	}

	t.Run("--match: the 50 of 100 keys copied pass, and damage to them is caught", func(t *testing.T) {
		t.Parallel()
		src := newSource(t)
		dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"), kvtest.WithACL(acl))
		copyMatching(t, src.URL(), dst.URL(), "user:*", "")
		dc := dst.Client(t)
		n, err := dc.Do(ctx, dc.B().Dbsize().Build()).AsInt64()
		require.NoError(t, err)
		require.EqualValues(t, 50, n, "the copy took the matching keys only")
		match := validation.Options{Match: "user:*"}

		rep := validate(t, reader(src), reader(dst), validation.Options{})
		require.False(t, rep.Passed, "without the filter, the 50 keys left out are missing")
		assert.Nil(t, rep.Filter)
		assert.Equal(t, []int64{100, 50}, []int64{rep.KeyCounts[0].Source, rep.KeyCounts[0].Target}, "DBSIZE")

		rep = validate(t, reader(src), reader(dst), match)
		assert.True(t, rep.Passed, "%+v", rep.Issues)
		assert.Empty(t, rep.Issues)
		assert.Zero(t, rep.KeyCountDiscrepancyPct)
		assert.Equal(t, &validation.Filter{Match: "user:*"}, rep.Filter)
		require.Len(t, rep.KeyCounts, 1)
		assert.Equal(t, []int64{50, 50}, []int64{rep.KeyCounts[0].Source, rep.KeyCounts[0].Target}, "the matching keys of each side")
		assert.Equal(t, []validation.MasterCount{{Addr: src.Addr(), Keys: 50}}, rep.KeyCounts[0].SourceMasters)
		assert.True(t, rep.Sample.Exhaustive, "50 matching keys, fewer than the sample")
		assert.Equal(t, 50, rep.Sample.Sampled)
		assert.Equal(t, 50, rep.Sample.Full, "every matching key compared in full")
		assert.Equal(t, 50, rep.Sample.TargetSampled)
		body, err := json.Marshal(rep)
		require.NoError(t, err)
		var got map[string]any
		require.NoError(t, json.Unmarshal(body, &got))
		assert.Equal(t, map[string]any{"match": "user:*"}, got["filter"], "the report says what the counts count")

		t.Run("a sample smaller than the matching keys draws matching keys only", func(t *testing.T) {
			// A non-matching key drawn would be missing on the target.
			for range 3 {
				rep := validate(t, reader(src), reader(dst), validation.Options{Match: "user:*", Sample: 20, TargetSample: 10})
				assert.True(t, rep.Passed, "%+v", rep.Issues)
				assert.False(t, rep.Sample.Exhaustive)
				assert.Equal(t, 20, rep.Sample.Sampled)
				assert.Equal(t, 10, rep.Sample.TargetSampled)
				assert.Equal(t, []validation.ShardSample{
					{Side: "source", Addr: src.Addr(), DB: 0, Keys: 50, Drawn: 20},
					{Side: "target", Addr: dst.Addr(), DB: 0, Keys: 50, Drawn: 10},
				}, rep.Sample.Shards)
			}
		})

		t.Run("keys the filter does not select, on the target or missing there, are no issue", func(t *testing.T) {
			var cmds valkey.Commands
			for i := range 30 {
				cmds = append(cmds, dc.B().Set().Key("session:"+strconv.Itoa(i)).Value("s").Build())
			}
			cmds = append(cmds, dc.B().Set().Key("other:string:0").Value("not the source's").Build())
			do(t, dc, cmds...)
			rep := validate(t, reader(src), reader(dst), match)
			assert.True(t, rep.Passed, "%+v", rep.Issues)
			assert.Equal(t, []int64{50, 50}, []int64{rep.KeyCounts[0].Source, rep.KeyCounts[0].Target})
			assert.Equal(t, 50, rep.Sample.TargetSampled, "only matching target keys are looked up")
		})

		t.Run("a changed, a lost and an extra matching key are caught", func(t *testing.T) {
			do(t, dc,
				dc.B().Set().Key("user:string:5").Value("V5").Build(), // was v5
				dc.B().Del().Key("user:hash:1", "user:list:2").Build(),
				dc.B().Set().Key("user:ghost").Value("g").Build(),
			)
			rep := validate(t, reader(src), reader(dst), match)
			assert.False(t, rep.Passed)
			assert.Equal(t, []string{
				"extra user:ghost",
				"keyCount ",
				"missing user:hash:1",
				"missing user:list:2",
				"value user:string:5",
			}, kinds(rep.Issues))
			assert.Equal(t, validation.IssueKeyCount, rep.Issues[0].Kind)
			assert.Equal(t, "50 matching keys on the source, 49 on the target (1 missing on the target)", rep.Issues[0].Detail)
			assert.Equal(t, 2.0, rep.KeyCountDiscrepancyPct)
		})
	})

	t.Run("--type hash, alone and with --match", func(t *testing.T) {
		t.Parallel()
		src := newSource(t)
		dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"), kvtest.WithACL(acl))
		copyMatching(t, src.URL(), dst.URL(), "", "hash")
		dc := dst.Client(t)
		hashes := validation.Options{Type: "hash"}

		rep := validate(t, reader(src), reader(dst), hashes)
		assert.True(t, rep.Passed, "%+v", rep.Issues)
		assert.Equal(t, &validation.Filter{Type: "hash"}, rep.Filter)
		assert.Equal(t, []int64{20, 20}, []int64{rep.KeyCounts[0].Source, rep.KeyCounts[0].Target}, "10 user: and 10 other: hashes")
		assert.Equal(t, 20, rep.Sample.Sampled)

		rep = validate(t, reader(src), reader(dst), validation.Options{Match: "user:*", Type: "hash"})
		assert.True(t, rep.Passed, "%+v", rep.Issues)
		assert.Equal(t, []int64{10, 10}, []int64{rep.KeyCounts[0].Source, rep.KeyCounts[0].Target})

		// Keys of other types on the target are not the copy's.
		do(t, dc,
			dc.B().Set().Key("user:string:0").Value("not the source's").Build(),
			dc.B().Sadd().Key("only:on:target").Member("m").Build(),
		)
		rep = validate(t, reader(src), reader(dst), hashes)
		assert.True(t, rep.Passed, "%+v", rep.Issues)
		assert.Equal(t, 20, rep.Sample.TargetSampled)

		do(t, dc,
			dc.B().Hset().Key("other:hash:6").FieldValue().FieldValue("a", "changed").Build(),
			dc.B().Hset().Key("extra:hash").FieldValue().FieldValue("f", "v").Build(),
		)
		rep = validate(t, reader(src), reader(dst), hashes)
		assert.False(t, rep.Passed)
		assert.Equal(t, []string{"extra extra:hash", "keyCount ", "value other:hash:6"}, kinds(rep.Issues))
		assert.Equal(t, "20 matching keys on the source, 21 on the target (1 more on the target)", rep.Issues[0].Detail)
	})

	t.Run("a type the copy cannot filter on is refused", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
		_, err := validation.Run(ctx, dial(t, src.URL()), dial(t, src.URL()), validation.Options{Type: "document"})
		require.ErrorIs(t, err, validation.ErrInvalidOptions)
	})

	t.Run("a match of * filters nothing", func(t *testing.T) {
		t.Parallel()
		src := newSource(t)
		rep := validate(t, src.URL(), src.URL(), validation.Options{Match: "*"})
		assert.True(t, rep.Passed)
		assert.Nil(t, rep.Filter)
		assert.EqualValues(t, 100, rep.KeyCounts[0].Source)
	})
}

// A filtered copy between 3-master clusters: the filtered counts are
// summed over every master, the sample is spread over them, and a loss on
// one target master shows in its count.
func TestFiltersOnClusters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := kvtest.StartCluster(t, kvtest.Require(t, "redis-8.0"), 3)
	dst := kvtest.StartCluster(t, kvtest.Require(t, "valkey-8.0"), 3)
	scl := src.Client(t)
	seedMixed(t, scl, "user:", 600)
	seedMixed(t, scl, "other:", 600)
	copyMatching(t, src.URL(), dst.URL(), "user:*", "")

	perMaster := map[string]int64{} // the target holds the matching keys only, so far
	for _, n := range dst.Nodes {
		c := n.Client(t)
		size, err := c.Do(ctx, c.B().Dbsize().Build()).AsInt64()
		require.NoError(t, err)
		perMaster[n.Addr()] = size
	}
	dcl := dst.Client(t)
	var cmds valkey.Commands
	for i := range 100 {
		cmds = append(cmds, dcl.B().Set().Key("session:"+strconv.Itoa(i)).Value("s").Build())
	}
	do(t, dcl, cmds...)

	o := validation.Options{Match: "user:*", Sample: 90, TargetSample: 30}
	rep := validate(t, src.URL(), dst.URL(), o)
	assert.True(t, rep.Passed, "%+v", rep.Issues)
	require.Len(t, rep.KeyCounts, 1)
	assert.Equal(t, []int64{600, 600}, []int64{rep.KeyCounts[0].Source, rep.KeyCounts[0].Target})
	require.Len(t, rep.KeyCounts[0].TargetMasters, 3)
	for _, m := range rep.KeyCounts[0].TargetMasters {
		assert.Equal(t, perMaster[m.Addr], m.Keys, "master %s: its matching keys, not the session keys", m.Addr)
	}
	assert.False(t, rep.Sample.Exhaustive)
	assert.InDelta(t, 90, rep.Sample.Sampled, 3)
	drawn := map[string]int{}
	for _, s := range rep.Sample.Shards {
		if s.Side == "source" {
			drawn[s.Addr] += s.Drawn
		}
	}
	require.Len(t, drawn, 3, "every source master is sampled")
	for addr, d := range drawn {
		assert.Greater(t, d, 15, "master %s: the sample is spread in proportion to the matching keys (about 30 each)", addr)
	}

	// Remove 20 matching keys held by the second target master only.
	node := dst.Nodes[1].Client(t)
	page, err := node.Do(ctx, node.B().Scan().Cursor(0).Match("user:*").Count(1000).Build()).AsScanEntry()
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(page.Elements), 20)
	var dels valkey.Commands
	for _, k := range page.Elements[:20] {
		dels = append(dels, node.B().Del().Key(k).Build())
	}
	do(t, node, dels...)

	rep = validate(t, src.URL(), dst.URL(), o)
	assert.False(t, rep.Passed)
	assert.Equal(t, []int64{600, 580}, []int64{rep.KeyCounts[0].Source, rep.KeyCounts[0].Target})
	for _, m := range rep.KeyCounts[0].TargetMasters {
		want := perMaster[m.Addr]
		if m.Addr == dst.Nodes[1].Addr() {
			want -= 20
		}
		assert.Equal(t, want, m.Keys, "master %s", m.Addr)
	}
	require.NotEmpty(t, rep.Issues)
	assert.Equal(t, validation.IssueKeyCount, rep.Issues[0].Kind)
	assert.Equal(t, "600 matching keys on the source, 580 on the target (20 missing on the target)", rep.Issues[0].Detail)
	for _, is := range rep.Issues[1:] {
		assert.Equal(t, validation.IssueMissing, is.Kind, "the other issues are sampled keys that are gone: %+v", is)
	}
}
