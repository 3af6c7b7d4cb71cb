package transfer_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/sample"
	"github.com/kvmigrate/kvmigrate/internal/transfer"
)

func TestSmallCompoundKeysAreCopiedInBatchesWithoutATemporaryKey(t *testing.T) {
	for _, pair := range [][2]string{{"redis-7.0", "valkey-8.0"}, {"valkey-8.0", "redis-7.0"}} {
		t.Run(pair[0]+" to "+pair[1], func(t *testing.T) {
			r := newRig(t, pair[0], pair[1])
			ctx := context.Background()
			seed(t, on(r.sc), 0, sample.Options{PerType: 60})
			// Sizes up to the batch limit, every encoding, exact score text.
			var cmds valkey.Commands
			b := r.sc.B()
			for i := range 20 {
				k := fmt.Sprintf("small:%d:", i)
				n := 1 + i*50
				h := b.Hset().Key(k + "hash").FieldValue()
				l := make([]string, 0, n)
				s := make([]string, 0, n)
				z := b.Zadd().Key(k + "zset").ScoreMember()
				for j := range n {
					l = append(l, fmt.Sprintf("v\x00%d", j))
					s = append(s, strconv.Itoa(j))
					z = z.ScoreMember(float64(j)/3, fmt.Sprintf("m\xff%d", j))
				}
				for j := range min(n, 100) {
					h = h.FieldValue(fmt.Sprintf("f%d", j), fmt.Sprintf("\x01v%d", j))
				}
				cmds = append(cmds, h.Build(), b.Rpush().Key(k+"list").Element(l...).Build(),
					b.Sadd().Key(k+"set").Member(s...).Build(), z.Build(),
					b.Zadd().Key(k+"zinf").ScoreMember().ScoreMember(1e300, "big").ScoreMember(-0.1, "neg").Build(),
					b.Pexpire().Key(k+"list").Milliseconds(int64(3_600_000+i)).Build())
			}
			cmds = append(cmds, b.Arbitrary("ZADD").Keys("small:inf").Args("inf", "a", "-inf", "b", "0.30000000000000004", "c").Build())
			do(t, r.sc, cmds...)
			// Streams always take the streaming path (a temporary key).
			for k, v := range read(t, on(r.sc), 0).keys {
				if v.Type == "stream" {
					do(t, r.sc, b.Del().Key(k).Build())
				}
			}
			before := read(t, on(r.sc), 0)
			var small int64
			for _, v := range before.keys {
				if v.Type != "string" {
					small++
				}
			}
			do(t, r.dc, r.dc.B().ConfigResetstat().Build())

			c := r.copier(t, transfer.Options{Strategy: transfer.StrategyCommands})
			res, err := copyShard(ctx, c, r.chunk())
			require.NoError(t, err)

			assertCopied(t, before, on(r.dc), 0)
			assert.EqualValues(t, len(before.keys), res.Counters.Copied)
			assert.Zero(t, res.Counters.Failed, "errors: %v", res.Errors)
			calls := commandCalls(t, r.dc)
			assert.Zero(t, calls["rename"], "no small compound key went through a temporary key")
			assert.Equal(t, small, calls["hset"]+calls["rpush"]+calls["sadd"]+calls["zadd"],
				"each small compound key is written by one command")
			assert.Empty(t, keys(t, r.dc, transfer.TempPrefix+"*"), "temporary keys left")
		})
	}
}

func TestNeedsTempKeyFollowsTheCopysRouting(t *testing.T) {
	for _, c := range []struct {
		kind     string
		size     int64
		fastPath bool
		want     bool
	}{
		{"string", 100, false, false}, {"string", 16 << 10, true, true},
		{"hash", 2000, true, false}, {"hash", 2001, true, true},
		{"hash", 1000, false, false}, {"hash", 1001, false, true},
		{"stream", 2, false, true}, {"stream", 2, true, false},
		{"vectorset", 1 << 20, false, false},
	} {
		assert.Equal(t, c.want, transfer.NeedsTempKey(c.kind, c.size, c.fastPath), "%+v", c)
	}
}
