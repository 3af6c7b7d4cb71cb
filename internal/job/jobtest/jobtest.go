// Package jobtest is the contract suite every job.Store must pass: the
// in-memory store, job/bolt and job/dynamo run the same Run.
package jobtest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/job"
)

// Run runs the contract suite. newStore must return a fresh, empty store
// for each call, isolated from every other one (subtests run in parallel),
// and close it in t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) job.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, job.Store)
	}{
		{"creates a job and gets it back unchanged", testCreateGet},
		{"fills in the defaults of a new job", testCreateDefaults},
		{"refuses a second job with the same id", testDuplicateCreate},
		{"rejects an invalid job and stores nothing", testCreateInvalid},
		{"reports a missing job as not found everywhere", testNotFound},
		{"walks a migration job from pending to succeeded", testMigrationLifecycle},
		{"ends an analysis job at analyzed", testAnalysisLifecycle},
		{"refuses backward and terminal transitions and changes nothing", testInvalidTransitions},
		{"refuses a mutation of status, counters or identity", testForbiddenMutations},
		{"updates the non-status fields", testUpdate},
		{"keeps a redis-shake job's progress and requests", testShakeProgress},
		{"lets exactly one of 20 racing transitions win", testTransitionRace},
		{"sums counters added by 50 goroutines exactly", testAddCountersConcurrent},
		{"keeps counters added while the job is transitioned and updated", testCountersSurviveWrites},
		{"upserts shard checkpoints and lists them by node and db", testShards},
		{"stores and replaces reports", testReports},
		{"lists report names by prefix in order", testReportNames},
		{"pages through 25 jobs newest first, each once", testListPaging},
		{"filters the list by kind and status", testListFilters},
		{"rejects a malformed list token", testListBadToken},
		{"gives exactly 10 of 30 racing goroutines a slot", testAcquireRace},
		{"frees a slot on release and takes it idempotently", testAcquireRelease},
		{"keeps passwords out of stored jobs", testRedaction},
		{"stops at a canceled context", testCanceledContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// newJob returns a complete migration or analysis job with a fresh id.
func newJob(kind job.Kind) job.Job {
	j := job.Job{
		ID:              job.NewID(),
		Kind:            kind,
		Source:          "redis://default:xxxxx@source.example:6379/0",
		Target:          "valkeys://target.example:6380?cluster=true",
		SourceSecretRef: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:src-AbCdEf",
		TargetSecretRef: "env:TARGET_PASSWORD",
		Options: job.Options{
			Strategy: "dump", OnConflict: "skip", Match: "user:*", Type: "hash",
			MaxOps: 5000, Parallel: 4, Concurrency: 8, Force: true,
		},
	}
	if kind == job.KindMigration {
		j.Mode = job.ModeCommand
	}
	return j
}

func create(t *testing.T, s job.Store, j job.Job) job.Job {
	t.Helper()
	require.NoError(t, s.Create(context.Background(), j))
	got, err := s.Get(context.Background(), j.ID)
	require.NoError(t, err)
	return got
}

// advance moves a job through the given statuses.
func advance(t *testing.T, s job.Store, id string, to ...job.Status) job.Job {
	t.Helper()
	var j job.Job
	for _, st := range to {
		var err error
		j, err = s.Transition(context.Background(), id, st, nil)
		require.NoError(t, err, "transition to %s", st)
	}
	return j
}

// sameJob compares jobs with time.Time.Equal for the timestamps.
func sameJob(t *testing.T, want, got job.Job, msgAndArgs ...any) {
	t.Helper()
	times := func(j *job.Job) []time.Time {
		ts := []time.Time{j.CreatedAt, j.UpdatedAt, j.StartedAt, j.FinishedAt, j.ExpireAt}
		j.CreatedAt, j.UpdatedAt, j.StartedAt, j.FinishedAt, j.ExpireAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
		return ts
	}
	wt, gt := times(&want), times(&got)
	assert.Equal(t, want, got, msgAndArgs...)
	for i, name := range []string{"CreatedAt", "UpdatedAt", "StartedAt", "FinishedAt", "ExpireAt"} {
		assert.True(t, wt[i].Equal(gt[i]), "%s: want %v, got %v %v", name, wt[i], gt[i], fmt.Sprint(msgAndArgs...))
	}
}

func testCreateGet(t *testing.T, s job.Store) {
	ctx := context.Background()
	want := newJob(job.KindMigration)
	want.Status = job.StatusPending
	want.Stage = "queued"
	want.Counters = job.Counters{Copied: 1, Bytes: 2, TempKeysSwept: 3}
	want.CreatedAt = time.Date(2025, 3, 1, 10, 0, 0, 123456789, time.UTC)
	want.UpdatedAt = want.CreatedAt.Add(time.Second)
	want.ExpireAt = time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)
	want.ExecutionARN = "arn:aws:states:eu-west-1:123456789012:execution:kvmigrate:" + want.ID

	require.NoError(t, s.Create(ctx, want))
	got, err := s.Get(ctx, want.ID)
	require.NoError(t, err)
	sameJob(t, want, got)

	other := create(t, s, newJob(job.KindAnalysis))
	assert.Equal(t, job.KindAnalysis, other.Kind)
	again, err := s.Get(ctx, want.ID)
	require.NoError(t, err)
	sameJob(t, want, again, "creating another job must not touch the first")
}

func testCreateDefaults(t *testing.T, s job.Store) {
	before := time.Now().Add(-time.Second)
	got := create(t, s, newJob(job.KindMigration))
	assert.Equal(t, job.StatusPending, got.Status)
	assert.True(t, got.CreatedAt.After(before), "CreatedAt defaults to now, got %v", got.CreatedAt)
	assert.True(t, got.UpdatedAt.Equal(got.CreatedAt), "UpdatedAt defaults to CreatedAt")
	assert.True(t, got.StartedAt.IsZero())
	assert.True(t, got.FinishedAt.IsZero())
	assert.Equal(t, job.Counters{}, got.Counters)
}

func testDuplicateCreate(t *testing.T, s job.Store) {
	ctx := context.Background()
	first := create(t, s, newJob(job.KindMigration))

	dup := newJob(job.KindAnalysis)
	dup.ID = first.ID
	dup.Stage = "impostor"
	err := s.Create(ctx, dup)
	require.ErrorIs(t, err, job.ErrConflict)

	got, err := s.Get(ctx, first.ID)
	require.NoError(t, err)
	sameJob(t, first, got, "a refused create must not overwrite the job")
}

func testCreateInvalid(t *testing.T, s job.Store) {
	ctx := context.Background()
	tests := []struct {
		name   string
		change func(*job.Job)
	}{
		{"an empty id", func(j *job.Job) { j.ID = "" }},
		{"an id with a slash", func(j *job.Job) { j.ID = "a/b" }},
		{"an id of 81 characters", func(j *job.Job) { j.ID = strings.Repeat("a", 81) }},
		{"an unknown kind", func(j *job.Job) { j.Kind = "backup" }},
		{"an unknown status", func(j *job.Job) { j.Status = "done" }},
		{"an unknown mode", func(j *job.Job) { j.Mode = "rsync" }},
		{"an analysis job that is running", func(j *job.Job) { j.Kind, j.Mode, j.Status = job.KindAnalysis, "", job.StatusRunning }},
		{"a source with a password", func(j *job.Job) { j.Source = "redis://default:hunter2@source.example:6379" }},
		{"a target with a password parameter", func(j *job.Job) { j.Target = "valkey://target.example:6379?password=hunter2" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := newJob(job.KindMigration)
			id := j.ID
			tc.change(&j)
			err := s.Create(ctx, j)
			require.ErrorIs(t, err, job.ErrInvalid)
			assert.NotContains(t, err.Error(), "hunter2", "the error must not echo the password")
			_, err = s.Get(ctx, id)
			assert.ErrorIs(t, err, job.ErrNotFound)
		})
	}
	jobs, _, err := s.List(ctx, job.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, jobs)
}

func testNotFound(t *testing.T, s job.Store) {
	ctx := context.Background()
	create(t, s, newJob(job.KindMigration)) // another job exists
	id := job.NewID()
	calls := map[string]func() error{
		"Get":        func() error { _, err := s.Get(ctx, id); return err },
		"Transition": func() error { _, err := s.Transition(ctx, id, job.StatusAnalyzing, nil); return err },
		"Update":     func() error { _, err := s.Update(ctx, id, func(j *job.Job) { j.Stage = "x" }); return err },
		"AddCounters": func() error {
			return s.AddCounters(ctx, id, job.Counters{Copied: 1})
		},
		"PutShard":  func() error { return s.PutShard(ctx, id, job.Shard{Node: "n1", Cursor: "0"}) },
		"Shards":    func() error { _, err := s.Shards(ctx, id); return err },
		"PutReport": func() error { return s.PutReport(ctx, id, job.ReportAnalysis, []byte("{}")) },
		"Report":    func() error { _, err := s.Report(ctx, id, job.ReportAnalysis); return err },
		"ReportNames": func() error {
			_, err := s.ReportNames(ctx, id, "")
			return err
		},
	}
	for _, name := range slices.Sorted(maps.Keys(calls)) {
		assert.ErrorIs(t, calls[name](), job.ErrNotFound, name)
	}
	_, err := s.Get(ctx, id)
	assert.ErrorIs(t, err, job.ErrNotFound, "writes to a missing job must not create it")
}

func testMigrationLifecycle(t *testing.T, s job.Store) {
	ctx := context.Background()
	created := create(t, s, newJob(job.KindMigration))

	j, err := s.Transition(ctx, created.ID, job.StatusAnalyzing, func(j *job.Job) { j.Stage = "topology" })
	require.NoError(t, err)
	assert.Equal(t, job.StatusAnalyzing, j.Status)
	assert.Equal(t, "topology", j.Stage)
	assert.False(t, j.StartedAt.IsZero(), "leaving pending sets StartedAt")
	assert.False(t, j.UpdatedAt.Before(created.UpdatedAt))
	started := j.StartedAt

	for _, st := range []job.Status{job.StatusAnalyzed, job.StatusRunning, job.StatusPaused, job.StatusRunning, job.StatusValidating} {
		j, err = s.Transition(ctx, created.ID, st, func(j *job.Job) { j.Stage = string(st) })
		require.NoError(t, err, "to %s", st)
		assert.Equal(t, st, j.Status)
		assert.True(t, j.FinishedAt.IsZero(), "%s is not final", st)
	}
	assert.True(t, started.Equal(j.StartedAt), "StartedAt is set once")

	j, err = s.Transition(ctx, created.ID, job.StatusSucceeded, func(j *job.Job) { j.Stage = "done" })
	require.NoError(t, err)
	assert.Equal(t, job.StatusSucceeded, j.Status)
	require.False(t, j.FinishedAt.IsZero(), "a terminal status sets FinishedAt")
	assert.True(t, j.ExpireAt.Equal(j.FinishedAt.Add(job.Retention).Truncate(time.Second)),
		"ExpireAt = FinishedAt + Retention, got %v for %v", j.ExpireAt, j.FinishedAt)

	got, err := s.Get(ctx, created.ID)
	require.NoError(t, err)
	sameJob(t, j, got, "Transition returns what it stored")
	assert.Equal(t, "done", got.Stage)
}

func testAnalysisLifecycle(t *testing.T, s job.Store) {
	ctx := context.Background()
	a := create(t, s, newJob(job.KindAnalysis))
	j := advance(t, s, a.ID, job.StatusAnalyzing, job.StatusAnalyzed)
	assert.True(t, j.Finished())
	assert.False(t, j.FinishedAt.IsZero(), "analyzed is final for an analysis job")

	_, err := s.Transition(ctx, a.ID, job.StatusRunning, nil)
	require.ErrorIs(t, err, job.ErrConflict)

	m := create(t, s, newJob(job.KindMigration))
	j = advance(t, s, m.ID, job.StatusAnalyzing, job.StatusAnalyzed)
	assert.True(t, j.FinishedAt.IsZero(), "analyzed is not final for a migration job")
	advance(t, s, m.ID, job.StatusRunning)

	b := create(t, s, newJob(job.KindAnalysis))
	advance(t, s, b.ID, job.StatusAnalyzing)
	_, err = s.Transition(ctx, b.ID, job.StatusBlocked, nil)
	assert.ErrorIs(t, err, job.ErrConflict, "an analysis job reports blocking findings, it is not blocked")
}

func testInvalidTransitions(t *testing.T, s job.Store) {
	ctx := context.Background()
	tests := []struct {
		path []job.Status // from pending
		to   job.Status
	}{
		{[]job.Status{job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning}, job.StatusPending},
		{[]job.Status{job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning}, job.StatusAnalyzing},
		{[]job.Status{job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning}, job.StatusAnalyzed},
		{[]job.Status{job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning}, job.StatusRunning},
		{[]job.Status{job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning, job.StatusValidating}, job.StatusRunning},
		{nil, job.StatusRunning},
		{nil, job.StatusSucceeded},
		{[]job.Status{job.StatusAnalyzing, job.StatusBlocked}, job.StatusRunning},
		{[]job.Status{job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning, job.StatusSucceeded}, job.StatusFailed},
		{[]job.Status{job.StatusCancelled}, job.StatusAnalyzing},
		{[]job.Status{job.StatusFailed}, job.StatusFailed},
		{nil, "finished"},
	}
	for _, tc := range tests {
		from := job.StatusPending
		if len(tc.path) > 0 {
			from = tc.path[len(tc.path)-1]
		}
		t.Run(fmt.Sprintf("%s to %s", from, tc.to), func(t *testing.T) {
			j := create(t, s, newJob(job.KindMigration))
			if len(tc.path) > 0 {
				j = advance(t, s, j.ID, tc.path...)
			}
			called := false
			_, err := s.Transition(ctx, j.ID, tc.to, func(j *job.Job) { called = true; j.Stage = "hijacked" })
			require.ErrorIs(t, err, job.ErrConflict)
			var te *job.TransitionError
			if assert.ErrorAs(t, err, &te) {
				assert.Equal(t, from, te.From)
				assert.Equal(t, tc.to, te.To)
			}
			assert.False(t, called, "mut must not run when the transition is refused")
			got, err := s.Get(ctx, j.ID)
			require.NoError(t, err)
			sameJob(t, j, got, "a refused transition changes nothing")
		})
	}
}

func testForbiddenMutations(t *testing.T, s job.Store) {
	ctx := context.Background()
	j := create(t, s, newJob(job.KindMigration))
	muts := []struct {
		name string
		mut  func(*job.Job)
	}{
		{"status", func(j *job.Job) { j.Status = job.StatusSucceeded }},
		{"counters", func(j *job.Job) { j.Counters.Copied = 99 }},
		{"id", func(j *job.Job) { j.ID = job.NewID() }},
		{"kind", func(j *job.Job) { j.Kind = job.KindAnalysis }},
		{"created time", func(j *job.Job) { j.CreatedAt = j.CreatedAt.Add(-time.Hour) }},
		{"source with a password", func(j *job.Job) { j.Source = "redis://u:hunter2@h:6379" }},
		{"mode", func(j *job.Job) { j.Mode = "rsync" }},
		{"request", func(j *job.Job) { j.Request = "explode" }},
	}
	for _, m := range muts {
		_, err := s.Update(ctx, j.ID, m.mut)
		assert.ErrorIs(t, err, job.ErrInvalid, "Update changing %s", m.name)
		_, err = s.Transition(ctx, j.ID, job.StatusAnalyzing, m.mut)
		assert.ErrorIs(t, err, job.ErrInvalid, "Transition changing %s", m.name)
	}
	got, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	sameJob(t, j, got, "refused mutations change nothing")
}

func testUpdate(t *testing.T, s job.Store) {
	ctx := context.Background()
	j := create(t, s, newJob(job.KindMigration))
	j = advance(t, s, j.ID, job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning)

	got, err := s.Update(ctx, j.ID, func(u *job.Job) {
		u.Stage = "cutover"
		u.ExecutionARN = "arn:aws:states:eu-west-1:123456789012:execution:kvmigrate:" + u.ID
		u.TaskARN = "arn:aws:ecs:eu-west-1:123456789012:task/kvmigrate/abc"
		u.Error = "retrying node n2"
		u.Options.MaxOps = 100
	})
	require.NoError(t, err)
	assert.Equal(t, job.StatusRunning, got.Status)
	assert.Equal(t, "cutover", got.Stage)
	assert.False(t, got.UpdatedAt.Before(j.UpdatedAt))

	stored, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	sameJob(t, got, stored, "Update returns what it stored")
	assert.Equal(t, 100, stored.Options.MaxOps)
	assert.Equal(t, "arn:aws:ecs:eu-west-1:123456789012:task/kvmigrate/abc", stored.TaskARN)

	// A finished job can still be annotated.
	advance(t, s, j.ID, job.StatusCancelled)
	got, err = s.Update(ctx, j.ID, func(u *job.Job) { u.Stage = "task stopped" })
	require.NoError(t, err)
	assert.Equal(t, job.StatusCancelled, got.Status)
	assert.Equal(t, "task stopped", got.Stage)
}

func testShakeProgress(t *testing.T, s job.Store) {
	ctx := context.Background()
	j := newJob(job.KindMigration)
	j.Mode = job.ModeRedisShakeSync
	j = create(t, s, j)
	assert.Equal(t, job.Progress{}, j.Progress, "a new job has no progress")
	assert.Empty(t, j.Request)
	advance(t, s, j.ID, job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning)

	rdb := job.Progress{Phase: "syncing_rdb", Keys: 120000, OpsPerSec: 50123.5, RDBBytesDone: 12 << 20, RDBBytesTotal: 30 << 20}
	got, err := s.Update(ctx, j.ID, func(u *job.Job) { u.Stage, u.Progress = "initial_sync", rdb })
	require.NoError(t, err)
	assert.Equal(t, rdb, got.Progress)

	// Replicating: every field changes, and zero values replace non-zero ones.
	repl := job.Progress{Phase: "syncing_aof", Keys: 1050387, OpsPerSec: 20.01, AOFDiff: 0, ReadyForCutover: true}
	_, err = s.Update(ctx, j.ID, func(u *job.Job) { u.Stage, u.Progress = "replicating", repl })
	require.NoError(t, err)
	got, err = s.Update(ctx, j.ID, func(u *job.Job) { u.Request = job.RequestCutover })
	require.NoError(t, err)
	assert.Equal(t, repl, got.Progress, "a request leaves the progress alone")

	stored, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	sameJob(t, got, stored)
	assert.Equal(t, repl, stored.Progress)
	assert.Equal(t, "replicating", stored.Stage)
	assert.Equal(t, job.RequestCutover, stored.Request)

	stored, err = s.Transition(ctx, j.ID, job.StatusValidating, func(u *job.Job) { u.Stage, u.Request = job.StageCutOver, "" })
	require.NoError(t, err)
	assert.Empty(t, stored.Request, "a request can be cleared")
	assert.Equal(t, repl, stored.Progress, "a transition keeps the progress")
	again, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	sameJob(t, stored, again)

	// A request the store does not know is refused.
	_, err = s.Update(ctx, j.ID, func(u *job.Job) { u.Request = "pause" })
	assert.ErrorIs(t, err, job.ErrInvalid)
}

func testTransitionRace(t *testing.T, s job.Store) {
	ctx := context.Background()
	j := create(t, s, newJob(job.KindMigration))
	advance(t, s, j.ID, job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning)

	const n = 20
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
		tos   = make([]job.Status, n)
	)
	for i := range n {
		tos[i] = job.StatusSucceeded
		if i%2 == 1 {
			tos[i] = job.StatusFailed
		}
		wg.Go(func() {
			<-start
			_, errs[i] = s.Transition(ctx, j.ID, tos[i], func(j *job.Job) { j.Error = fmt.Sprintf("winner %d", i) })
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range errs {
		if err == nil {
			require.Equal(t, -1, winner, "goroutines %d and %d both won", winner, i)
			winner = i
			continue
		}
		assert.ErrorIs(t, err, job.ErrConflict, "goroutine %d", i)
	}
	require.NotEqual(t, -1, winner, "one transition must win")
	got, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	assert.Equal(t, tos[winner], got.Status)
	assert.Equal(t, fmt.Sprintf("winner %d", winner), got.Error, "only the winner's mutation is stored")
}

// allOnes returns Counters with every field set to n.
func allOnes(n int64) job.Counters {
	var c job.Counters
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		v.Field(i).SetInt(n)
	}
	return c
}

func testAddCountersConcurrent(t *testing.T, s job.Store) {
	ctx := context.Background()
	j := create(t, s, newJob(job.KindMigration))
	const n = 50
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			c := allOnes(1)
			c.Bytes = int64(i) // 0+1+...+49
			errs[i] = s.AddCounters(ctx, j.ID, c)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "goroutine %d", i)
	}
	want := allOnes(n)
	want.Bytes = n * (n - 1) / 2
	got, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	assert.Equal(t, want, got.Counters)

	require.NoError(t, s.AddCounters(ctx, j.ID, job.Counters{Failed: -2}))
	got, err = s.Get(ctx, j.ID)
	require.NoError(t, err)
	assert.Equal(t, int64(n-2), got.Counters.Failed, "negative deltas subtract")
}

