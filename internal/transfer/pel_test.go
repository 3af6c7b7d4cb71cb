package transfer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/transfer"
)

// pelEntry is one entry of a pending entries list as XPENDING shows it.
type pelEntry struct {
	id, consumer string
	idle         int64
	deliveries   int64
}

// readPEL reads a group's whole PEL with the extended XPENDING form.
func readPEL(t *testing.T, c valkey.Client, key, group string) []pelEntry {
	t.Helper()
	arr, err := c.Do(context.Background(), c.B().Xpending().Key(key).Group(group).Start("-").End("+").Count(1_000_000).Build()).ToArray()
	require.NoError(t, err)
	out := make([]pelEntry, 0, len(arr))
	for _, e := range arr {
		p, err := e.ToArray()
		require.NoError(t, err)
		require.Len(t, p, 4)
		var x pelEntry
		x.id, _ = p[0].ToString()
		x.consumer, _ = p[1].ToString()
		x.idle, _ = p[2].AsInt64()
		x.deliveries, _ = p[3].AsInt64()
		out = append(out, x)
	}
	return out
}

func run(t *testing.T, c valkey.Client, cmds ...valkey.Completed) {
	t.Helper()
	for len(cmds) > 0 {
		part := cmds[:min(len(cmds), 1000)]
		cmds = cmds[len(part):]
		for _, r := range c.DoMulti(context.Background(), part...) {
			require.NoError(t, r.Error())
		}
	}
}

// seedPELs writes two streams with consumer groups and pending entries:
//
//   - pel:small, 30 entries; group g1: c1 read 1-10, c2 read 11-20, 1-5
//     acknowledged, 11-12 delivered again (2 deliveries), 13 claimed with
//     RETRYCOUNT 5 and an idle time of an hour, and a consumer "idle" with
//     nothing pending; group g2: c3 read 1-25, 1-20 acknowledged, 22 moved
//     to c4 with 9 deliveries.
//   - pel:big, 20,000 entries; group workers: w0..w3 read 1,500 each, every
//     sixth acknowledged (5,000 pending), every tenth delivered again with
//     RETRYCOUNT 3 and an hour idle; group audit: nothing pending.
func seedPELs(t *testing.T, c valkey.Client) {
	t.Helper()
	ctx := context.Background()
	b := c.B()
	var cmds valkey.Commands
	for i := 1; i <= 30; i++ {
		cmds = append(cmds, b.Xadd().Key("pel:small").Id(fmt.Sprintf("%d-0", i)).FieldValue().FieldValue("n", fmt.Sprint(i)).Build())
	}
	cmds = append(cmds,
		b.XgroupCreate().Key("pel:small").Group("g1").Id("0").Build(),
		b.XgroupCreate().Key("pel:small").Group("g2").Id("0").Build(),
		b.Xreadgroup().Group("g1", "c1").Count(10).Streams().Key("pel:small").Id(">").Build(),
		b.Xreadgroup().Group("g1", "c2").Count(10).Streams().Key("pel:small").Id(">").Build(),
		b.Xack().Key("pel:small").Group("g1").Id("1-0", "2-0", "3-0", "4-0", "5-0").Build(),
		b.Xclaim().Key("pel:small").Group("g1").Consumer("c2").MinIdleTime("0").Id("11-0", "12-0").Build(),
		b.Xclaim().Key("pel:small").Group("g1").Consumer("c1").MinIdleTime("0").Id("13-0").Idle(3_600_000).Retrycount(5).Justid().Build(),
		b.XgroupCreateconsumer().Key("pel:small").Group("g1").Consumer("idle").Build(),
		b.Xreadgroup().Group("g2", "c3").Count(25).Streams().Key("pel:small").Id(">").Build(),
	)
	for i := 1; i <= 20; i++ {
		cmds = append(cmds, b.Xack().Key("pel:small").Group("g2").Id(fmt.Sprintf("%d-0", i)).Build())
	}
	cmds = append(cmds, b.Xclaim().Key("pel:small").Group("g2").Consumer("c4").MinIdleTime("0").Id("22-0").Retrycount(9).Justid().Build())
	for i := 1; i <= 20_000; i++ {
		cmds = append(cmds, b.Xadd().Key("pel:big").Id(fmt.Sprintf("%d-1", i)).FieldValue().FieldValue("payload", fmt.Sprintf("p%d\x00", i)).Build())
	}
	cmds = append(cmds,
		b.XgroupCreate().Key("pel:big").Group("workers").Id("0").Build(),
		b.XgroupCreate().Key("pel:big").Group("audit").Id("100-1").Build())
	for w := range 4 {
		cmds = append(cmds, b.Xreadgroup().Group("workers", fmt.Sprintf("w%d", w)).Count(1500).Streams().Key("pel:big").Id(">").Build())
	}
	run(t, c, cmds...)
	cmds = cmds[:0]
	for i := 1; i <= 6000; i++ {
		id := fmt.Sprintf("%d-1", i)
		switch {
		case i%6 == 0:
			cmds = append(cmds, b.Xack().Key("pel:big").Group("workers").Id(id).Build())
		case i%10 == 1:
			cmds = append(cmds, b.Xclaim().Key("pel:big").Group("workers").Consumer(fmt.Sprintf("w%d", (i/1500+1)%4)).
				MinIdleTime("0").Id(id).Idle(3_600_000).Retrycount(3).Justid().Build())
		}
	}
	run(t, c, cmds...)
	require.Len(t, readPEL(t, c, "pel:big", "workers"), 5000)
	n, err := c.Do(ctx, b.Xlen().Key("pel:big").Build()).AsInt64()
	require.NoError(t, err)
	require.EqualValues(t, 20_000, n)
}

