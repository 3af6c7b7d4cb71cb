package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/job"
)

// seed creates a job as it stands, holding a slot of its kind when it is
// not finished.
func seed(t *testing.T, store job.Store, j job.Job) job.Job {
	t.Helper()
	ctx := context.Background()
	if j.ID == "" {
		j.ID = job.NewID()
	}
	if j.Kind == "" {
		j.Kind = job.KindMigration
	}
	if j.Kind == job.KindMigration && j.Mode == "" {
		j.Mode = job.ModeCommand
	}
	j.CreatedAt = j.UpdatedAt.Add(-time.Minute)
	require.NoError(t, store.Create(ctx, j))
	if !j.Finished() {
		require.NoError(t, store.Acquire(ctx, j.ID, j.Kind, api.MaxAnalyses))
	}
	return j
}

// free reports how many more slots of kind can be taken under limit.
func free(t *testing.T, store job.Store, kind job.Kind, limit int) int {
	t.Helper()
	ctx := context.Background()
	var taken []string
	for range limit {
		id := job.NewID()
		if err := store.Acquire(ctx, id, kind, limit); err != nil {
			require.ErrorIs(t, err, job.ErrLimit)
			break
		}
		taken = append(taken, id)
	}
	for _, id := range taken {
		require.NoError(t, store.Release(ctx, id, kind))
	}
	return len(taken)
}

func TestReapStuckFailsJobsWithoutProgressAndFreesTheirSlots(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC()
	long, recent := now.Add(-3*time.Hour), now.Add(-time.Hour)
	store := job.NewMemory()

	stuckRunning := seed(t, store, job.Job{Status: job.StatusRunning, UpdatedAt: long, ExecutionARN: executionARN + "a"})
	stuckValidating := seed(t, store, job.Job{Status: job.StatusValidating, UpdatedAt: long})
	stuckAnalysis := seed(t, store, job.Job{Kind: job.KindAnalysis, Status: job.StatusAnalyzing, UpdatedAt: long})
	copying := seed(t, store, job.Job{Status: job.StatusRunning, UpdatedAt: long})
	require.NoError(t, store.PutShard(ctx, copying.ID, job.Shard{Node: "10.0.0.1:6379", Cursor: "42", UpdatedAt: now.Add(-10 * time.Minute)}))
	idleShards := seed(t, store, job.Job{Status: job.StatusRunning, UpdatedAt: long})
	require.NoError(t, store.PutShard(ctx, idleShards.ID, job.Shard{Node: "10.0.0.1:6379", Cursor: "42", UpdatedAt: now.Add(-150 * time.Minute)}))
	paused := seed(t, store, job.Job{Status: job.StatusPaused, UpdatedAt: long})
	fresh := seed(t, store, job.Job{Status: job.StatusRunning, UpdatedAt: recent})
	done := seed(t, store, job.Job{Status: job.StatusSucceeded, UpdatedAt: long})

	require.Equal(t, api.MaxAnalyses-6, free(t, store, job.KindMigration, api.MaxAnalyses), "6 migrations hold slots")

	reaped, err := api.ReapStuck(ctx, store, now, 2*time.Hour)
	require.NoError(t, err)

	var ids []string
	for _, j := range reaped {
		ids = append(ids, j.ID)
		assert.Equal(t, job.StatusFailed, j.Status, j.ID)
	}
	assert.ElementsMatch(t, []string{stuckRunning.ID, stuckValidating.ID, stuckAnalysis.ID, idleShards.ID}, ids)
	for _, r := range reaped {
		if r.ID == stuckRunning.ID {
			assert.Equal(t, stuckRunning.ExecutionARN, r.ExecutionARN, "the caller gets the ARN of the execution to stop")
		}
	}

	for _, tc := range []struct {
		name   string
		j      job.Job
		status job.Status
		error  string
	}{
		{"a running job without progress for 3 h is failed", stuckRunning, job.StatusFailed, "stuck: no progress for 180 minutes"},
		{"a validating job without progress is failed", stuckValidating, job.StatusFailed, "stuck: no progress for 180 minutes"},
		{"an analysis without progress is failed", stuckAnalysis, job.StatusFailed, "stuck: no progress for 180 minutes"},
		{"a job whose last checkpoint is also old is failed, counting from it", idleShards, job.StatusFailed, "stuck: no progress for 150 minutes"},
		{"a job whose chunks checkpoint is left running", copying, job.StatusRunning, ""},
		{"a paused job waits for its resume", paused, job.StatusPaused, ""},
		{"a job that changed an hour ago is left running", fresh, job.StatusRunning, ""},
		{"a finished job is left as it is", done, job.StatusSucceeded, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := store.Get(ctx, tc.j.ID)
			require.NoError(t, err)
			assert.Equal(t, tc.status, got.Status)
			assert.Equal(t, tc.error, got.Error)
		})
	}
	assert.Equal(t, api.MaxAnalyses-3, free(t, store, job.KindMigration, api.MaxAnalyses), "the 3 stuck migrations freed their slots")
	assert.Equal(t, api.MaxAnalyses, free(t, store, job.KindAnalysis, api.MaxAnalyses), "and the analysis its own")

	again, err := api.ReapStuck(ctx, store, now, 2*time.Hour)
	require.NoError(t, err)
	assert.Empty(t, again, "a failed job is not reaped twice")

	none, err := api.ReapStuck(ctx, store, now.Add(24*time.Hour), 0)
	require.NoError(t, err)
	assert.Empty(t, none, "a zero timeout reaps nothing")
}