func testCountersSurviveWrites(t *testing.T, s job.Store) {
	ctx := context.Background()
	j := create(t, s, newJob(job.KindMigration))
	advance(t, s, j.ID, job.StatusAnalyzing, job.StatusAnalyzed)

	const n = 30
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			assert.NoError(t, s.AddCounters(ctx, j.ID, job.Counters{Copied: 1}))
		})
		wg.Go(func() {
			<-start
			_, err := s.Update(ctx, j.ID, func(u *job.Job) { u.Stage = fmt.Sprint("chunk ", i) })
			assert.NoError(t, err)
		})
	}
	wg.Go(func() {
		<-start
		_, err := s.Transition(ctx, j.ID, job.StatusRunning, nil)
		assert.NoError(t, err)
	})
	close(start)
	wg.Wait()
	got, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	assert.Equal(t, int64(n), got.Counters.Copied, "Update and Transition must not overwrite counters")
	assert.Equal(t, job.StatusRunning, got.Status)
}

func testShards(t *testing.T, s job.Store) {
	ctx := context.Background()
	j := create(t, s, newJob(job.KindMigration))
	other := create(t, s, newJob(job.KindMigration))

	empty, err := s.Shards(ctx, j.ID)
	require.NoError(t, err)
	assert.Empty(t, empty)

	put := []job.Shard{
		{Node: "10.0.0.2:6379", DB: 1, Cursor: "17"},
		{Node: "10.0.0.1:6379", DB: 10, Cursor: "0"},
		{Node: "10.0.0.1:6379", DB: 2, Cursor: "0"},
		{Node: "10.0.0.2:6379", DB: 0, Cursor: "0", Done: true, Counters: job.Counters{Copied: 5}},
		{Node: "10.0.0.1:6379", DB: 2, Cursor: "4096", Commands: true, Counters: job.Counters{Copied: 7, Fallbacks: 1}}, // replaces
	}
	for _, sh := range put {
		require.NoError(t, s.PutShard(ctx, j.ID, sh))
	}
	require.NoError(t, s.PutShard(ctx, other.ID, job.Shard{Node: "elsewhere:6379", Cursor: "9"}))
	at := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
	require.NoError(t, s.PutShard(ctx, other.ID, job.Shard{Node: "", DB: 3, Cursor: "1", UpdatedAt: at}))

	got, err := s.Shards(ctx, j.ID)
	require.NoError(t, err)
	type key struct {
		node     string
		db       int
		cursor   string
		done     bool
		commands bool
		copied   int64
	}
	var keys []key
	for _, sh := range got {
		keys = append(keys, key{sh.Node, sh.DB, sh.Cursor, sh.Done, sh.Commands, sh.Counters.Copied})
		assert.False(t, sh.UpdatedAt.IsZero(), "PutShard sets UpdatedAt")
	}
	assert.Equal(t, []key{
		{"10.0.0.1:6379", 2, "4096", false, true, 7},
		{"10.0.0.1:6379", 10, "0", false, false, 0},
		{"10.0.0.2:6379", 0, "0", true, false, 5},
		{"10.0.0.2:6379", 1, "17", false, false, 0},
	}, keys)
	assert.Equal(t, int64(1), got[0].Counters.Fallbacks)

	others, err := s.Shards(ctx, other.ID)
	require.NoError(t, err)
	require.Len(t, others, 2)
	assert.Equal(t, "", others[0].Node)
	assert.True(t, at.Equal(others[0].UpdatedAt), "an explicit UpdatedAt is kept")
	assert.Equal(t, "elsewhere:6379", others[1].Node)

	err = s.PutShard(ctx, j.ID, job.Shard{Node: "n", DB: -1})
	assert.ErrorIs(t, err, job.ErrInvalid)
}

