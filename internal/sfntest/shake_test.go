package sfntest_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/awstest"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/job/dynamo"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn/awssecrets"
	"github.com/kvmigrate/kvmigrate/internal/phase"
	"github.com/kvmigrate/kvmigrate/internal/sample"
	"github.com/kvmigrate/kvmigrate/internal/sfntest"
	"github.com/kvmigrate/kvmigrate/internal/shake"
	"github.com/kvmigrate/kvmigrate/internal/shake/shaketest"
)

// The redis-shake branches of the state machine (RunShake:
// ecs:runTask.sync, RunShakeSync: ecs:runTask.waitForTaskToken), end to
// end through the HTTP API: the harness runs shake-task (built from
// ./shake-task) as a local process for each ECS task, against the job
// table and the endpoints' secrets on moto, and serves it the Step
// Functions task token API and the ECS task metadata; the API's cutover
// stops the task as ecs:StopTask does (SIGTERM). Task tokens and the ECS
// integrations are the harness's emulation: aws-local-stepfunctions has
// neither (see ecs.go).
//
// redis-shake cannot be installed here: shake-task runs shaketest's
// stand-in ($REDIS_SHAKE_PATH), which ONLY REPLAYS a captured redis-shake
// log and copies NO DATA. So the tests seed the source AND the target
// identically beforehand, for the validation to pass; they check the
// workflow (states, job record, token calls, events), not the copy.

func TestMain(m *testing.M) {
	if shaketest.StandIn() {
		shaketest.Main(m) // replays a capture and exits
	}
	code := m.Run()
	sfntest.RemoveBuilds()
	os.Exit(code)
}

const shakeTable = "kvmigrate-jobs"

type shakeWorld struct {
	h     *sfntest.Harness
	store *dynamo.Store
	api   *httptest.Server
	// source and target secrets' ARNs (moto's).
	srcARN, dstARN string
}

// newShakeWorld starts moto (DynamoDB, Secrets Manager), the harness with
// shake-task as its ECS task replaying capture, and the API.
func newShakeWorld(t *testing.T, capture, srcPw, dstPw string) *shakeWorld {
	t.Helper()
	binary := sfntest.BuildShakeTask(t)
	moto := awstest.StartMoto(t)
	cfg := awstest.Config(moto)
	db := dynamodb.NewFromConfig(cfg)
	store, err := dynamo.New(db, shakeTable)
	require.NoError(t, err)
	require.NoError(t, store.CreateTable(t.Context()))

	sm := secretsmanager.NewFromConfig(cfg)
	secret := func(name, pw string) string {
		value, err := json.Marshal(map[string]string{"password": pw})
		require.NoError(t, err)
		out, err := sm.CreateSecret(t.Context(), &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(string(value))})
		require.NoError(t, err)
		return *out.ARN
	}
	w := &shakeWorld{store: store, srcARN: secret(secretPrefix+"source", srcPw), dstARN: secret(secretPrefix+"target", dstPw)}

	resolver, err := awssecrets.New(sm, secretPrefix)
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var a *api.API
	w.h = sfntest.New(t, sfntest.Config{
		Definition: sfntest.MigrationDefinition(t, map[string]string{"TableName": shakeTable}),
		Functions:  sfntest.MigrationFunctions(lambdafn.Deps{Store: store, Secrets: resolver, Log: log, SafetyMargin: 5 * time.Second}),
		DynamoDB:   db,
		ECS: &sfntest.ECSConfig{
			Binary: binary,
			Env: []string{
				// The task definition's environment.
				"TABLE_NAME=" + shakeTable,
				"SECRET_NAME_PREFIX=" + secretPrefix,
				"SHAKE_DIR=" + t.TempDir(),
				"HEARTBEAT_SECONDS=1",
				// The stand-in for redis-shake.
				"REDIS_SHAKE_PATH=" + shaketest.Binary(t, capture),
				// The task role's AWS: moto (the harness adds Step Functions).
				"AWS_ENDPOINT_URL=" + moto,
				"AWS_REGION=" + awstest.Region,
				"AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
				"AWS_SECRET_ACCESS_KEY=test-secret",
				"AWS_EC2_METADATA_DISABLED=true",
				"AWS_CONFIG_FILE=/dev/null",
				"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
				"HOME=" + t.TempDir(),
			},
		},
		OnStatusChange: func(ctx context.Context, ev events.CloudWatchEvent) error {
			return a.HandleEvent(ctx, ev)
		},
	})
	a, err = api.New(api.Config{
		Store: store, Executions: w.h.Executions(), SecretPrefix: secretPrefix,
		StateMachineARN: sfntest.StateMachineARN(), Tasks: w.h.ECSTasks(), Log: log,
	})
	require.NoError(t, err)
	w.api = httptest.NewServer(a)
	t.Cleanup(w.api.Close)
	return w
}

