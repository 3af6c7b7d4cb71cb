package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
	"github.com/kvmigrate/kvmigrate/internal/shake"
	"github.com/kvmigrate/kvmigrate/internal/shake/shaketest"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// These tests run run() with an in-memory job store, in-memory secrets and
// a recording task token client, and shaketest's stand-in for redis-shake,
// which only replays real redis-shake logs: it copies NO DATA. They check
// the task's side of the contract (the job record, heartbeats, the token's
// success or failure, exit codes), against real servers for the topology.
func TestMain(m *testing.M) { shaketest.Main(m) }

// tokens records the task token calls.
type tokens struct {
	mu         sync.Mutex
	heartbeats int
	succeeded  []string
	failed     [][2]string
	gone       bool // heartbeats answer that the execution is gone
	token      string
}

func (k *tokens) Heartbeat(_ context.Context, token string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.heartbeats++
	k.token = token
	if k.gone {
		return fmt.Errorf("send task heartbeat: %w", errTokenGone)
	}
	return nil
}

func (k *tokens) Succeed(_ context.Context, token, output string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.succeeded = append(k.succeeded, output)
	return nil
}

func (k *tokens) Fail(_ context.Context, token, name, cause string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failed = append(k.failed, [2]string{name, cause})
	return nil
}

func (k *tokens) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.heartbeats
}

const (
	srcARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kvmigrate/src-AbCdEf"
	dstARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kvmigrate/dst-GhIjKl"
	srcPw  = "src-Task-Pw1"
	dstPw  = "dst-Task-Pw2"
)

type fixture struct {
	store  *job.Memory
	tokens *tokens
	cfg    config
	deps   deps
	id     string
}

// newFixture creates an analyzed job of mode whose endpoints need the
// secrets' passwords, and a task for it that runs the stand-in replaying
// capture.
func newFixture(t *testing.T, mode, capture string) *fixture {
	t.Helper()
	e := kvtest.Require(t, "redis-7.0")
	src := kvtest.StartServer(t, e, kvtest.WithPassword(srcPw))
	dst := kvtest.StartServer(t, e, kvtest.WithPassword(dstPw))
	store := job.NewMemory()
	j := job.Job{
		ID: job.NewID(), Kind: job.KindMigration, Mode: mode,
		Source: "redis://" + src.Addr(), Target: "redis://" + dst.Addr(),
		SourceSecretRef: srcARN, TargetSecretRef: dstARN,
		Options: job.Options{OnConflict: "replace", MaxOps: 1000},
	}
	ctx := context.Background()
	require.NoError(t, store.Create(ctx, j))
	for _, s := range []job.Status{job.StatusAnalyzing, job.StatusAnalyzed} {
		_, err := store.Transition(ctx, j.ID, s, nil)
		require.NoError(t, err)
	}
	f := &fixture{store: store, tokens: &tokens{}, id: j.ID}
	f.cfg = config{JobID: j.ID, Mode: mode, Table: "jobs", SecretPrefix: "kvmigrate/", Dir: t.TempDir(), Heartbeat: 20 * time.Millisecond}
	if mode == job.ModeRedisShakeSync {
		f.cfg.TaskToken = "token-1"
	}
	f.deps = deps{
		store: store,
		secrets: lambdafn.StaticSecrets{
			srcARN: {Password: srcPw},
			dstARN: {Username: "default", Password: dstPw},
		},
		tokens: f.tokens,
		log:    slog.New(slog.DiscardHandler),
		shake: workflow.ShakeOptions{Binary: shaketest.Binary(t, capture), Poll: 20 * time.Millisecond,
			ReportEvery: 20 * time.Millisecond, Grace: 5 * time.Second},
	}
	return f
}

// start runs the task in the background; cancel is Fargate's SIGTERM.
func (f *fixture) start(t *testing.T) (cancel context.CancelFunc, code <-chan int) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch := make(chan int, 1)
	go func() { ch <- run(ctx, f.cfg, f.deps) }()
	return cancel, ch
}

func (f *fixture) waitJob(t *testing.T, what string, cond func(job.Job) bool) job.Job {
	t.Helper()
	var j job.Job
	require.Eventually(t, func() bool {
		j, _ = f.store.Get(context.Background(), f.id)
		return cond(j)
	}, 30*time.Second, 10*time.Millisecond, "waiting for %s; job %+v", what, j)
	return j
}

func (f *fixture) job(t *testing.T) job.Job {
	j, err := f.store.Get(context.Background(), f.id)
	require.NoError(t, err)
	return j
}

func exitCode(t *testing.T, code <-chan int) int {
	t.Helper()
	select {
	case c := <-code:
		return c
	case <-time.After(60 * time.Second):
		t.Fatal("the task did not end")
		return -1
	}
}