func testReports(t *testing.T, s job.Store) {
	ctx := context.Background()
	j := create(t, s, newJob(job.KindMigration))
	other := create(t, s, newJob(job.KindMigration))

	_, err := s.Report(ctx, j.ID, job.ReportAnalysis)
	require.ErrorIs(t, err, job.ErrNotFound, "no report yet")

	body := []byte(`{"blocking":false,"findings":[]}`)
	require.NoError(t, s.PutReport(ctx, j.ID, job.ReportAnalysis, body))
	body[0] = 'X' // the store must have kept its own copy
	got, err := s.Report(ctx, j.ID, job.ReportAnalysis)
	require.NoError(t, err)
	assert.Equal(t, `{"blocking":false,"findings":[]}`, string(got))
	got[0] = 'Y'
	again, err := s.Report(ctx, j.ID, job.ReportAnalysis)
	require.NoError(t, err)
	assert.Equal(t, `{"blocking":false,"findings":[]}`, string(again), "callers get their own copy")

	require.NoError(t, s.PutReport(ctx, j.ID, job.ReportAnalysis, []byte(`{"blocking":true}`)))
	got, err = s.Report(ctx, j.ID, job.ReportAnalysis)
	require.NoError(t, err)
	assert.Equal(t, `{"blocking":true}`, string(got), "PutReport replaces")

	big := []byte(strings.Repeat("v", 100_000))
	require.NoError(t, s.PutReport(ctx, j.ID, job.ReportValidation, big))
	got, err = s.Report(ctx, j.ID, job.ReportValidation)
	require.NoError(t, err)
	assert.Equal(t, big, got)

	_, err = s.Report(ctx, other.ID, job.ReportAnalysis)
	assert.ErrorIs(t, err, job.ErrNotFound, "reports belong to one job")
	assert.ErrorIs(t, s.PutReport(ctx, j.ID, "", body), job.ErrInvalid)
}