func (w *shakeWorld) call(t *testing.T, method, path string, body, out any) int {
	t.Helper()
	return (&apiWorld{api: w.api}).call(t, method, path, body, out)
}

// start starts a migration of mode through the API.
// startSyncUntilReady starts a redis_shake_sync migration through the API
// and waits until the job replicates, ready for cutover.
func (w *shakeWorld) startSyncUntilReady(t *testing.T, src, dst *kvtest.Server) (api.MigrationView, *sfntest.Execution, api.MigrationView) {
	t.Helper()
	v, ex := w.start(t, phase.ModeRedisShakeSync, src, dst, "valkey")
	var got api.MigrationView
	require.Eventually(t, func() bool {
		got = w.get(t, v.ID)
		return got.Shake != nil && got.Shake.ReadyForCutover
	}, waitLimit, 50*time.Millisecond, "ready for cutover; history:\n%s", ex.History())
	return v, ex, got
}

func (w *shakeWorld) start(t *testing.T, mode string, src, dst *kvtest.Server, dstScheme string) (api.MigrationView, *sfntest.Execution) {
	t.Helper()
	var v api.MigrationView
	require.Equal(t, http.StatusAccepted, w.call(t, http.MethodPost, "/migrations", api.MigrationRequest{
		Source: api.EndpointRequest{URL: "redis://" + src.Addr(), SecretARN: w.srcARN},
		Target: api.EndpointRequest{URL: dstScheme + "://" + dst.Addr(), SecretARN: w.dstARN},
		Mode:   mode,
	}, &v))
	e, err := w.h.Execution(v.ExecutionARN)
	require.NoError(t, err)
	return v, e
}

func (w *shakeWorld) get(t *testing.T, id string) api.MigrationView {
	t.Helper()
	var v api.MigrationView
	require.Equal(t, http.StatusOK, w.call(t, http.MethodGet, "/migrations/"+id, nil, &v))
	return v
}

// seedBoth writes the same dataset to the source and the target: the
// stand-in copies nothing (see the top of the file).
func seedBoth(t *testing.T, src, dst *kvtest.Server) {
	t.Helper()
	for _, s := range []*kvtest.Server{src, dst} {
		_, err := sample.Seed(t.Context(), s.Client(t), sample.Options{PerType: 5})
		require.NoError(t, err)
	}
}

func tokenCalls(h *sfntest.Harness, action string) []sfntest.TokenCall {
	var out []sfntest.TokenCall
	for _, c := range h.TokenCalls() {
		if c.Action == action {
			out = append(out, c)
		}
	}
	return out
}

func detailTypes(h *sfntest.Harness) []string {
	var out []string
	for _, e := range h.Events() {
		out = append(out, e.DetailType)
	}
	return out
}

func TestShakeScanRunsTheTaskThenValidates(t *testing.T) {
	t.Parallel()
	e := kvtest.Require(t, "redis-7.0")
	src := kvtest.StartServer(t, e, kvtest.WithPassword("source-pw"))
	dst := kvtest.StartServer(t, e, kvtest.WithPassword("target-pw"))
	seedBoth(t, src, dst)
	w := newShakeWorld(t, "scan-full", "source-pw", "target-pw")

	v, ex := w.start(t, phase.ModeRedisShake, src, dst, "redis")
	res := wait(t, ex)
	require.Equal(t, sfntest.StatusSucceeded, res.Status, "%s: %s\n%s", res.Error, res.Cause, ex.History())
	assert.Equal(t, []string{"Analyze", "AnalysisOnly?", "Blocked?", "Mode?", "RunShake", "Validate", "Passed?", "RecordSuccess", "EmitSucceeded"}, ex.Path())

	runs := w.h.TaskRuns()
	require.Len(t, runs, 1)
	assert.Equal(t, 0, runs[0].ExitCode)
	assert.Equal(t, map[string]string{"JOB_ID": v.ID, "MODE": job.ModeRedisShake}, runs[0].Env, "the container overrides")
	assert.Empty(t, w.h.TokenCalls(), "no task token in scan mode")

	got := w.get(t, v.ID)
	assert.Equal(t, job.StatusSucceeded, got.Status)
	require.NotNil(t, got.Shake)
	assert.Equal(t, int64(958214), got.Shake.Keys, "the replayed capture's progress, written by the task")
	require.NotNil(t, got.Validation)
	assert.True(t, got.Validation.Passed)
	j, err := w.store.Get(t.Context(), v.ID)
	require.NoError(t, err)
	assert.Equal(t, runs[0].ARN, j.TaskARN, "the task ARN from the ECS metadata")
	assert.Equal(t, []string{"Migration Succeeded"}, detailTypes(w.h))
}

