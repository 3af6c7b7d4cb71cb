package workflow_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/sample"
	"github.com/kvmigrate/kvmigrate/internal/validation"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// recorder is a Store that records every status a job moves to.
type recorder struct {
	job.Store
	mu       sync.Mutex
	statuses map[string][]job.Status
}

func record(s job.Store) *recorder { return &recorder{Store: s, statuses: map[string][]job.Status{}} }

func (r *recorder) Create(ctx context.Context, j job.Job) error {
	err := r.Store.Create(ctx, j)
	if err == nil {
		r.mu.Lock()
		r.statuses[j.ID] = []job.Status{job.StatusPending}
		r.mu.Unlock()
	}
	return err
}

func (r *recorder) Transition(ctx context.Context, id string, to job.Status, mut func(*job.Job)) (job.Job, error) {
	j, err := r.Store.Transition(ctx, id, to, mut)
	if err == nil {
		r.mu.Lock()
		r.statuses[id] = append(r.statuses[id], to)
		r.mu.Unlock()
	}
	return j, err
}

func (r *recorder) of(id string) []job.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]job.Status(nil), r.statuses[id]...)
}

func dbsize(t *testing.T, s *kvtest.Server) int64 {
	t.Helper()
	c := s.Client(t)
	n, err := c.Do(context.Background(), c.B().Dbsize().Build()).AsInt64()
	require.NoError(t, err)
	return n
}

func TestAnalyzeRecordsAnAnalysisJobWithItsReport(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	n, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 10})
	require.NoError(t, err)
	store := record(openStore(t))
	l := &workflow.Local{Store: store}

	out, err := l.Analyze(ctx, workflow.AnalyzeRequest{Source: parse(t, src.URL()), Target: parse(t, dst.URL())})
	require.NoError(t, err)
	require.NotNil(t, out.Report)
	assert.Equal(t, job.KindAnalysis, out.Job.Kind)
	assert.Equal(t, job.StatusAnalyzed, out.Job.Status)
	assert.Equal(t, []job.Status{job.StatusPending, job.StatusAnalyzing, job.StatusAnalyzed}, store.of(out.Job.ID))
	assert.Equal(t, out.Job.ID, out.Report.JobID)
	assert.EqualValues(t, n, out.Report.EstimatedKeys)
	assert.Zero(t, dbsize(t, dst), "an analysis writes nothing")

	// The report is in the store, as the API will serve it.
	stored, err := workflow.LoadReport(ctx, store, out.Job.ID)
	require.NoError(t, err)
	want, err := json.Marshal(out.Report)
	require.NoError(t, err)
	got, err := json.Marshal(stored)
	require.NoError(t, err)
	assert.JSONEq(t, string(want), string(got))
	// Analysis slots are released.
	for i := range workflow.MaxAnalyses {
		require.NoError(t, store.Acquire(ctx, "probe-"+string(rune('a'+i)), job.KindAnalysis, workflow.MaxAnalyses))
	}
}

func TestAnalyzeFailsClearlyOnBadEndpoints(t *testing.T) {
	ctx := context.Background()
	const secret = "s3cret-pw"
	srv := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"), kvtest.WithPassword(secret))
	good := parse(t, srv.URL())
	wrong := good.WithCredentials("", "wrong-"+secret)
	unreachable := parse(t, "redis://127.0.0.1:1")
	for _, tc := range []struct {
		name           string
		source, target endpoint.Endpoint
		class          error
	}{
		{"a wrong source password is an authentication error", wrong, good, endpoint.ErrAuth},
		{"an unreachable target says so", good, unreachable, endpoint.ErrUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := openStore(t)
			l := &workflow.Local{Store: store}
			out, err := l.Analyze(ctx, workflow.AnalyzeRequest{Source: tc.source, Target: tc.target})
			require.ErrorIs(t, err, tc.class)
			assert.NotContains(t, err.Error(), secret)
			j, err := store.Get(ctx, out.Job.ID)
			require.NoError(t, err)
			assert.Equal(t, job.StatusFailed, j.Status)
			assert.NotEmpty(t, j.Error)
			assert.NotContains(t, j.Error, secret)
			_, err = store.Report(ctx, j.ID, job.ReportAnalysis)
			assert.ErrorIs(t, err, job.ErrNotFound, "no report for a failed analysis")
		})
	}
	t.Run("a bad sample size is refused before any job is made", func(t *testing.T) {
		store := openStore(t)
		l := &workflow.Local{Store: store}
		_, err := l.Analyze(ctx, workflow.AnalyzeRequest{Source: good, Target: good, Options: analysis.Options{Sample: 5}})
		require.ErrorIs(t, err, analysis.ErrInvalidOptions)
		jobs, _, err := store.List(ctx, job.ListOptions{})
		require.NoError(t, err)
		assert.Empty(t, jobs)
	})
}