func testReportNames(t *testing.T, s job.Store) {
	ctx := context.Background()
	j := create(t, s, newJob(job.KindMigration))
	other := create(t, s, newJob(job.KindMigration))

	names, err := s.ReportNames(ctx, j.ID, "snapshot#")
	require.NoError(t, err)
	assert.Empty(t, names, "no reports yet")
	assert.NotNil(t, names, "none is an empty slice, not nil")

	for _, name := range []string{
		"snapshot#2026-01-02T03:04:05.000000002Z",
		job.ReportAnalysis,
		"snapshot#2026-01-02T03:04:05.000000001Z",
		"snapshots", // shares the prefix "snapshot" but not "snapshot#"
		"snapshot#2025-12-31T23:59:59.999999999Z",
	} {
		require.NoError(t, s.PutReport(ctx, j.ID, name, []byte(`{}`)))
	}
	require.NoError(t, s.PutReport(ctx, other.ID, "snapshot#2026-06-01T00:00:00.000000000Z", []byte(`{}`)))
	// Replacing a report does not list it twice.
	require.NoError(t, s.PutReport(ctx, j.ID, "snapshot#2026-01-02T03:04:05.000000001Z", []byte(`{"v":2}`)))

	names, err = s.ReportNames(ctx, j.ID, "snapshot#")
	require.NoError(t, err)
	assert.Equal(t, []string{
		"snapshot#2025-12-31T23:59:59.999999999Z",
		"snapshot#2026-01-02T03:04:05.000000001Z",
		"snapshot#2026-01-02T03:04:05.000000002Z",
	}, names, "only this job's reports with the prefix, ascending")

	all, err := s.ReportNames(ctx, j.ID, "")
	require.NoError(t, err)
	assert.Len(t, all, 5, "an empty prefix lists every report")
	assert.True(t, slices.IsSorted(all), "ascending: %q", all)
}