func TestSyncTaskHeartbeatsThenSucceedsAfterTheCutover(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"the job record's request", "the request, then Fargate's SIGTERM"} {
		t.Run("on "+how, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, job.ModeRedisShakeSync, "sync-rdb-aof")
			f.deps.taskARN = "arn:aws:ecs:eu-west-1:123456789012:task/kvmigrate/0123456789abcdef"
			stop, code := f.start(t)
			j := f.waitJob(t, "ready for cutover", func(j job.Job) bool { return j.Progress.ReadyForCutover })
			assert.Equal(t, f.deps.taskARN, j.TaskARN, "the API can stop the task it finds in the job")
			assert.Equal(t, job.StatusRunning, j.Status)
			assert.Equal(t, string(shake.StageReplicating), j.Stage, "the task writes the stage into the job record")
			assert.Equal(t, int64(30<<20), j.Progress.RDBBytesTotal, "and the progress")
			require.Eventually(t, func() bool { return f.tokens.count() >= 2 }, 10*time.Second, 10*time.Millisecond, "heartbeats")

			// The API's cutover: the request in the record (and a stop of the task).
			_, err := workflow.RequestCutover(context.Background(), f.store, f.id, false)
			require.NoError(t, err)
			if strings.Contains(how, "SIGTERM") {
				stop()
			}
			assert.Equal(t, 0, exitCode(t, code))

			assert.Equal(t, "token-1", f.tokens.token)
			require.Len(t, f.tokens.succeeded, 1, "the token's success lets the execution go on to validate")
			assert.Empty(t, f.tokens.failed)
			var out map[string]string
			require.NoError(t, json.Unmarshal([]byte(f.tokens.succeeded[0]), &out))
			assert.Equal(t, map[string]string{"jobId": f.id, "mode": job.ModeRedisShakeSync, "end": "cut_over", "stage": job.StageCutOver}, out)
			j = f.job(t)
			assert.Equal(t, job.StatusRunning, j.Status, "the validation step moves it on")
			assert.Equal(t, job.StageCutOver, j.Stage)
			assert.Empty(t, j.Request)
		})
	}
}

func TestSyncTaskFailures(t *testing.T) {
	t.Parallel()
	t.Run("SIGTERM without a cutover request fails the token and stops the job", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, job.ModeRedisShakeSync, "sync-rdb-aof")
		stop, code := f.start(t)
		f.waitJob(t, "replicating", func(j job.Job) bool { return j.Stage == string(shake.StageReplicating) })
		stop()
		assert.Equal(t, 1, exitCode(t, code))
		assert.Empty(t, f.tokens.succeeded)
		require.Len(t, f.tokens.failed, 1)
		assert.Equal(t, "ConflictError", f.tokens.failed[0][0])
		assert.Contains(t, f.tokens.failed[0][1], "stopped")
		j := f.job(t)
		assert.Equal(t, job.StatusCancelled, j.Status)
		assert.Contains(t, j.Error, "without a cutover")
	})
	t.Run("a redis-shake failure fails the token with its class and the job with its reason", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, job.ModeRedisShakeSync, "bad-password")
		_, code := f.start(t)
		assert.Equal(t, 1, exitCode(t, code))
		require.Len(t, f.tokens.failed, 1)
		assert.Equal(t, "AuthError", f.tokens.failed[0][0])
		assert.NotContains(t, f.tokens.failed[0][1], srcPw)
		assert.NotContains(t, f.tokens.failed[0][1], dstPw)
		j := f.job(t)
		assert.Equal(t, job.StatusFailed, j.Status)
		assert.Contains(t, j.Error, "password")
		assert.GreaterOrEqual(t, f.tokens.count(), 1, "a heartbeat went first")
	})
	t.Run("an execution that is gone stops redis-shake", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, job.ModeRedisShakeSync, "sync-rdb-aof")
		f.tokens.gone = true
		_, code := f.start(t)
		assert.Equal(t, 1, exitCode(t, code))
		assert.Empty(t, f.tokens.succeeded)
		assert.Equal(t, job.StatusCancelled, f.job(t).Status)
	})
	t.Run("a secret that does not exist fails the job before redis-shake starts", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, job.ModeRedisShakeSync, "sync-rdb-aof")
		f.deps.secrets = lambdafn.StaticSecrets{}
		_, code := f.start(t)
		assert.Equal(t, 1, exitCode(t, code))
		require.Len(t, f.tokens.failed, 1)
		assert.Equal(t, "InvalidInputError", f.tokens.failed[0][0])
		assert.Equal(t, job.StatusFailed, f.job(t).Status)
	})
	t.Run("a task started for the other mode refuses the job", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, job.ModeRedisShake, "scan-full")
		f.cfg.Mode, f.cfg.TaskToken = job.ModeRedisShakeSync, "token-2"
		_, code := f.start(t)
		assert.Equal(t, 1, exitCode(t, code))
		require.Len(t, f.tokens.failed, 1)
		assert.Equal(t, "InvalidInputError", f.tokens.failed[0][0])
	})
}

