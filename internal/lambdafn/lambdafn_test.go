package lambdafn_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/awstest"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/job/dynamo"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
	"github.com/kvmigrate/kvmigrate/internal/phase"
	"github.com/kvmigrate/kvmigrate/internal/sample"
	"github.com/kvmigrate/kvmigrate/internal/transfer"
)

const (
	targetSecret   = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kvmigrate/target-AbCdEf"
	wrongSecret    = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kvmigrate/wrong-AbCdEf"
	missingSecret  = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kvmigrate/missing-AbCdEf"
	targetPassword = "tgt-pass-7f3a"
	bulkKeys       = 60_000
)

// env is what the handler tests share: a Redis 7.0 source, a Valkey 8.0
// target with a password (credentials from a secret), and the DynamoDB
// job store on moto.
type env struct {
	src, dst  *kvtest.Server
	store     job.Store
	deps      lambdafn.Deps
	seeded    int
	srcClient valkey.Client
	dstClient valkey.Client
	sourceURL string
	targetURL string
}

func setup(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{}
	e.src = kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	e.dst = kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"), kvtest.WithPassword(targetPassword))
	e.srcClient, e.dstClient = e.src.Client(t), e.dst.Client(t)

	db := dynamodb.NewFromConfig(awstest.Config(awstest.StartMoto(t)))
	store, err := dynamo.New(db, "jobs-"+job.NewID())
	require.NoError(t, err)
	require.NoError(t, store.CreateTable(ctx))
	e.store = store

	// Keys of every type in db 2 (compared key by key at the end), and in
	// db 0 enough plain strings that a chunk given a fraction of a second
	// cannot copy them all.
	n, err := sample.Seed(ctx, e.src.ClientDB(t, 2), sample.Options{PerType: 10})
	require.NoError(t, err)
	cmds := make(valkey.Commands, 0, bulkKeys/1000)
	for i := 0; i < bulkKeys; i += 1000 {
		mset := e.srcClient.B().Mset().KeyValue()
		for k := i; k < i+1000; k++ {
			mset = mset.KeyValue("bulk:"+strconv.Itoa(k), "v"+strconv.Itoa(k))
		}
		cmds = append(cmds, mset.Build())
	}
	for _, r := range e.srcClient.DoMulti(ctx, cmds...) {
		require.NoError(t, r.Error())
	}
	e.seeded = n + bulkKeys
	e.sourceURL = "redis://" + e.src.Addr()
	e.targetURL = "valkey://default@" + e.dst.Addr()
	e.deps = lambdafn.Deps{
		Store: store,
		Secrets: lambdafn.StaticSecrets{
			targetSecret: {Username: "default", Password: targetPassword},
			wrongSecret:  {Username: "default", Password: "not-the-password"},
		},
		SafetyMargin: 2 * time.Second,
	}
	return e
}

func (e *env) input(id string) phase.AnalyzeInput {
	return phase.AnalyzeInput{
		JobID:   id,
		Source:  phase.Endpoint{URL: e.sourceURL},
		Target:  phase.Endpoint{URL: e.targetURL, SecretARN: targetSecret},
		Options: phase.Options{Mode: phase.ModeCommand, ChunkKeys: 25_000},
	}
}

// errorName is the name Step Functions sees for a handler's error (the Go
// type name, as aws-lambda-go reports it).
func errorName(err error) string {
	t := reflect.TypeOf(err)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.PkgPath() + "." + t.Name()
}

func phaseError(name string) string { return "github.com/kvmigrate/kvmigrate/internal/phase." + name }

