package api_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/shake"
)

// fakeTasks records the tasks the API stops.
type fakeTasks struct {
	mu      sync.Mutex
	stopped map[string]string // task ARN → reason
	err     error
}

func (f *fakeTasks) Stop(_ context.Context, arn, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped == nil {
		f.stopped = map[string]string{}
	}
	f.stopped[arn] = reason
	return f.err
}

const taskARN = "arn:aws:ecs:us-east-1:123456789012:task/kvmigrate-ShakeCluster/0123456789abcdef"

// running walks job id to running (as the analyze step and shake-task do)
// and sets what the task writes: its ARN, the stage, the progress.
func running(t *testing.T, s job.Store, id, stage string, p job.Progress) {
	t.Helper()
	ctx := context.Background()
	for _, st := range []job.Status{job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning} {
		_, err := s.Transition(ctx, id, st, nil)
		require.NoError(t, err)
	}
	_, err := s.Update(ctx, id, func(j *job.Job) { j.TaskARN, j.Stage, j.Progress = taskARN, stage, p })
	require.NoError(t, err)
}

func TestCutsOverARunningSyncMigration(t *testing.T) {
	tasks := &fakeTasks{}
	s := newServer(t, api.Config{Executions: newFake(), Tasks: tasks})
	var v api.JobView
	s.call(http.MethodPost, "/migrations", migration(set("mode", job.ModeRedisShakeSync)), http.StatusAccepted, &v)
	path := "/migrations/" + v.ID + "/cutover"

	var e errorBody
	s.call(http.MethodPost, path, nil, http.StatusConflict, &e)
	assert.Contains(t, e.Error, "no sync to cut over", "a pending job has nothing to cut over")

	progress := job.Progress{Phase: "syncing_rdb", RDBBytesDone: 512, RDBBytesTotal: 2048}
	running(t, s.store, v.ID, string(shake.StageInitialSync), progress)
	var got api.MigrationView
	s.call(http.MethodGet, "/migrations/"+v.ID, nil, http.StatusOK, &got)
	require.NotNil(t, got.Shake, "GET shows redis-shake's progress")
	assert.Equal(t, progress, *got.Shake)
	assert.Equal(t, string(shake.StageInitialSync), got.Stage)

	s.call(http.MethodPost, path, nil, http.StatusConflict, &e)
	assert.Contains(t, e.Error, "initial sync", "no cutover before the job replicates")
	assert.Empty(t, tasks.stopped)

	_, err := s.store.Update(context.Background(), v.ID, func(j *job.Job) {
		j.Stage, j.Progress = string(shake.StageReplicating), job.Progress{Phase: "syncing_aof", ReadyForCutover: true}
	})
	require.NoError(t, err)
	s.call(http.MethodPost, path, map[string]any{"bogus": true}, http.StatusBadRequest, nil)
	s.call(http.MethodPost, path, nil, http.StatusAccepted, &got)
	assert.Equal(t, job.RequestCutover, got.Request)
	assert.Equal(t, job.StatusRunning, got.Status, "the task ends it")
	assert.Equal(t, map[string]string{taskARN: "kvmigrate: cutover of job " + v.ID}, tasks.stopped)

	stored, err := s.store.Get(context.Background(), v.ID)
	require.NoError(t, err)
	assert.Equal(t, job.RequestCutover, stored.Request, "the task finds the request in the record")
	s.call(http.MethodPost, path, nil, http.StatusAccepted, nil) // asking again is harmless
}

func TestCutsOverDuringTheInitialSyncWhenForced(t *testing.T) {
	tasks := &fakeTasks{err: errors.New("ecs: task already stopped")}
	s := newServer(t, api.Config{Executions: newFake(), Tasks: tasks})
	var v api.JobView
	s.call(http.MethodPost, "/migrations", migration(set("mode", job.ModeRedisShakeSync)), http.StatusAccepted, &v)
	running(t, s.store, v.ID, string(shake.StageInitialSync), job.Progress{})

	var got api.MigrationView
	s.call(http.MethodPost, "/migrations/"+v.ID+"/cutover", map[string]any{"force": true}, http.StatusAccepted, &got)
	assert.Equal(t, job.RequestCutover, got.Request, "a task that cannot be stopped still finds the request")
	assert.Contains(t, tasks.stopped, taskARN)
}

func TestRefusesToCutOverWhatIsNotASyncMigration(t *testing.T) {
	s := newServer(t, api.Config{Executions: newFake()})
	var e errorBody
	for _, mode := range []string{job.ModeCommand, job.ModeRedisShake} {
		var v api.JobView
		s.call(http.MethodPost, "/migrations", migration(set("mode", mode)), http.StatusAccepted, &v)
		running(t, s.store, v.ID, string(shake.StageReplicating), job.Progress{})
		s.call(http.MethodPost, "/migrations/"+v.ID+"/cutover", nil, http.StatusConflict, &e)
		assert.Contains(t, e.Error, "only redis_shake_sync jobs are cut over", mode)

		var got api.MigrationView
		s.call(http.MethodGet, "/migrations/"+v.ID, nil, http.StatusOK, &got)
		assert.Equal(t, mode == job.ModeRedisShake, got.Shake != nil, "redis-shake progress for the redis-shake modes only (%s)", mode)
	}
	s.call(http.MethodPost, "/migrations/nope/cutover", nil, http.StatusNotFound, &e)
	s.call(http.MethodGet, "/migrations/nope/cutover", nil, http.StatusMethodNotAllowed, &e)
}