func TestReadsFailStuckJobsAndStopTheirExecutions(t *testing.T) {
	long := time.Now().UTC().Add(-3 * time.Hour)

	t.Run("GET /migrations/{id} fails a stuck migration, stops its execution and frees its slot", func(t *testing.T) {
		fake := newFake()
		s := newServer(t, api.Config{Executions: fake, StuckTimeout: 2 * time.Hour, MaxExecutions: 1})
		j := seed(t, s.store, job.Job{Status: job.StatusRunning, UpdatedAt: long, ExecutionARN: executionARN + "stuck"})

		var v api.MigrationView
		s.call(http.MethodGet, "/migrations/"+j.ID, nil, http.StatusOK, &v)
		assert.Equal(t, job.StatusFailed, v.Status)
		assert.Equal(t, "stuck: no progress for 180 minutes", v.Error)
		fake.mu.Lock()
		assert.Equal(t, map[string]string{j.ExecutionARN: "stuck: no progress for 180 minutes"}, fake.stopped)
		fake.mu.Unlock()

		s.call(http.MethodPost, "/migrations", migration(nil), http.StatusAccepted, nil)
		assert.Equal(t, 1, fake.starts(), "its slot went to a new migration")
	})

	t.Run("GET /migrations fails the stuck migrations it lists", func(t *testing.T) {
		fake := newFake()
		s := newServer(t, api.Config{Executions: fake, StuckTimeout: 2 * time.Hour})
		stuck := seed(t, s.store, job.Job{Status: job.StatusRunning, UpdatedAt: long})
		fresh := seed(t, s.store, job.Job{Status: job.StatusRunning, UpdatedAt: time.Now().UTC()})

		var list api.MigrationList
		s.call(http.MethodGet, "/migrations", nil, http.StatusOK, &list)
		got := map[string]job.Status{}
		for _, m := range list.Migrations {
			got[m.ID] = m.Status
		}
		assert.Equal(t, map[string]job.Status{stuck.ID: job.StatusFailed, fresh.ID: job.StatusRunning}, got)
		stored, err := s.store.Get(context.Background(), stuck.ID)
		require.NoError(t, err)
		assert.Equal(t, job.StatusFailed, stored.Status, "the failure is stored, not only shown")
		assert.Empty(t, fake.stopped, "a job without an execution ARN has nothing to stop")
	})

	t.Run("without a timeout a read changes nothing", func(t *testing.T) {
		s := newServer(t, api.Config{Executions: newFake()})
		j := seed(t, s.store, job.Job{Status: job.StatusRunning, UpdatedAt: long})
		var v api.MigrationView
		s.call(http.MethodGet, "/migrations/"+j.ID, nil, http.StatusOK, &v)
		assert.Equal(t, job.StatusRunning, v.Status)
	})
}