func TestScanTaskExitCodeDecides(t *testing.T) {
	t.Parallel()
	t.Run("a complete scan exits 0 and leaves the job to the validation", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, job.ModeRedisShake, "scan-full")
		_, code := f.start(t)
		assert.Equal(t, 0, exitCode(t, code))
		assert.Zero(t, f.tokens.count(), "no task token in scan mode")
		j := f.job(t)
		assert.Equal(t, job.StatusRunning, j.Status)
		assert.Equal(t, "copied", j.Stage)
		assert.Equal(t, int64(958214), j.Progress.Keys)
	})
	t.Run("a failed scan exits 1", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, job.ModeRedisShake, "valkey-to-redis-scan")
		_, code := f.start(t)
		assert.Equal(t, 1, exitCode(t, code))
		j := f.job(t)
		assert.Equal(t, job.StatusFailed, j.Status)
		assert.NotEmpty(t, j.Error)
	})
}

func TestLoadConfigReportsEveryProblem(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, err := loadConfig(env(map[string]string{
		EnvJobID: "01jxa9k2c4e6g8j0m2p4r6t8v0", EnvMode: job.ModeRedisShakeSync, EnvTaskToken: "tok",
		EnvTable: "jobs", EnvSecretPrefix: "kvmigrate/", EnvHeartbeat: "30",
	}))
	require.NoError(t, err)
	assert.Equal(t, 30*time.Second, c.Heartbeat)
	assert.Equal(t, "/tmp/shake", c.Dir)

	_, err = loadConfig(env(map[string]string{EnvMode: job.ModeRedisShakeSync, EnvHeartbeat: "0"}))
	require.Error(t, err)
	for _, want := range []string{EnvJobID, EnvTable, EnvSecretPrefix, EnvTaskToken, EnvHeartbeat} {
		assert.Contains(t, err.Error(), want)
	}
	_, err = loadConfig(env(map[string]string{EnvJobID: "x y", EnvMode: "command", EnvTable: "t", EnvSecretPrefix: "p"}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), EnvMode)
	assert.Contains(t, err.Error(), "not a job id")
}

// fakeSFN checks the adapter's calls and error mapping.
type fakeSFN struct {
	err     error
	success *sfn.SendTaskSuccessInput
	failure *sfn.SendTaskFailureInput
}

func (f *fakeSFN) SendTaskHeartbeat(context.Context, *sfn.SendTaskHeartbeatInput, ...func(*sfn.Options)) (*sfn.SendTaskHeartbeatOutput, error) {
	return &sfn.SendTaskHeartbeatOutput{}, f.err
}

func (f *fakeSFN) SendTaskSuccess(_ context.Context, in *sfn.SendTaskSuccessInput, _ ...func(*sfn.Options)) (*sfn.SendTaskSuccessOutput, error) {
	f.success = in
	return &sfn.SendTaskSuccessOutput{}, f.err
}

func (f *fakeSFN) SendTaskFailure(_ context.Context, in *sfn.SendTaskFailureInput, _ ...func(*sfn.Options)) (*sfn.SendTaskFailureOutput, error) {
	f.failure = in
	return &sfn.SendTaskFailureOutput{}, f.err
}

func TestTaskARNFromTheECSMetadata(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "/v4/abc/task", r.URL.Path)
		fmt.Fprint(w, `{"Cluster":"kvmigrate","TaskARN":"arn:aws:ecs:eu-west-1:123456789012:task/kvmigrate/0123","Family":"shake-task"}`)
	}))
	defer srv.Close()
	arn, err := taskARN(context.Background(), srv.URL+"/v4/abc")
	require.NoError(t, err)
	assert.Equal(t, "arn:aws:ecs:eu-west-1:123456789012:task/kvmigrate/0123", arn)

	arn, err = taskARN(context.Background(), "")
	assert.NoError(t, err, "outside ECS there is no metadata")
	assert.Empty(t, arn)
}

func TestSFNTokens(t *testing.T) {
	ctx := context.Background()
	f := &fakeSFN{}
	s := sfnTokens{f}
	require.NoError(t, s.Succeed(ctx, "tok", `{"jobId":"j"}`))
	assert.Equal(t, "tok", *f.success.TaskToken)
	assert.Equal(t, `{"jobId":"j"}`, *f.success.Output)
	require.NoError(t, s.Fail(ctx, "tok", strings.Repeat("E", 300), "cause"))
	assert.Len(t, *f.failure.Error, 256, "Step Functions' limit on the error name")

	for _, gone := range []error{&sfntypes.TaskTimedOut{}, &sfntypes.TaskDoesNotExist{}, &sfntypes.InvalidToken{}} {
		f.err = gone
		assert.ErrorIs(t, s.Heartbeat(ctx, "tok"), errTokenGone, "%T", gone)
	}
	f.err = &sfntypes.InvalidOutput{}
	err := s.Succeed(ctx, "tok", "{")
	require.Error(t, err)
	assert.NotErrorIs(t, err, errTokenGone)
}
