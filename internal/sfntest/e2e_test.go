package sfntest_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
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
	"github.com/kvmigrate/kvmigrate/internal/sfntest"
)

// End to end: the committed state machine (template.yaml's substitutions)
// in aws-local-stepfunctions, our Lambda handlers (lambdafn, as the
// functions wire them) on real Redis and Valkey servers, the job table on
// moto's DynamoDB. Each test checks the execution's path, the job record
// and reports, the events sent, and the target's data read independently.

const (
	// chunkKeys bounds a chunk's keys. A chunk stops between SCAN pages
	// (COUNT transfer.DefaultBatchSize), so the datasets hold several pages
	// per shard.
	chunkKeys = 40
	// ttlTolerance: TTLs drift by the test's own duration.
	ttlTolerance = 30 * time.Second
)

// world is one test's AWS side: the job table and the harness.
type world struct {
	h     *sfntest.Harness
	store *dynamo.Store
	db    *dynamodb.Client
}

type setup struct {
	// wrap replaces a function's handler (fault injection), by name.
	wrap map[string]func(lambda.Handler) lambda.Handler
	// mapConcurrency overrides MapMaxConcurrency (0: the template's).
	mapConcurrency int
	secrets        lambdafn.StaticSecrets
	// chunkTimeout is the execute-chunk function's timeout (default 60s);
	// safetyMargin the handlers' (default 5s).
	chunkTimeout, safetyMargin time.Duration
}

