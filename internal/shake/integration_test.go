package shake

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/sample"
)

// TestIntegrationRealRedisShake runs a real redis-shake v4 against real
// servers: Redis 7.0 → Redis 7.0 in scan mode, and Redis 7.0 → Valkey 8.0
// in sync mode with writes during replication, then the cutover; both
// compare the data with an independent reader.
//
// It needs REDIS_SHAKE_PATH. CI does not have a redis-shake binary (it
// cannot be installed on these machines), so there it skips, for that
// reason only; the supervisor's process tests run the replaying stand-in
// (fake_test.go) instead.
func TestIntegrationRealRedisShake(t *testing.T) {
	bin := os.Getenv(PathEnv)
	if bin == "" {
		t.Skip("skipped: REDIS_SHAKE_PATH is not set. This test runs a real redis-shake v4 binary, which CI and these " +
			"machines do not have (it cannot be installed here); the process tests use the replaying stand-in instead. " +
			"Set REDIS_SHAKE_PATH=/path/to/redis-shake to run it.")
	}
	if err := isExecutable(bin); err != nil {
		t.Fatalf("REDIS_SHAKE_PATH=%s: %v", bin, err)
	}
	ctx := context.Background()

	t.Run("scan copies Redis 7.0 to Redis 7.0", func(t *testing.T) {
		e := kvtest.Require(t, "redis-7.0")
		src := kvtest.StartServer(t, e, kvtest.WithPassword("src-Pw-1234"))
		dst := kvtest.StartServer(t, e, kvtest.WithPassword("dst-Pw-5678"))
		n, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 20})
		require.NoError(t, err)
		require.Positive(t, n)

		rec := &recorder{}
		opts, logs := withLog(RunOptions{
			Config: Config{Mode: ModeScan, Source: serverEndpoint(t, src), Target: serverEndpoint(t, dst),
				Dir: filepath.Join(t.TempDir(), "shake"), LogInterval: 1},
			Binary: bin, Reporter: rec, ReportEvery: 100 * time.Millisecond, Grace: 10 * time.Second,
		})
		res, err := Run(ctx, opts)
		require.NoError(t, err, "status %+v\nlog:\n%s", res.Status, logs.String())
		assert.Equal(t, 0, res.ExitCode)
		assert.Equal(t, StageDone, res.Status.Stage)
		assert.NotContains(t, logs.String(), "src-Pw-1234")
		assert.NotContains(t, logs.String(), "dst-Pw-5678")
		kvtest.AssertSameData(t, kvtest.Snapshot(ctx, t, src.Client(t)), kvtest.Snapshot(ctx, t, dst.Client(t)), 30*time.Second)
	})

	t.Run("sync replicates Redis 7.0 to Valkey 8.0 until the cutover", func(t *testing.T) {
		src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"), kvtest.WithPassword("src-Pw-1234"))
		dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
		srcClient := src.Client(t)
		_, err := sample.Seed(ctx, srcClient, sample.Options{PerType: 20})
		require.NoError(t, err)

		rec := &recorder{}
		opts, logs := withLog(RunOptions{
			Config: Config{Mode: ModeSync, Source: serverEndpoint(t, src), Target: serverEndpoint(t, dst),
				Dir: filepath.Join(t.TempDir(), "shake"), LogInterval: 1},
			Binary: bin, Reporter: rec, ReportEvery: 100 * time.Millisecond, Grace: 10 * time.Second, ReadyAfter: 2,
		})
		p, err := Start(ctx, opts)
		require.NoError(t, err)
		t.Cleanup(p.Stop)
		require.Eventually(t, func() bool { return p.Status().Stage == StageReplicating }, time.Minute, 50*time.Millisecond,
			"replicating; log:\n%s", logs)

		// Writes during replication: new keys, changes, deletes, TTLs.
		for i := range 300 {
			k := fmt.Sprintf("live:%d", i)
			cmds := valkey.Commands{
				srcClient.B().Set().Key(k).Value(fmt.Sprint(i)).Build(),
				srcClient.B().Hset().Key("live:hash").FieldValue().FieldValue(k, "v").Build(),
				srcClient.B().Rpush().Key("live:list").Element(k).Build(),
			}
			if i%10 == 0 {
				cmds = append(cmds, srcClient.B().Del().Key(fmt.Sprintf("live:%d", i-5)).Build(),
					srcClient.B().Expire().Key(k).Seconds(3600).Build())
			}
			for _, r := range srcClient.DoMulti(ctx, cmds...) {
				require.NoError(t, r.Error())
			}
		}
		require.Eventually(t, func() bool { return p.Status().ReadyForCutover }, time.Minute, 50*time.Millisecond,
			"ready for cutover; log:\n%s", logs)

		p.Stop() // the cutover: writes have stopped and the diff stayed 0
		res, err := wait(t, p)
		require.NoError(t, err, "status %+v\nlog:\n%s", res.Status, logs.String())
		assert.False(t, res.Killed)
		var sawRDB bool
		for _, st := range rec.all() {
			sawRDB = sawRDB || st.Progress.RDBBytesTotal > 0
		}
		assert.True(t, sawRDB, "RDB progress was reported")
		kvtest.AssertSameData(t, kvtest.Snapshot(ctx, t, srcClient), kvtest.Snapshot(ctx, t, dst.Client(t)), 30*time.Second)
	})
}

func serverEndpoint(t *testing.T, s *kvtest.Server) endpoint.Endpoint {
	t.Helper()
	return mustEndpoint(t, s.URL()+"?cluster=false")
}