// seed creates 25 jobs with increasing CreatedAt (jobs 10 and 11 share one,
// so the id breaks the tie): every third is an analysis job, every fourth is
// moved to analyzing. It returns them newest first.
func seed(t *testing.T, s job.Store) []job.Job {
	ctx := context.Background()
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	var jobs []job.Job
	for i := range 25 {
		kind := job.KindMigration
		if i%3 == 0 {
			kind = job.KindAnalysis
		}
		j := newJob(kind)
		j.CreatedAt = base.Add(time.Duration(i) * time.Minute)
		if i == 11 {
			j.CreatedAt = jobs[10].CreatedAt
		}
		require.NoError(t, s.Create(ctx, j))
		if i%4 == 0 {
			_, err := s.Transition(ctx, j.ID, job.StatusAnalyzing, nil)
			require.NoError(t, err)
		}
		got, err := s.Get(ctx, j.ID)
		require.NoError(t, err)
		jobs = append(jobs, got)
	}
	slices.Reverse(jobs)
	return jobs
}

// pages lists everything matching opts, page by page.
func pages(t *testing.T, s job.Store, opts job.ListOptions) []string {
	t.Helper()
	var ids []string
	for range 100 {
		page, next, err := s.List(context.Background(), opts)
		require.NoError(t, err)
		assert.LessOrEqual(t, len(page), opts.Limit)
		for _, j := range page {
			assert.True(t, opts.Match(j), "job %s (%s, %s) does not match the filter", j.ID, j.Kind, j.Status)
			ids = append(ids, j.ID)
		}
		if next == "" {
			return ids
		}
		opts.Next = next
	}
	t.Fatal("List never returned an empty next token")
	return nil
}