var pelGroups = []struct{ key, group string }{
	{"pel:small", "g1"}, {"pel:small", "g2"}, {"pel:big", "workers"}, {"pel:big", "audit"},
}

func TestCopyCarriesStreamPendingEntriesWithCommands(t *testing.T) {
	cases := []struct {
		name     string
		src, dst string
		strategy transfer.Strategy
	}{
		{"valkey 8.0 to redis 7.0 (commands forced by the RDB version)", "valkey-8.0", "redis-7.0", transfer.StrategyAuto},
		{"redis 7.0 to valkey 8.1 with --strategy commands", "redis-7.0", "valkey-8.1", transfer.StrategyCommands},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := standalone(t, tc.src)
			dst := standalone(t, tc.dst)
			seedPELs(t, src.client(0))
			before := read(t, src, 0)
			require.Equal(t, 15+5+5000, before.keys["pel:small"].Pending+before.keys["pel:big"].Pending)
			want := map[string][]pelEntry{}
			srcAt := time.Now() // before the source's idle times are read
			for _, g := range pelGroups {
				want[g.key+"/"+g.group] = readPEL(t, src.client(0), g.key, g.group)
			}

			m := &migration{opts: transfer.Options{Strategy: tc.strategy}}
			m.run(t, src.url, dst.url)

			for _, r := range m.results {
				require.True(t, r.Commands, "the copy used type commands")
			}
			assert.Zero(t, m.counters.Failed)
			assert.EqualValues(t, 2, m.counters.Copied)
			assert.Zero(t, m.counters.PendingNotCarried, "every pending entry is carried")
			// Entries, metadata, groups (last-delivered ID, entries-read),
			// consumers (those with nothing pending too) and PELs (IDs,
			// consumers, delivery counts), read independently.
			assertCopied(t, before, dst, 0)
			for _, g := range pelGroups {
				got := readPEL(t, dst.client(0), g.key, g.group)
				elapsed := time.Since(srcAt) // the target's idle times were read before
				w := want[g.key+"/"+g.group]
				require.Len(t, got, len(w), "%s %s", g.key, g.group)
				for i := range w {
					assert.Equal(t, []any{w[i].id, w[i].consumer, w[i].deliveries}, []any{got[i].id, got[i].consumer, got[i].deliveries},
						"%s %s entry %d", g.key, g.group, i)
					// Idle times run on from the source's by at most the
					// time between the two reads (the copy's duration and
					// the checks above).
					assert.GreaterOrEqual(t, got[i].idle, w[i].idle-5, "%s %s %s idle", g.key, g.group, w[i].id)
					assert.LessOrEqual(t, got[i].idle, w[i].idle+elapsed.Milliseconds()+5, "%s %s %s idle", g.key, g.group, w[i].id)
				}
			}
		})
	}
}

func TestCopyCountsPendingEntriesDeletedFromTheStream(t *testing.T) {
	src := standalone(t, "valkey-8.0")
	dst := standalone(t, "redis-7.0")
	sc := src.client(0)
	seedPELs(t, sc)
	// Two pending entries of g1 and one of g2 are deleted from the stream
	// while pending (XDEL leaves them in the PELs).
	run(t, sc, sc.B().Xdel().Key("pel:small").Id("7-0", "13-0", "22-0").Build())
	wantG1 := readPEL(t, sc, "pel:small", "g1")
	wantG2 := readPEL(t, sc, "pel:small", "g2")
	require.Len(t, wantG1, 15)
	require.Len(t, wantG2, 5)
	bigBefore := read(t, src, 0).keys["pel:big"]

	m := &migration{}
	m.run(t, src.url, dst.url)

	assert.Zero(t, m.counters.Failed)
	assert.EqualValues(t, 3, m.counters.PendingNotCarried, "the three deleted pending entries")
	deleted := map[string]bool{"7-0": true, "13-0": true, "22-0": true}
	for group, want := range map[string][]pelEntry{"g1": wantG1, "g2": wantG2} {
		var kept [][]any
		for _, e := range want {
			if !deleted[e.id] {
				kept = append(kept, []any{e.id, e.consumer, e.deliveries})
			}
		}
		var got [][]any
		for _, e := range readPEL(t, dst.client(0), "pel:small", group) {
			got = append(got, []any{e.id, e.consumer, e.deliveries})
		}
		assert.Equal(t, kept, got, "group %s: every other pending entry is carried", group)
	}
	// The group's last-delivered ID and entries-read are untouched by the
	// claims, and the other stream is whole.
	after := snapshot(t, dst, 0)
	assert.Equal(t, bigBefore, after["pel:big"])
	ctx := context.Background()
	for _, c := range []valkey.Client{sc, dst.client(0)} {
		groups, err := c.Do(ctx, c.B().XinfoGroups().Key("pel:small").Build()).ToArray()
		require.NoError(t, err)
		require.Len(t, groups, 2)
		g1, err := groups[0].AsMap()
		require.NoError(t, err)
		last, entries := g1["last-delivered-id"], g1["entries-read"]
		ls, _ := last.ToString()
		rn, _ := entries.AsInt64()
		assert.Equal(t, "20-0", ls)
		assert.EqualValues(t, 20, rn)
	}
}