func raw(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func TestHandlers(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	started := time.Now() // before the source is read: TTLs run down from here
	sourceDB2 := kvtest.Snapshot(ctx, t, e.src.ClientDB(t, 2))

	analyze, execute, validate := lambdafn.Analyze(e.deps), lambdafn.Execute(e.deps), lambdafn.Validate(e.deps)
	id := job.NewID()

	t.Run("analyze creates the job, stores the report and moves the job to analyzed", func(t *testing.T) {
		out, err := analyze(ctx, e.input(id))
		require.NoError(t, err)
		assert.Equal(t, id, out.JobID)
		assert.False(t, out.Blocking, "Redis 7.0 → Valkey 8.0: nothing blocks")
		assert.EqualValues(t, e.seeded, out.EstimatedKeys)
		assert.Equal(t, []phase.Shard{{Node: e.src.Addr(), DB: 0}, {Node: e.src.Addr(), DB: 2}}, out.Shards)
		require.NoError(t, out.Check(), "the output fits the state")

		j, err := e.store.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, job.StatusAnalyzed, j.Status)
		assert.Equal(t, job.KindMigration, j.Kind)
		assert.Equal(t, job.ModeCommand, j.Mode)
		assert.Equal(t, "valkey://default@"+e.dst.Addr(), j.Target, "the endpoint is stored without credentials")
		assert.Equal(t, targetSecret, j.TargetSecretRef)
		assert.Equal(t, 25_000, j.Options.ChunkKeys)
		var rep struct {
			JobID         string `json:"jobId"`
			EstimatedKeys int64  `json:"estimatedKeys"`
		}
		body, err := e.store.Report(ctx, id, job.ReportAnalysis)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(body, &rep))
		assert.Equal(t, id, rep.JobID)
		assert.EqualValues(t, e.seeded, rep.EstimatedKeys)
		assert.NotContains(t, string(body), targetPassword)
	})

	t.Run("analyze again (a retry after a lost answer) answers from the stored report", func(t *testing.T) {
		out, err := analyze(ctx, e.input(id))
		require.NoError(t, err)
		assert.EqualValues(t, e.seeded, out.EstimatedKeys)
	})

	t.Run("plan stores the shards from cursor 0 and moves the job to running", func(t *testing.T) {
		out, err := execute(ctx, raw(t, phase.PlanInput{JobID: id, Action: phase.ActionPlan}))
		require.NoError(t, err)
		require.IsType(t, &phase.PlanOutput{}, out)
		plan := out.(*phase.PlanOutput)
		assert.Equal(t, []phase.ChunkInput{
			{JobID: id, Node: e.src.Addr(), DB: 0, Cursor: "0"},
			{JobID: id, Node: e.src.Addr(), DB: 2, Cursor: "0"},
		}, plan.Shards)
		j, err := e.store.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, job.StatusRunning, j.Status)
		shards, err := e.store.Shards(ctx, id)
		require.NoError(t, err)
		require.Len(t, shards, 2)
		assert.Equal(t, "0", shards[0].Cursor)
		assert.Equal(t, "0", shards[1].Cursor)
	})

	var next phase.ChunkInput
	t.Run("a chunk that runs out of time returns done=false without error, checkpointed", func(t *testing.T) {
		// A deadline 2.1 s away with a 2 s margin: about 0.1 s of copying
		// for the 60,000 keys.
		cctx, cancel := context.WithTimeout(ctx, 2100*time.Millisecond)
		defer cancel()
		out, err := execute(cctx, raw(t, phase.ChunkInput{JobID: id, Node: e.src.Addr(), DB: 0, Cursor: "0"}))
		require.NoError(t, err, "running out of time is not an error")
		chunk := out.(*phase.ChunkOutput)
		assert.False(t, chunk.Done)
		assert.NotEqual(t, "0", chunk.Cursor)
		assert.Positive(t, chunk.Copied)
		assert.Less(t, chunk.Copied, int64(bulkKeys))
		assert.Zero(t, chunk.Failed)
		require.NoError(t, cctx.Err(), "the chunk returned before its deadline")

		shards, err := e.store.Shards(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, chunk.Cursor, shards[0].Cursor, "the cursor is checkpointed")
		j, err := e.store.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, chunk.Copied, j.Counters.Copied)
		next = chunk.ChunkInput
	})

	t.Run("the next chunks resume from the checkpoint until the shards are done", func(t *testing.T) {
		// The first resumes from the checkpoint even when given the older
		// cursor (an invocation that checkpointed, then lost its answer).
		in := next
		in.Cursor = "0"
		chunks := 0
		for done := false; !done; chunks++ {
			require.Less(t, chunks, 20, "the shard never finished")
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			out, err := lambdafn.Chunk(e.deps)(cctx, in)
			cancel()
			require.NoError(t, err)
			assert.LessOrEqual(t, out.Copied, int64(25_000+transfer.DefaultBatchSize), "chunkKeys bounds a chunk (to the SCAN page)")
			in, done = out.ChunkInput, out.Done
		}
		assert.GreaterOrEqual(t, chunks, 2, "chunkKeys=25000 splits the rest")
		out, err := lambdafn.Chunk(e.deps)(ctx, phase.ChunkInput{JobID: id, Node: e.src.Addr(), DB: 2, Cursor: "0"})
		require.NoError(t, err)
		require.True(t, out.Done, "db 2 fits one chunk")

		j, err := e.store.Get(ctx, id)
		require.NoError(t, err)
		assert.EqualValues(t, e.seeded, j.Counters.Copied)
		kvtest.AssertSameData(t, sourceDB2, kvtest.Snapshot(ctx, t, e.dst.ClientDB(t, 2)), time.Since(started))
		size, err := e.dstClient.Do(ctx, e.dstClient.B().Dbsize().Build()).AsInt64()
		require.NoError(t, err)
		assert.EqualValues(t, bulkKeys, size)
		vals, err := e.dstClient.Do(ctx, e.dstClient.B().Mget().Key("bulk:0", "bulk:31337", "bulk:59999").Build()).AsStrSlice()
		require.NoError(t, err)
		assert.Equal(t, []string{"v0", "v31337", "v59999"}, vals)

		// A done shard answers done at once.
		out, err = lambdafn.Chunk(e.deps)(ctx, in)
		require.NoError(t, err)
		assert.True(t, out.Done)
		assert.Zero(t, out.Copied)
	})

	t.Run("plan of a resumed job leaves the finished shards out", func(t *testing.T) {
		out, err := lambdafn.Plan(e.deps)(ctx, phase.PlanInput{JobID: id, Action: phase.ActionPlan})
		require.NoError(t, err)
		assert.Empty(t, out.Shards)
	})

	t.Run("validate stores the report and passes", func(t *testing.T) {
		out, err := validate(ctx, phase.ValidateInput{JobID: id})
		require.NoError(t, err)
		assert.Equal(t, phase.ValidateOutput{JobID: id, Passed: true}, out)
		j, err := e.store.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, job.StatusValidating, j.Status, "the state machine records the end")
		body, err := e.store.Report(ctx, id, job.ReportValidation)
		require.NoError(t, err)
		assert.Contains(t, string(body), `"passed":true`)
	})

	t.Run("validate checks the target of a redis-shake job that shake-task left running", func(t *testing.T) {
		// No redis-shake runs here: the target already holds the source's
		// data (the command-mode copy above), as redis-shake would leave it.
		for _, mode := range []string{phase.ModeRedisShake, phase.ModeRedisShakeSync} {
			shakeID := job.NewID()
			in := e.input(shakeID)
			in.Options.Mode, in.Options.Force = mode, true
			_, err := analyze(ctx, in)
			require.NoError(t, err)
			_, err = execute(ctx, raw(t, phase.PlanInput{JobID: shakeID, Action: phase.ActionPlan}))
			assert.Equal(t, phaseError("UnsupportedError"), errorName(err), "%s: execute-chunk runs command mode only", mode)
			_, err = e.store.Transition(ctx, shakeID, job.StatusRunning, func(j *job.Job) { j.Stage = job.StageCutOver })
			require.NoError(t, err, "%s: shake-task runs the job", mode)

			out, err := validate(ctx, phase.ValidateInput{JobID: shakeID})
			require.NoError(t, err, mode)
			assert.Equal(t, phase.ValidateOutput{JobID: shakeID, Passed: true}, out, mode)
			body, err := e.store.Report(ctx, shakeID, job.ReportValidation)
			require.NoError(t, err)
			assert.Contains(t, string(body), `"passed":true`)
		}
	})

	t.Run("a chunk of a job that is not running is a ConflictError", func(t *testing.T) {
		_, err := execute(ctx, raw(t, phase.ChunkInput{JobID: id, Node: e.src.Addr(), DB: 0, Cursor: "0"}))
		assert.Equal(t, phaseError("ConflictError"), errorName(err))
	})

	t.Run("revalidate refuses a job that has not ended, then validates it again", func(t *testing.T) {
		_, err := lambdafn.Revalidate(e.deps)(ctx, id)
		assert.Equal(t, phaseError("ConflictError"), errorName(err))
		_, err = e.store.Transition(ctx, id, job.StatusSucceeded, nil)
		require.NoError(t, err)
		gone := make([]string, 1000) // 1.6 % of the keys
		for i := range gone {
			gone[i] = "bulk:" + strconv.Itoa(i)
		}
		require.NoError(t, e.dstClient.Do(ctx, e.dstClient.B().Del().Key(gone...).Build()).Error())
		out, err := lambdafn.Revalidate(e.deps)(ctx, id)
		require.NoError(t, err)
		assert.False(t, out.Passed, "keys deleted from the target are found")
		assert.InDelta(t, 100*1000/float64(e.seeded), out.KeyCountDiscrepancyPct, 0.01)
		j, err := e.store.Get(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, job.StatusSucceeded, j.Status, "the status is left alone")
	})

	t.Run("a migration with blocking findings is left analyzing for the gate", func(t *testing.T) {
		// Valkey → Redis is blocking (type_direction); the analysis writes
		// nothing, so the servers can be used backwards.
		in := phase.AnalyzeInput{
			JobID:   job.NewID(),
			Source:  phase.Endpoint{URL: e.targetURL, SecretARN: targetSecret},
			Target:  phase.Endpoint{URL: e.sourceURL},
			Options: phase.Options{Mode: phase.ModeCommand},
		}
		out, err := analyze(ctx, in)
		require.NoError(t, err)
		assert.True(t, out.Blocking)
		require.NotEmpty(t, out.Findings)
		assert.Equal(t, phase.SeverityBlocking, out.Findings[0].Severity, "blocking findings come first")
		j, err := e.store.Get(ctx, in.JobID)
		require.NoError(t, err)
		assert.Equal(t, job.StatusAnalyzing, j.Status)
		assert.Equal(t, "gate", j.Stage)

		in.JobID, in.Options.Force = job.NewID(), true
		_, err = analyze(ctx, in)
		require.NoError(t, err)
		j, err = e.store.Get(ctx, in.JobID)
		require.NoError(t, err)
		assert.Equal(t, job.StatusAnalyzed, j.Status, "force passes the gate")
	})

	t.Run("an analysis job ends analyzed and frees its slot", func(t *testing.T) {
		in := e.input(job.NewID())
		in.Options = phase.Options{AnalysisOnly: true, SampleSize: 1000}
		require.NoError(t, e.store.Acquire(ctx, in.JobID, job.KindAnalysis, 1))
		_, err := analyze(ctx, in)
		require.NoError(t, err)
		j, err := e.store.Get(ctx, in.JobID)
		require.NoError(t, err)
		assert.Equal(t, job.KindAnalysis, j.Kind)
		assert.Equal(t, job.StatusAnalyzed, j.Status)
		assert.NoError(t, e.store.Acquire(ctx, job.NewID(), job.KindAnalysis, 1), "the one slot is free again")
	})

	t.Run("errors reach Step Functions with their phase type names", func(t *testing.T) {
		unreachable := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
		deadAddr := unreachable.Addr()
		unreachable.Stop()
		for _, tc := range []struct {
			name string
			call func() error
			want string
		}{
			{"a secret that does not exist", func() error {
				in := e.input(job.NewID())
				in.Target.SecretARN = missingSecret
				_, err := analyze(ctx, in)
				return err
			}, "InvalidInputError"},
			{"credentials the server refuses", func() error {
				in := e.input(job.NewID())
				in.Target.SecretARN = wrongSecret
				_, err := analyze(ctx, in)
				return err
			}, "AuthError"},
			{"a server that does not answer", func() error {
				in := e.input(job.NewID())
				in.Source.URL = "redis://" + deadAddr
				_, err := analyze(ctx, in)
				return err
			}, "TransientError"},
			{"an inline password", func() error {
				in := e.input(job.NewID())
				in.Source.URL = "redis://default:hunter22@" + e.src.Addr()
				_, err := analyze(ctx, in)
				assert.NotContains(t, fmt.Sprint(err), "hunter22")
				return err
			}, "InvalidInputError"},
			{"a payload with an unknown field", func() error {
				_, err := execute(ctx, json.RawMessage(`{"jobId":"j1","action":"plan","extra":1}`))
				return err
			}, "InvalidInputError"},
			{"a strict payload with an unknown field", func() error {
				_, err := lambdafn.Strict(validate)(ctx, json.RawMessage(`{"jobId":"j1","extra":1}`))
				return err
			}, "InvalidInputError"},
			{"a plan for no job", func() error {
				_, err := execute(ctx, raw(t, phase.PlanInput{JobID: job.NewID(), Action: phase.ActionPlan}))
				return err
			}, "NotFoundError"},
			{"a chunk of a shard never planned", func() error {
				other := job.NewID()
				_, err := analyze(ctx, e.input(other))
				require.NoError(t, err)
				_, err = execute(ctx, raw(t, phase.PlanInput{JobID: other, Action: phase.ActionPlan}))
				require.NoError(t, err)
				_, err = execute(ctx, raw(t, phase.ChunkInput{JobID: other, Node: "10.9.9.9:6379", DB: 0, Cursor: "0"}))
				return err
			}, "NotFoundError"},
			{"validating a job that is only analyzed", func() error {
				other := job.NewID()
				_, err := analyze(ctx, e.input(other))
				require.NoError(t, err)
				_, err = validate(ctx, phase.ValidateInput{JobID: other})
				return err
			}, "ConflictError"},
			{"handlers without a store", func() error {
				_, err := lambdafn.Analyze(lambdafn.Deps{})(ctx, e.input(job.NewID()))
				return err
			}, "InternalError"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := tc.call()
				require.Error(t, err)
				assert.Equal(t, phaseError(tc.want), errorName(err), "%v", err)
				assert.Contains(t, phase.ErrorNames(), tc.want)
			})
		}
	})
}