func idsOf(jobs []job.Job, keep func(job.Job) bool) []string {
	var ids []string
	for _, j := range jobs {
		if keep(j) {
			ids = append(ids, j.ID)
		}
	}
	return ids
}

func testListPaging(t *testing.T, s job.Store) {
	ctx := context.Background()
	want := seed(t, s)

	first, next, err := s.List(ctx, job.ListOptions{Limit: 10})
	require.NoError(t, err)
	require.NotEmpty(t, first)
	require.NotEmpty(t, next)
	sameJob(t, want[0], first[0], "List returns whole jobs, newest first")

	got := pages(t, s, job.ListOptions{Limit: 10})
	assert.Equal(t, idsOf(want, func(job.Job) bool { return true }), got, "all 25, each once, newest first")

	all, next, err := s.List(ctx, job.ListOptions{})
	require.NoError(t, err)
	assert.Len(t, all, 25, "the default page holds 25")
	assert.Empty(t, next)
}

func testListFilters(t *testing.T, s job.Store) {
	want := seed(t, s)
	tests := []struct {
		name string
		opts job.ListOptions
	}{
		{"analysis jobs", job.ListOptions{Kind: job.KindAnalysis, Limit: 3}},
		{"migration jobs", job.ListOptions{Kind: job.KindMigration, Limit: 4}},
		{"analyzing jobs", job.ListOptions{Status: job.StatusAnalyzing, Limit: 2}},
		{"pending migration jobs", job.ListOptions{Kind: job.KindMigration, Status: job.StatusPending, Limit: 5}},
		{"succeeded jobs (none)", job.ListOptions{Status: job.StatusSucceeded, Limit: 5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := pages(t, s, tc.opts)
			assert.Equal(t, idsOf(want, tc.opts.Match), got)
		})
	}
	_, _, err := s.List(context.Background(), job.ListOptions{Kind: "backup"})
	assert.ErrorIs(t, err, job.ErrInvalid)
	_, _, err = s.List(context.Background(), job.ListOptions{Status: "done"})
	assert.ErrorIs(t, err, job.ErrInvalid)
}

