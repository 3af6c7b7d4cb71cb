package sfntest_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/sfntest"
)

// A stop of a running redis_shake_sync migration through the API: Step
// Functions' StopExecution aborts the execution but does not stop a
// waitForTaskToken task, so the API stops it too (Tasks, here the
// harness's StopTask: SIGTERM to shake-task), and the job ends stopped,
// not cut over. (newShakeWorld and the stand-in for redis-shake: see
// shake_test.go.)
func TestShakeSyncStopThroughTheAPIStopsTheTask(t *testing.T) {
	t.Parallel()
	src, dst := protectedServers(t)
	seedBoth(t, src, dst)
	w := newShakeWorld(t, "sync-rdb-aof", "source-pw", "target-pw")

	v, ex, got := w.startSyncUntilReady(t, src, dst)
	j, err := w.store.Get(t.Context(), v.ID)
	require.NoError(t, err)
	require.NotEmpty(t, j.TaskARN, "the task recorded its ARN")
	require.True(t, w.h.TaskRuns()[0].Running)

	var stopped api.MigrationView
	require.Equal(t, http.StatusOK, w.call(t, http.MethodPost, "/migrations/"+v.ID+"/stop", api.StopRequest{Reason: "maintenance window over"}, &stopped))
	assert.Equal(t, job.StatusCancelled, stopped.Status)

	res := wait(t, ex)
	assert.Equal(t, sfntest.StatusAborted, res.Status, ex.History())
	assert.Zero(t, ex.Entered("Validate"))

	runs := w.h.TaskRuns()
	require.Len(t, runs, 1)
	assert.Equal(t, j.TaskARN, runs[0].ARN)
	// The harness gives a waitForTaskToken task a stop reason only through
	// StopTask (ECSTasks): this one is the API's.
	assert.Equal(t, "kvmigrate: job "+v.ID+" stopped by request: maintenance window over", runs[0].StopReason,
		"the API stopped the task (ecs:StopTask)")
	require.Eventually(t, func() bool { return !w.h.TaskRuns()[0].Running }, 30*time.Second, 20*time.Millisecond,
		"the task process ends; its log:\n%s", w.h.TaskRuns()[0].Log)
	assert.Empty(t, tokenCalls(w.h, "SendTaskSuccess"), "a stop is not a cutover")

	got = w.get(t, v.ID)
	assert.Equal(t, job.StatusCancelled, got.Status, "the task leaves the job stopped")
	assert.Contains(t, got.Error, "maintenance window over")
	assert.Empty(t, got.Request)
	assert.True(t, slotFree(t, w.store), "the stopped job's slot is released")
	assert.Empty(t, w.h.Events(), "an aborted execution sends no event of its own")
}
