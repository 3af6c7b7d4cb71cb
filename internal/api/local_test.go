package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
	"github.com/kvmigrate/kvmigrate/internal/sample"
)

const targetPassword = "tgt-pass-3c9d"

// local is an API that runs jobs with the local workflow, between a
// Redis 7.0 source and a Valkey 8.1 target whose password is in a secret.
type local struct {
	*server
	src, dst   *kvtest.Server
	executions *api.LocalExecutions
}

func newLocal(t *testing.T) *local {
	t.Helper()
	l := &local{
		src: kvtest.StartServer(t, kvtest.Require(t, "redis-7.0")),
		dst: kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"), kvtest.WithPassword(targetPassword)),
	}
	store := job.NewMemory()
	secrets := lambdafn.StaticSecrets{targetSecret: {Username: "default", Password: targetPassword}}
	l.executions = api.NewLocalExecutions(store, secrets, nil)
	t.Cleanup(l.executions.Close)
	l.server = newServer(t, api.Config{
		Store: store, Executions: l.executions,
		Revalidate: lambdafn.Revalidate(lambdafn.Deps{Store: store, Secrets: secrets}),
	})
	return l
}

func (l *local) body(options map[string]any) map[string]any {
	return map[string]any{
		"source":  map[string]any{"url": "redis://" + l.src.Addr()},
		"target":  map[string]any{"url": "valkey://" + l.dst.Addr(), "secretArn": targetSecret},
		"mode":    "command",
		"options": options,
	}
}

// wait polls GET path until done says the view is there.
func wait[T any](t *testing.T, s *server, path string, done func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var v T
		s.call(http.MethodGet, path, nil, http.StatusOK, &v)
		if done(v) {
			return v
		}
		require.True(t, time.Now().Before(deadline), "%s: still %+v", path, v)
		time.Sleep(50 * time.Millisecond)
	}
}

func TestMigratesThroughTheAPI(t *testing.T) {
	l := newLocal(t)
	ctx := context.Background()
	n, err := sample.Seed(ctx, l.src.Client(t), sample.Options{PerType: 10})
	require.NoError(t, err)
	started := time.Now()
	before := kvtest.Snapshot(ctx, t, l.src.Client(t))

	var v api.MigrationView
	l.call(http.MethodPost, "/migrations", l.body(map[string]any{"chunkKeys": 50}), http.StatusAccepted, &v)
	assert.Contains(t, v.ExecutionARN, v.ID)

	v = wait(t, l.server, "/migrations/"+v.ID, func(v api.MigrationView) bool { return v.FinishedAt.IsZero() == false })
	require.Equal(t, job.StatusSucceeded, v.Status, "error: %s", v.Error)
	assert.EqualValues(t, n, v.Counters.Copied)
	require.Len(t, v.Shards, 1)
	assert.True(t, v.Shards[0].Done)
	assert.EqualValues(t, n, v.Shards[0].Keys, "the shard's key count from the analysis")
	assert.Equal(t, &api.Progress{Shards: 1, ShardsDone: 1, EstimatedKeys: int64(n), KeysDone: int64(n)}, v.Progress)
	require.NotNil(t, v.Analysis)
	assert.False(t, v.Analysis.Blocking)
	require.NotNil(t, v.Validation)
	assert.True(t, v.Validation.Passed)
	assert.Zero(t, v.Validation.IssueCount)
	kvtest.AssertSameData(t, before, kvtest.Snapshot(ctx, t, l.dst.Client(t)), time.Since(started))
	assert.Zero(t, l.executions.Running())

	t.Run("validates it again on request", func(t *testing.T) {
		dst := l.dst.Client(t)
		require.NoError(t, dst.Do(ctx, dst.B().Flushall().Build()).Error())
		var again api.MigrationView
		l.call(http.MethodPost, "/migrations/"+v.ID+"/validations", nil, http.StatusOK, &again)
		require.NotNil(t, again.Validation)
		assert.False(t, again.Validation.Passed, "the emptied target fails")
		assert.Equal(t, job.StatusSucceeded, again.Status)
	})
}