func testListBadToken(t *testing.T, s job.Store) {
	seed(t, s)
	_, _, err := s.List(context.Background(), job.ListOptions{Limit: 5, Next: "not a token!"})
	assert.ErrorIs(t, err, job.ErrInvalid)
}

func testAcquireRace(t *testing.T, s job.Store) {
	ctx := context.Background()
	const n, limit = 30, 10
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	ids := make([]string, n)
	for i := range n {
		ids[i] = job.NewID()
		wg.Go(func() {
			<-start
			errs[i] = s.Acquire(ctx, ids[i], job.KindMigration, limit)
		})
	}
	close(start)
	wg.Wait()

	var won, lost []string
	for i, err := range errs {
		if err == nil {
			won = append(won, ids[i])
			continue
		}
		assert.ErrorIs(t, err, job.ErrLimit, "goroutine %d", i)
		lost = append(lost, ids[i])
	}
	require.Len(t, won, limit)
	require.Len(t, lost, n-limit)

	// Every slot is taken: a newcomer is refused, a holder is not.
	assert.ErrorIs(t, s.Acquire(ctx, lost[0], job.KindMigration, limit), job.ErrLimit)
	assert.NoError(t, s.Acquire(ctx, won[0], job.KindMigration, limit), "Acquire is idempotent for a holder")
	// Slots are counted per kind.
	assert.NoError(t, s.Acquire(ctx, lost[0], job.KindAnalysis, 20))
}

