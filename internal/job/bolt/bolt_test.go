package bolt_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/job/bolt"
	"github.com/kvmigrate/kvmigrate/internal/job/jobtest"
)

func TestStore(t *testing.T) {
	jobtest.Run(t, func(t *testing.T) job.Store {
		s, err := bolt.Open(filepath.Join(t.TempDir(), "jobs.db"))
		require.NoError(t, err)
		t.Cleanup(func() { assert.NoError(t, s.Close()) })
		return s
	})
}

func open(t *testing.T, path string) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(path)
	require.NoError(t, err)
	return s
}

func TestDataSurvivesCloseAndOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jobs.db")
	s := open(t, path)

	j := job.Job{ID: job.NewID(), Kind: job.KindMigration, Mode: job.ModeCommand,
		Source: "redis://src.example:6379", Target: "valkey://dst.example:6379", SourceSecretRef: "env:SRC"}
	require.NoError(t, s.Create(ctx, j))
	for _, st := range []job.Status{job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning} {
		_, err := s.Transition(ctx, j.ID, st, nil)
		require.NoError(t, err)
	}
	require.NoError(t, s.AddCounters(ctx, j.ID, job.Counters{Copied: 42, Bytes: 4096}))
	require.NoError(t, s.PutShard(ctx, j.ID, job.Shard{Node: "n1", DB: 0, Cursor: "1234", Commands: true}))
	require.NoError(t, s.PutReport(ctx, j.ID, job.ReportAnalysis, []byte(`{"blocking":false}`)))
	require.NoError(t, s.Acquire(ctx, j.ID, job.KindMigration, 1))
	before, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	s = open(t, path)
	defer s.Close()
	after, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	assert.Equal(t, before, after)
	assert.Equal(t, job.StatusRunning, after.Status)
	assert.Equal(t, int64(42), after.Counters.Copied)

	shards, err := s.Shards(ctx, j.ID)
	require.NoError(t, err)
	require.Len(t, shards, 1)
	assert.Equal(t, "1234", shards[0].Cursor, "the resume checkpoint survives")
	assert.True(t, shards[0].Commands)

	report, err := s.Report(ctx, j.ID, job.ReportAnalysis)
	require.NoError(t, err)
	assert.JSONEq(t, `{"blocking":false}`, string(report))

	jobs, next, err := s.List(ctx, job.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, next)
	require.Len(t, jobs, 1)
	assert.Equal(t, j.ID, jobs[0].ID)

	// Slots of a previous process are stale once we hold the file lock.
	assert.NoError(t, s.Acquire(ctx, job.NewID(), job.KindMigration, 1))
	_, err = s.Transition(ctx, j.ID, job.StatusRunning, nil)
	assert.ErrorIs(t, err, job.ErrConflict, "status machine still enforced after reopen")
}

func TestSecondOpenFailsWithALockedError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jobs.db")
	s := open(t, path)
	defer s.Close()

	second, err := bolt.Open(path)
	require.ErrorIs(t, err, bolt.ErrLocked)
	assert.Nil(t, second)
	assert.ErrorContains(t, err, path, "the message names the file")
	t.Log(err)

	require.NoError(t, s.Close())
	third := open(t, path)
	assert.NoError(t, third.Close(), "the lock is released on Close")
}

func TestOpenSweepsExpiredJobs(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jobs.db")
	s := open(t, path)
	old := job.Job{ID: job.NewID(), Kind: job.KindAnalysis, Source: "redis://a:6379"}
	keep := job.Job{ID: job.NewID(), Kind: job.KindAnalysis, Source: "redis://b:6379"}
	running := job.Job{ID: job.NewID(), Kind: job.KindMigration, Source: "redis://c:6379"}
	for _, j := range []job.Job{old, keep, running} {
		require.NoError(t, s.Create(ctx, j))
	}
	_, err := s.Transition(ctx, old.ID, job.StatusFailed, func(j *job.Job) { j.ExpireAt = time.Now().Add(-time.Minute) })
	require.NoError(t, err)
	require.NoError(t, s.PutReport(ctx, old.ID, job.ReportAnalysis, []byte("{}")))
	done, err := s.Transition(ctx, keep.ID, job.StatusFailed, nil)
	require.NoError(t, err)
	require.True(t, done.ExpireAt.After(time.Now()))
	require.NoError(t, s.Close())

	s = open(t, path)
	defer s.Close()
	_, err = s.Get(ctx, old.ID)
	assert.ErrorIs(t, err, job.ErrNotFound, "an expired job is swept at Open")
	_, err = s.Report(ctx, old.ID, job.ReportAnalysis)
	assert.ErrorIs(t, err, job.ErrNotFound, "with its reports")
	jobs, _, err := s.List(ctx, job.ListOptions{})
	require.NoError(t, err)
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	assert.Equal(t, []string{running.ID, keep.ID}, ids, "the index forgets it too")
}

func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "home")
	t.Setenv("KVMIGRATE_HOME", dir)
	path, err := bolt.DefaultPath()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "jobs.db"), path)
	info, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), info.Mode().Perm())

	s := open(t, path)
	defer s.Close()
	assert.Equal(t, path, s.Path())
	info, err = os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
}

func TestDefaultPathFallsBackToHome(t *testing.T) {
	home := t.TempDir()
	t.Setenv("KVMIGRATE_HOME", "")
	t.Setenv("HOME", home)
	path, err := bolt.DefaultPath()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(home, ".kvmigrate", "jobs.db"), path)
	assert.DirExists(t, filepath.Join(home, ".kvmigrate"))
}