func TestShakeSyncCutsOverThroughTheAPI(t *testing.T) {
	t.Parallel()
	src, dst := protectedServers(t)
	seedBoth(t, src, dst)
	w := newShakeWorld(t, "sync-rdb-aof", "source-pw", "target-pw")

	v, ex, got := w.startSyncUntilReady(t, src, dst)
	assert.Equal(t, job.StatusRunning, got.Status)
	assert.Equal(t, string(shake.StageReplicating), got.Stage)
	assert.Zero(t, ex.Entered("Validate"), "the execution waits for the task token")
	require.Eventually(t, func() bool { return len(tokenCalls(w.h, "SendTaskHeartbeat")) >= 2 }, 10*time.Second, 20*time.Millisecond, "heartbeats")

	var cut api.MigrationView
	require.Equal(t, http.StatusAccepted, w.call(t, http.MethodPost, "/migrations/"+v.ID+"/cutover", nil, &cut))

	res := wait(t, ex)
	require.Equal(t, sfntest.StatusSucceeded, res.Status, "%s: %s\n%s", res.Error, res.Cause, ex.History())
	assert.Equal(t, []string{"Analyze", "AnalysisOnly?", "Blocked?", "Mode?", "RunShakeSync", "Validate", "Passed?", "RecordSuccess", "EmitSucceeded"}, ex.Path())

	runs := w.h.TaskRuns()
	require.Len(t, runs, 1)
	assert.Contains(t, runs[0].StopReason, "cutover", "the API stopped the task (ecs:StopTask)")
	token := runs[0].Env["TASK_TOKEN"]
	assert.NotEmpty(t, token, "$$.Task.Token in the container overrides")
	successes := tokenCalls(w.h, "SendTaskSuccess")
	require.Len(t, successes, 1)
	assert.Equal(t, token, successes[0].Token)
	assert.Empty(t, successes[0].Answer)
	assert.Contains(t, successes[0].Output, job.StageCutOver)
	assert.Empty(t, tokenCalls(w.h, "SendTaskFailure"))
	for _, hb := range tokenCalls(w.h, "SendTaskHeartbeat") {
		assert.Equal(t, token, hb.Token)
	}
	assert.Eventually(t, func() bool { return !w.h.TaskRuns()[0].Running }, 10*time.Second, 20*time.Millisecond, "the task exits after its success")
	assert.Equal(t, 0, w.h.TaskRuns()[0].ExitCode)

	got = w.get(t, v.ID)
	assert.Equal(t, job.StatusSucceeded, got.Status)
	require.NotNil(t, got.Validation)
	assert.True(t, got.Validation.Passed)
	assert.Empty(t, got.Request)
	assert.Equal(t, []string{"Migration Succeeded"}, detailTypes(w.h))
}

func TestShakeFailureFailsTheJobWithItsReason(t *testing.T) {
	t.Parallel()
	e := kvtest.Require(t, "redis-7.0")
	src := kvtest.StartServer(t, e, kvtest.WithPassword("source-pw"))
	dst := kvtest.StartServer(t, e, kvtest.WithPassword("target-pw"))
	seedBoth(t, src, dst)
	// The bad-password capture: redis-shake fails to authenticate and exits 1.
	w := newShakeWorld(t, "bad-password", "source-pw", "target-pw")

	v, ex := w.start(t, phase.ModeRedisShake, src, dst, "redis")
	res := wait(t, ex)
	require.Equal(t, sfntest.StatusFailed, res.Status, ex.History())
	assert.Equal(t, []string{"Analyze", "AnalysisOnly?", "Blocked?", "Mode?", "RunShake", "RecordFailure", "EmitFailed", "MigrationFailed"}, ex.Path())
	assert.Zero(t, ex.Entered("Validate"))

	runs := w.h.TaskRuns()
	require.Len(t, runs, 1)
	assert.Equal(t, 1, runs[0].ExitCode)
	var failed *sfntest.TaskCall
	for _, c := range w.h.TaskCalls() {
		if c.State == "RunShake" {
			failed = &c
		}
	}
	require.NotNil(t, failed)
	assert.Equal(t, "States.TaskFailed", failed.Error, "a non-zero exit fails the .sync task")

	got := w.get(t, v.ID)
	assert.Equal(t, job.StatusFailed, got.Status)
	assert.Contains(t, got.Error, "password", "the reason from redis-shake's log")
	assert.NotContains(t, got.Error, "source-pw")
	assert.NotContains(t, got.Error, "target-pw")
	assert.Equal(t, []string{"Migration Failed"}, detailTypes(w.h))
}