func newWorld(t *testing.T, s setup) *world {
	t.Helper()
	db := dynamodb.NewFromConfig(awstest.Config(awstest.StartMoto(t)))
	table := "kvmigrate-jobs"
	store, err := dynamo.New(db, table)
	require.NoError(t, err)
	require.NoError(t, store.CreateTable(t.Context()))

	log := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	secrets := s.secrets
	if secrets == nil {
		secrets = lambdafn.StaticSecrets{}
	}
	fns := sfntest.MigrationFunctions(lambdafn.Deps{Store: store, Secrets: secrets, Log: log, SafetyMargin: cmp.Or(s.safetyMargin, 5*time.Second)})
	for name, wrap := range s.wrap {
		require.Contains(t, fns, name)
		fns[name] = wrap(fns[name])
	}
	overrides := map[string]string{"TableName": table}
	if s.mapConcurrency > 0 {
		overrides["MapMaxConcurrency"] = strconv.Itoa(s.mapConcurrency)
	}
	h := sfntest.New(t, sfntest.Config{
		Definition:      sfntest.MigrationDefinition(t, overrides),
		Functions:       fns,
		FunctionTimeout: 60 * time.Second,
		Timeouts:        map[string]time.Duration{sfntest.ExecuteChunkFunction: s.chunkTimeout},
		DynamoDB:        db,
	})
	return &world{h: h, store: store, db: db}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// run starts an execution for a new job and waits for its end.
func (w *world) run(t *testing.T, in phase.AnalyzeInput) (*sfntest.Execution, sfntest.Result) {
	t.Helper()
	e, err := w.h.Start(t.Context(), in.JobID, phase.Execution{AnalyzeInput: in})
	require.NoError(t, err)
	return e, wait(t, e)
}

func (w *world) job(t *testing.T, id string) job.Job {
	t.Helper()
	j, err := w.store.Get(t.Context(), id)
	require.NoError(t, err)
	return j
}

// migration is the execution input of a command-mode migration.
func migration(src, dst string) phase.AnalyzeInput {
	return phase.AnalyzeInput{
		JobID:   job.NewID(),
		Source:  phase.Endpoint{URL: src},
		Target:  phase.Endpoint{URL: dst},
		Options: phase.Options{Mode: phase.ModeCommand, ChunkKeys: chunkKeys},
	}
}

// chunkCalls counts the execute-chunk invocations that copied (not plans),
// by shard node.
func chunkCalls(h *sfntest.Harness) map[string]int {
	out := map[string]int{}
	for _, c := range h.Invocations() {
		if c.Function != sfntest.ExecuteChunkFunction {
			continue
		}
		var in phase.ChunkInput
		if json.Unmarshal(c.Payload, &in) == nil && in.Node != "" {
			out[in.Node]++
		}
	}
	return out
}

func eventTypes(h *sfntest.Harness) []string {
	var out []string
	for _, e := range h.Events() {
		out = append(out, e.DetailType)
	}
	return out
}

// seed writes the sample dataset (every type, binary names, TTLs) and
// bulk plain strings, and returns the number of keys.
func seed(t *testing.T, c valkey.Client, perType, bulk int) int {
	t.Helper()
	n, err := sample.Seed(t.Context(), c, sample.Options{PerType: perType})
	require.NoError(t, err)
	for from := 0; from < bulk; from += 500 {
		var cmds valkey.Commands
		for i := from; i < min(from+500, bulk); i++ {
			cmds = append(cmds, c.B().Set().Key("bulk:"+strconv.Itoa(i)).Value(strings.Repeat("v", i%64)).Build())
		}
		for _, r := range c.DoMulti(t.Context(), cmds...) {
			require.NoError(t, r.Error())
		}
	}
	return n + bulk
}

// assertSucceeded checks a successful migration of keys keys: the path
// through the state machine, the job record, its reports, the event, and
// the target compared with the source by an independent reader.
func assertSucceeded(t *testing.T, w *world, e *sfntest.Execution, res sfntest.Result, id string, keys int, src, dst valkey.Client) {
	t.Helper()
	require.Equal(t, sfntest.StatusSucceeded, res.Status, "%s: %s\n%s", res.Error, res.Cause, e.History())
	for _, s := range []string{"Analyze", "AnalysisOnly?", "Blocked?", "Mode?", "Plan", "CopyShards", "Validate", "Passed?", "RecordSuccess", "EmitSucceeded"} {
		assert.Equal(t, 1, e.Entered(s), "state %s", s)
	}
	assert.Zero(t, e.Entered("RecordFailure"))

	j := w.job(t, id)
	assert.Equal(t, job.StatusSucceeded, j.Status)
	assert.Equal(t, "done", j.Stage)
	assert.False(t, j.FinishedAt.IsZero())
	assert.Empty(t, j.Error)
	assert.EqualValues(t, keys, j.Counters.Copied, "every key counted once")
	assert.Zero(t, j.Counters.Failed)
	shards, err := w.store.Shards(t.Context(), id)
	require.NoError(t, err)
	require.NotEmpty(t, shards)
	for _, s := range shards {
		assert.True(t, s.Done, "shard %s db %d done", s.Node, s.DB)
	}
	for _, name := range []string{job.ReportAnalysis, job.ReportValidation} {
		body, err := w.store.Report(t.Context(), id, name)
		require.NoError(t, err, "report %s", name)
		var rep struct {
			Passed   *bool `json:"passed"`
			Blocking *bool `json:"blocking"`
		}
		require.NoError(t, json.Unmarshal(body, &rep), "report %s", name)
		if name == job.ReportValidation {
			require.NotNil(t, rep.Passed)
			assert.True(t, *rep.Passed, "the validation report passed")
		}
	}

	events := w.h.Events()
	require.Len(t, events, 1)
	assert.Equal(t, phase.EventMigrationSucceeded, events[0].DetailType)
	assert.Equal(t, phase.EventSource, events[0].Source)
	var detail phase.Event
	require.NoError(t, json.Unmarshal(events[0].Detail, &detail))
	assert.Equal(t, id, detail.JobID)
	assert.Equal(t, job.StatusSucceeded, detail.Status)
	require.NotNil(t, detail.Validation)
	assert.True(t, detail.Validation.Passed)

	source, target := kvtest.Snapshot(t.Context(), t, src), kvtest.Snapshot(t.Context(), t, dst)
	assert.Len(t, source, keys)
	kvtest.AssertSameData(t, source, target, ttlTolerance)
}

func TestStandaloneRedis70ToValkey80(t *testing.T) {
	t.Parallel()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	keys := seed(t, src.Client(t), 10, 2000)
	w := newWorld(t, setup{})

	in := migration(src.URL(), dst.URL())
	e, res := w.run(t, in)
	assertSucceeded(t, w, e, res, in.JobID, keys, src.Client(t), dst.Client(t))

	calls := chunkCalls(w.h)
	require.Len(t, calls, 1, "one shard")
	for node, n := range calls {
		assert.GreaterOrEqual(t, n, 3, "shard %s loops chunk after chunk", node)
	}
	assert.Equal(t, e.Entered("CopyChunk"), calls[src.Addr()], "one CopyChunk state per invocation")
}

func TestChunksEndAtTheirDeadlineAndCheckpoint(t *testing.T) {
	t.Parallel()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	keys := seed(t, src.Client(t), 5, 3500)
	// A chunk has 1s (its 6s timeout less the 5s margin) to scan, and the
	// source allows 1000 commands a second (2 a key, a burst of 1000): in
	// 1s at most 1000 keys are copied and 4 pages of 500 more are in
	// flight, so no chunk can take every key, however fast the machine.
	w := newWorld(t, setup{chunkTimeout: 6 * time.Second, safetyMargin: 5 * time.Second})

	in := migration(src.URL(), dst.URL())
	in.Options.ChunkKeys, in.Options.MaxOps, in.Options.SampleSize = 0, 1000, phase.MinSampleSize
	e, res := w.run(t, in)
	assertSucceeded(t, w, e, res, in.JobID, keys, src.Client(t), dst.Client(t))
	assert.GreaterOrEqual(t, chunkCalls(w.h)[src.Addr()], 2, "the deadline ended a chunk before the shard was done")
	for _, c := range w.h.Invocations() {
		assert.Empty(t, c.ErrorType, "%s: %s", c.Function, c.ErrorMessage)
	}
}

func TestClusterToCluster(t *testing.T) {
	t.Parallel()
	src := kvtest.StartCluster(t, kvtest.Require(t, "redis-7.0"), 3)
	dst := kvtest.StartCluster(t, kvtest.Require(t, "valkey-8.0"), 3)
	srcClient, dstClient := src.Client(t), dst.Client(t)
	keys := seed(t, srcClient, 10, 6000)
	w := newWorld(t, setup{mapConcurrency: 2})

	in := migration(src.URL(), dst.URL())
	e, res := w.run(t, in)
	assertSucceeded(t, w, e, res, in.JobID, keys, srcClient, dstClient)

	calls := chunkCalls(w.h)
	assert.Len(t, calls, 3, "one shard per source master")
	for node, n := range calls {
		assert.GreaterOrEqual(t, n, 3, "shard %s loops several times", node)
	}
	assertMaxConcurrency(t, w.h, 2)
}

// assertMaxConcurrency checks that no more than limit chunk invocations of
// different shards overlapped.
func assertMaxConcurrency(t *testing.T, h *sfntest.Harness, limit int) {
	t.Helper()
	type span struct{ from, to time.Time }
	var spans []span
	for _, c := range h.Invocations() {
		if c.Function == sfntest.ExecuteChunkFunction {
			spans = append(spans, span{c.Start, c.Start.Add(c.Duration)})
		}
	}
	most := 0
	for _, s := range spans {
		n := 0
		for _, o := range spans {
			if !o.from.After(s.from) && o.to.After(s.from) {
				n++
			}
		}
		most = max(most, n)
	}
	assert.LessOrEqual(t, most, limit, "chunk invocations running at once (MapMaxConcurrency)")
	assert.Greater(t, most, 1, "the shards are copied concurrently")
}

func TestABlockedAnalysisEndsBlockedWithItsFindings(t *testing.T) {
	t.Parallel()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"), kvtest.WithDatabases(2))
	require.NoError(t, src.ClientDB(t, 0).Do(t.Context(), src.ClientDB(t, 0).B().Set().Key("k0").Value("v").Build()).Error())
	db3 := src.ClientDB(t, 3)
	require.NoError(t, db3.Do(t.Context(), db3.B().Set().Key("k3").Value("v").Build()).Error())
	w := newWorld(t, setup{})

	in := migration(src.URL(), dst.URL())
	e, res := w.run(t, in)
	require.Equal(t, sfntest.StatusFailed, res.Status, e.History())
	assert.Equal(t, "BlockedError", res.Error)
	assert.Equal(t, []string{"Analyze", "AnalysisOnly?", "Blocked?", "RecordBlocked", "EmitBlocked", "Blocked"}, e.Path())

	j := w.job(t, in.JobID)
	assert.Equal(t, job.StatusBlocked, j.Status)
	assert.Equal(t, "gate", j.Stage)
	assert.Contains(t, j.Error, "multi_db", "the job's error lists the blocking findings")
	assert.False(t, j.FinishedAt.IsZero())

	body, err := w.store.Report(t.Context(), in.JobID, job.ReportAnalysis)
	require.NoError(t, err)
	var rep struct {
		Blocking bool `json:"blocking"`
		Findings []struct {
			Category string `json:"category"`
			Severity string `json:"severity"`
		} `json:"findings"`
	}
	require.NoError(t, json.Unmarshal(body, &rep))
	assert.True(t, rep.Blocking)
	assert.Contains(t, rep.Findings, struct {
		Category string `json:"category"`
		Severity string `json:"severity"`
	}{"multi_db", "blocking"})

	require.Equal(t, []string{phase.EventMigrationBlocked}, eventTypes(w.h))
	var detail phase.Event
	require.NoError(t, json.Unmarshal(w.h.Events()[0].Detail, &detail))
	assert.Equal(t, job.StatusBlocked, detail.Status)
	require.NotEmpty(t, detail.Findings)
	assert.Equal(t, phase.SeverityBlocking, detail.Findings[0].Severity, "blocking findings first")

	assert.Empty(t, chunkCalls(w.h), "nothing was copied")
	assert.Empty(t, kvtest.Snapshot(t.Context(), t, dst.Client(t)))
}

// failing wraps a handler: the chunk invocations (not plans) whose number
// (from 1) is in before fail with err without running; those in after run
// and then fail with err, their result lost (a reply that never arrived).
func failing(err error, before, after []int) func(lambda.Handler) lambda.Handler {
	return func(next lambda.Handler) lambda.Handler {
		var n atomic.Int32
		return sfntest.InvokeFunc(func(ctx context.Context, payload []byte) ([]byte, error) {
			var in phase.ChunkInput
			if json.Unmarshal(payload, &in) != nil || in.Node == "" {
				return next.Invoke(ctx, payload)
			}
			i := int(n.Add(1))
			for _, b := range before {
				if i == b {
					return nil, err
				}
			}
			out, nextErr := next.Invoke(ctx, payload)
			for _, a := range after {
				if i == a && nextErr == nil {
					return nil, err
				}
			}
			return out, nextErr
		})
	}
}

func TestATransientChunkFailureIsRetriedAndTheJobSucceeds(t *testing.T) {
	t.Parallel()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	keys := seed(t, src.Client(t), 10, 2000)
	transient := &phase.TransientError{Err: errors.New("injected: connection reset by peer")}
	w := newWorld(t, setup{wrap: map[string]func(lambda.Handler) lambda.Handler{
		// The 2nd chunk fails before copying; the 3rd copies, checkpoints,
		// and its answer is lost.
		sfntest.ExecuteChunkFunction: failing(transient, []int{2}, []int{3}),
	}})

	in := migration(src.URL(), dst.URL())
	e, res := w.run(t, in)
	assertSucceeded(t, w, e, res, in.JobID, keys, src.Client(t), dst.Client(t))

	var retried []string
	for _, ev := range e.Events() {
		if ev.Type == "StateRetried" {
			retried = append(retried, ev.State.Name)
		}
		if ev.Type == "StateFailed" {
			assert.Equal(t, "TransientError", ev.Error, "the engine sees the Go type name")
		}
	}
	assert.Equal(t, []string{"CopyChunk", "CopyChunk"}, retried)
}

func TestAFatalErrorTakesTheFailurePath(t *testing.T) {
	t.Parallel()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	seed(t, src.Client(t), 10, 2000)
	fatal := &phase.AuthError{Err: errors.New("injected: WRONGPASS invalid username-password pair")}
	w := newWorld(t, setup{wrap: map[string]func(lambda.Handler) lambda.Handler{
		sfntest.ExecuteChunkFunction: failing(fatal, []int{2}, nil),
	}})

	in := migration(src.URL(), dst.URL())
	e, res := w.run(t, in)
	require.Equal(t, sfntest.StatusFailed, res.Status, e.History())
	assert.Equal(t, "AuthError", res.Error, "the Fail state names the caught error")
	for _, s := range []string{"RecordFailure", "EmitFailed", "MigrationFailed"} {
		assert.Equal(t, 1, e.Entered(s), "state %s", s)
	}
	assert.Zero(t, e.Entered("Validate"))
	for _, ev := range e.Events() {
		assert.NotEqual(t, "StateRetried", ev.Type, "an AuthError is not retried")
	}

	j := w.job(t, in.JobID)
	assert.Equal(t, job.StatusFailed, j.Status)
	assert.Contains(t, j.Error, "AuthError")
	assert.Contains(t, j.Error, "WRONGPASS")
	assert.False(t, j.FinishedAt.IsZero())

	require.Equal(t, []string{phase.EventMigrationFailed}, eventTypes(w.h))
	var detail phase.Event
	require.NoError(t, json.Unmarshal(w.h.Events()[0].Detail, &detail))
	assert.Equal(t, in.JobID, detail.JobID)
	require.NotNil(t, detail.Error)
	assert.Equal(t, "AuthError", detail.Error.Error)
}