func TestAnalyzesThroughTheAPI(t *testing.T) {
	l := newLocal(t)
	ctx := context.Background()
	n, err := sample.Seed(ctx, l.src.Client(t), sample.Options{PerType: 5})
	require.NoError(t, err)

	var a api.AnalysisView
	body := l.body(map[string]any{"sampleSize": 1000})
	delete(body, "mode")
	l.call(http.MethodPost, "/analyses", body, http.StatusAccepted, &a)
	a = wait(t, l.server, "/analyses/"+a.ID, func(v api.AnalysisView) bool { return v.Status == job.StatusAnalyzed || v.Status == job.StatusFailed })
	require.Equal(t, job.StatusAnalyzed, a.Status, a.Error)
	var rep struct {
		JobID         string `json:"jobId"`
		EstimatedKeys int64  `json:"estimatedKeys"`
		Target        struct {
			Engine string `json:"engine"`
		} `json:"target"`
	}
	require.NoError(t, json.Unmarshal(a.Report, &rep))
	assert.Equal(t, a.ID, rep.JobID)
	assert.EqualValues(t, n, rep.EstimatedKeys)
	assert.Equal(t, "valkey", rep.Target.Engine, "the target was read with the secret's credentials")
	assert.NotContains(t, string(a.Report), targetPassword)

	var e errorBody
	body["target"] = map[string]any{"url": "valkey://" + l.dst.Addr(), "secretArn": sourceSecret}
	l.call(http.MethodPost, "/analyses", body, http.StatusBadRequest, &e)
	assert.Equal(t, "target.secretArn", e.Field, "a secret the server does not know: %s", e.Error)
}

func TestStopsARunningMigrationThroughTheAPI(t *testing.T) {
	l := newLocal(t)
	ctx := context.Background()
	src := l.src.Client(t)
	const keys = 20_000
	cmds := make(valkey.Commands, 0, keys/1000)
	for i := 0; i < keys; i += 1000 {
		mset := src.B().Mset().KeyValue()
		for k := i; k < i+1000; k++ {
			mset = mset.KeyValue("k:"+strconv.Itoa(k), "v")
		}
		cmds = append(cmds, mset.Build())
	}
	for _, r := range src.DoMulti(ctx, cmds...) {
		require.NoError(t, r.Error())
	}

	// 2,000 source commands a second: the copy takes about ten seconds.
	var v api.MigrationView
	l.call(http.MethodPost, "/migrations", l.body(map[string]any{"maxOps": 2000, "sampleSize": 1000, "chunkKeys": 1000}), http.StatusAccepted, &v)
	wait(t, l.server, "/migrations/"+v.ID, func(v api.MigrationView) bool {
		require.False(t, v.Status.Terminal(), "ended before it was stopped: %s %s", v.Status, v.Error)
		return v.Status == job.StatusRunning && v.Counters.Copied > 0
	})
	l.call(http.MethodPost, "/migrations/"+v.ID+"/stop", map[string]any{"reason": "test"}, http.StatusOK, &v)
	assert.Equal(t, job.StatusCancelled, v.Status)
	require.Eventually(t, func() bool { return l.executions.Running() == 0 }, 30*time.Second, 20*time.Millisecond, "the run ends once stopped")

	l.call(http.MethodGet, "/migrations/"+v.ID, nil, http.StatusOK, &v)
	assert.Equal(t, job.StatusCancelled, v.Status, "the run does not overwrite the stop")
	assert.Equal(t, "stopped by request: test", v.Error)
	dst := l.dst.Client(t)
	size, err := dst.Do(ctx, dst.B().Dbsize().Build()).AsInt64()
	require.NoError(t, err)
	assert.Less(t, size, int64(keys), "the copy stopped part way")
}