func testAcquireRelease(t *testing.T, s job.Store) {
	ctx := context.Background()
	a, b, c := job.NewID(), job.NewID(), job.NewID()
	require.NoError(t, s.Acquire(ctx, a, job.KindAnalysis, 2))
	require.NoError(t, s.Acquire(ctx, a, job.KindAnalysis, 2), "same id again")
	require.NoError(t, s.Acquire(ctx, b, job.KindAnalysis, 2), "a's repeat must not have taken a second slot")
	require.ErrorIs(t, s.Acquire(ctx, c, job.KindAnalysis, 2), job.ErrLimit)

	require.NoError(t, s.Release(ctx, a, job.KindAnalysis))
	require.NoError(t, s.Release(ctx, a, job.KindAnalysis), "Release is idempotent")
	require.NoError(t, s.Release(ctx, c, job.KindMigration), "releasing a slot never held")
	require.NoError(t, s.Acquire(ctx, c, job.KindAnalysis, 2), "the released slot is free")
	assert.ErrorIs(t, s.Acquire(ctx, a, job.KindAnalysis, 2), job.ErrLimit, "and only one was freed")

	// Many acquisitions of one id hold one slot.
	d := job.NewID()
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { assert.NoError(t, s.Acquire(ctx, d, job.KindMigration, 1)) })
	}
	wg.Wait()
	assert.ErrorIs(t, s.Acquire(ctx, job.NewID(), job.KindMigration, 1), job.ErrLimit)

	assert.ErrorIs(t, s.Acquire(ctx, d, job.KindMigration, 0), job.ErrInvalid)
	assert.ErrorIs(t, s.Acquire(ctx, d, "backup", 1), job.ErrInvalid)
}

// passwordish reports whether a field or key name suggests a secret value.
func passwordish(name string) bool {
	n := strings.ToLower(name)
	return strings.Contains(n, "password") || strings.Contains(n, "passwd") || n == "pass" || n == "pwd"
}

func testRedaction(t *testing.T, s job.Store) {
	ctx := context.Background()

	var walkType func(reflect.Type, string)
	walkType = func(rt reflect.Type, path string) {
		for i := range rt.NumField() {
			f := rt.Field(i)
			assert.False(t, passwordish(f.Name), "field %s%s", path, f.Name)
			assert.False(t, passwordish(f.Tag.Get("json")), "json tag of %s%s", path, f.Name)
			if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() != "time" {
				walkType(f.Type, path+f.Name+".")
			}
		}
	}
	walkType(reflect.TypeFor[job.Job](), "Job.")
	walkType(reflect.TypeFor[job.Shard](), "Shard.")

	j := newJob(job.KindMigration)
	j.Error = "x"
	j.StartedAt, j.FinishedAt, j.ExpireAt = time.Now(), time.Now(), time.Now()
	j.ExecutionARN, j.TaskARN, j.Stage = "e", "t", "s"
	stored := create(t, s, j)
	raw, err := json.Marshal(stored)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(raw, &doc))
	var walkJSON func(any, string)
	walkJSON = func(v any, path string) {
		if m, ok := v.(map[string]any); ok {
			for k, sub := range m {
				assert.False(t, passwordish(k), "JSON key %s%s", path, k)
				walkJSON(sub, path+k+".")
			}
		}
	}
	walkJSON(doc, "")
	assert.Contains(t, doc, "sourceSecretRef", "the secret is referenced, not stored")
	assert.Equal(t, "redis://default:xxxxx@source.example:6379/0", stored.Source, "a masked password is kept as given")

	for _, ep := range []string{
		"redis://default:hunter2@source.example:6379",
		"rediss://:hunter2@source.example:6380/1?cluster=true",
		"default:hunter2@source.example:6379",
		"valkey://source.example:6379?password=hunter2",
	} {
		j := newJob(job.KindMigration)
		j.Source = ep
		assert.ErrorIs(t, s.Create(ctx, j), job.ErrInvalid, "source %s", ep)
	}
}

func testCanceledContext(t *testing.T, s job.Store) {
	j := create(t, s, newJob(job.KindMigration))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	other := newJob(job.KindMigration)
	assert.ErrorIs(t, s.Create(ctx, other), context.Canceled)
	_, err := s.Transition(ctx, j.ID, job.StatusAnalyzing, nil)
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, s.AddCounters(ctx, j.ID, job.Counters{Copied: 1}), context.Canceled)

	_, err = s.Get(context.Background(), other.ID)
	assert.ErrorIs(t, err, job.ErrNotFound)
	got, err := s.Get(context.Background(), j.ID)
	require.NoError(t, err)
	sameJob(t, j, got)
}