// Valkey → Redis is a blocking finding (type_direction): run refuses it
// without force, writing nothing, and migrates it with force, as one job.
func TestRunGatesTheMigrationOnBlockingFindings(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	n, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 10})
	require.NoError(t, err)
	req := workflow.RunRequest{Request: workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL())}}

	t.Run("without force the job ends blocked, lists the findings and writes nothing", func(t *testing.T) {
		store := record(openStore(t))
		l := &workflow.Local{Store: store}
		var seen *analysis.Report
		req := req
		req.OnAnalysis = func(r *analysis.Report) { seen = r }
		out, err := l.Run(ctx, req)
		require.ErrorIs(t, err, analysis.ErrBlocked)
		var blocked *analysis.BlockedError
		require.ErrorAs(t, err, &blocked)
		require.NotEmpty(t, blocked.Findings)
		assert.Equal(t, analysis.CategoryTypeDirection, blocked.Findings[0].Category)

		assert.Equal(t, job.StatusBlocked, out.Job.Status)
		assert.Equal(t, []job.Status{job.StatusPending, job.StatusAnalyzing, job.StatusBlocked}, store.of(out.Job.ID))
		assert.Contains(t, out.Job.Error, "type_direction")
		assert.Contains(t, out.Job.Error, "force")
		require.NotNil(t, out.Report)
		assert.Same(t, out.Report, seen, "the CLI sees the report before the gate")
		assert.True(t, out.Report.Blocking)
		stored, err := workflow.LoadReport(ctx, store, out.Job.ID)
		require.NoError(t, err)
		assert.True(t, stored.Blocking)
		shards, err := store.Shards(ctx, out.Job.ID)
		require.NoError(t, err)
		assert.Empty(t, shards, "nothing was planned")
		assert.Zero(t, dbsize(t, dst), "nothing was written")
		// The slot is released: ten more executions can start.
		for i := range workflow.MaxExecutions {
			require.NoError(t, store.Acquire(ctx, "probe-"+string(rune('a'+i)), job.KindMigration, workflow.MaxExecutions))
		}
	})

	t.Run("with force the same job analyzes, then copies everything", func(t *testing.T) {
		store := record(openStore(t))
		l := &workflow.Local{Store: store}
		started := time.Now()
		before := kvtest.Snapshot(ctx, t, src.Client(t))
		req := req
		req.Options.Force = true
		out, err := l.Run(ctx, req)
		require.NoError(t, err)
		assert.Equal(t, job.StatusSucceeded, out.Job.Status)
		assert.Equal(t, []job.Status{job.StatusPending, job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning, job.StatusValidating, job.StatusSucceeded},
			store.of(out.Job.ID), "one job through every status")
		assert.True(t, out.Job.Options.Force)
		require.NotNil(t, out.Report)
		assert.True(t, out.Report.Blocking, "forced, not clean")
		assert.Equal(t, out.Job.ID, out.Report.JobID)
		assert.True(t, out.Validated)
		require.NotNil(t, out.Validation)
		assert.True(t, out.Validation.Passed)
		stored, err := store.Report(ctx, out.Job.ID, job.ReportValidation)
		require.NoError(t, err, "the validation report is kept with the job")
		assert.Contains(t, string(stored), `"passed":true`)
		assert.EqualValues(t, n, out.Job.Counters.Copied)
		kvtest.AssertSameData(t, before, kvtest.Snapshot(ctx, t, dst.Client(t)), time.Since(started))
		_, err = workflow.LoadReport(ctx, store, out.Job.ID)
		require.NoError(t, err)
	})
}

func TestRunWithoutBlockingFindingsMigrates(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"))
	n, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 10})
	require.NoError(t, err)
	store := openStore(t)
	l := &workflow.Local{Store: store}
	out, err := l.Run(ctx, workflow.RunRequest{
		Request:  workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL())},
		Analysis: analysis.Options{Sample: analysis.MinSample},
	})
	require.NoError(t, err)
	assert.False(t, out.Report.Blocking, "%v", out.Report.Findings)
	assert.Equal(t, job.StatusSucceeded, out.Job.Status)
	assert.EqualValues(t, n, out.Job.Counters.Copied)
	assert.EqualValues(t, n, dbsize(t, dst))
}

