package transfer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/sample"
	"github.com/kvmigrate/kvmigrate/internal/transfer"
)

// A key of a module type (here Redis 8.0's built-in vectorset, a real
// module type) cannot be copied to Valkey: it has no type commands and
// Valkey refuses Redis 8's RDB 12 payloads. It must fail alone — counted
// and named — while every other key of its shard is copied.
func TestAKeyOfAModuleTypeTheTargetCannotTakeFailsAloneAndTheRestIsCopied(t *testing.T) {
	for _, strategy := range []transfer.Strategy{transfer.StrategyAuto, transfer.StrategyCommands, transfer.StrategyDump} {
		t.Run(string(strategy), func(t *testing.T) {
			t.Parallel()
			r := newRig(t, "redis-8.0", "valkey-8.1")
			ctx := context.Background()
			_, err := sample.Seed(ctx, r.sc, sample.Options{PerType: 20})
			require.NoError(t, err)
			for i := range 3 {
				do(t, r.sc, r.sc.B().Arbitrary("VADD").Keys(fmt.Sprintf("vs:%d", i)).Args("VALUES", "2", "1", "2", "e1").Build())
			}

			res, err := copyShard(ctx, r.copier(t, transfer.Options{Strategy: strategy}), r.chunk())
			require.NoError(t, err, "one key's type must not stop the shard")
			assert.True(t, res.Done)
			assert.EqualValues(t, 3, res.Counters.Failed)
			require.Len(t, res.Errors, 3)
			for _, e := range res.Errors {
				assert.Contains(t, e, `"vectorset"`)
				assert.Contains(t, e, `key "vs:`)
			}
			assert.Empty(t, keys(t, r.dc, "vs:*"))

			do(t, r.sc, r.sc.B().Del().Key("vs:0", "vs:1", "vs:2").Build())
			before := read(t, on(r.sc), 0)
			require.NotEmpty(t, before.keys)
			kvtest.AssertSameData(t, before.keys, snapshot(t, on(r.dc), 0), time.Minute)
			assert.Empty(t, keys(t, r.dc, transfer.TempPrefix+"*"))
		})
	}
}