func TestRunInterruptedDuringTheAnalysisIsStopped(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	seedKeys(t, src, 3000)
	store := openStore(t)
	l := &workflow.Local{Store: store}
	runCtx, cancel := context.WithCancel(ctx)
	// A rate limit slow enough that the cancel lands during the sample.
	req := workflow.RunRequest{
		Request:  workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL()), Options: job.Options{MaxOps: 2000}},
		Analysis: analysis.Options{MaxOps: 2000},
	}
	time.AfterFunc(300*time.Millisecond, cancel)
	out, err := l.Run(runCtx, req)
	require.ErrorIs(t, err, context.Canceled)
	j, err := store.Get(ctx, out.Job.ID)
	require.NoError(t, err)
	assert.Equal(t, job.StatusCancelled, j.Status)
	assert.True(t, strings.Contains(j.Error, "analysis"), j.Error)
	assert.Zero(t, dbsize(t, dst))
}

func seedKeys(t *testing.T, s *kvtest.Server, n int) {
	t.Helper()
	c := s.Client(t)
	args := make([]string, 0, 2*n)
	for i := range n {
		args = append(args, "k:"+strconv.Itoa(i), "v")
	}
	require.NoError(t, c.Do(context.Background(), c.B().Arbitrary("MSET").Args(args...).Build()).Error())
}

// With a baseline window, run takes the target's load snapshots before the
// copy and the validation compares the target after it with them.
func TestRunComparesTheTargetWithItsBaseline(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	_, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 10})
	require.NoError(t, err)
	store := openStore(t)
	l := &workflow.Local{Store: store}
	out, err := l.Run(ctx, workflow.RunRequest{
		Request:  workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL())},
		Baseline: validation.RecordOptions{Window: 400 * time.Millisecond, Interval: 50 * time.Millisecond},
	})
	require.NoError(t, err)
	names, err := store.ReportNames(ctx, out.Job.ID, "snapshot#")
	require.NoError(t, err)
	assert.GreaterOrEqual(t, len(names), validation.MinBaseline+1, "5 before the copy, 1 after")
	require.NotNil(t, out.Validation)
	require.NotNil(t, out.Validation.Baseline)
	assert.True(t, out.Validation.Baseline.Compared, out.Validation.Baseline.Skipped)
	assert.Equal(t, validation.MinBaseline, out.Validation.Baseline.Before)
	assert.NotEmpty(t, out.Validation.Baseline.Metrics)
}

// A source URL that names database 0 (…/0) copies that database alone, so
// keys in other databases do not stop a move to a cluster target — the
// way out the multi_db finding points to.
func TestASourceURLNamingDatabase0CopiesItAloneToACluster(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartCluster(t, kvtest.Require(t, "valkey-8.0"), 3)
	n, err := sample.Seed(ctx, src.ClientDB(t, 0), sample.Options{PerType: 10})
	require.NoError(t, err)
	_, err = sample.Seed(ctx, src.ClientDB(t, 3), sample.Options{PerType: 2})
	require.NoError(t, err)
	started := time.Now()
	before := kvtest.Snapshot(ctx, t, src.ClientDB(t, 0))

	l := &workflow.Local{Store: openStore(t)}
	all := workflow.RunRequest{Request: workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL())},
		Analysis: analysis.Options{Sample: analysis.MinSample}}
	_, err = l.Run(ctx, all)
	require.ErrorIs(t, err, analysis.ErrBlocked, "every database to a cluster: multi_db blocks")

	db0 := all
	db0.Source = parse(t, src.URL()+"/0")
	out, err := l.Run(ctx, db0)
	require.NoError(t, err)
	assert.False(t, out.Report.Blocking, "%v", out.Report.Findings)
	assert.Equal(t, job.StatusSucceeded, out.Job.Status)
	assert.EqualValues(t, n, out.Job.Counters.Copied)
	assert.Contains(t, out.Job.Source, "/0", "the job keeps the database its URL names")
	kvtest.AssertSameData(t, before, kvtest.Snapshot(ctx, t, dst.Client(t)), time.Since(started))
}
