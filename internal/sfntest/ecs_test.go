package sfntest_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/sfntest"
)

// The ECS and task token emulation's edges, with a shell script as the
// container's program (the shake-task runs are in shake_test.go).

func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "task.sh")
	require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o700))
	return path
}

func ecsDefinition(resource string, heartbeat int) []byte {
	hb := ""
	if heartbeat > 0 {
		hb = `"HeartbeatSeconds": 1,`
	}
	return []byte(`{
	  "StartAt": "Run",
	  "States": {
	    "Run": {
	      "Type": "Task",
	      "Resource": "` + resource + `",
	      "Parameters": {
	        "Cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/kv",
	        "Overrides": {"ContainerOverrides": [{"Name": "c", "Environment": [
	          {"Name": "TOKEN", "Value.$": "$$.Task.Token"}
	        ]}]}
	      },` + hb + `
	      "End": true
	    }
	  }
	}`)
}

func TestECSEmulationEdges(t *testing.T) {
	t.Parallel()
	t.Run("a waitForTaskToken task that exits without answering fails the state", func(t *testing.T) {
		t.Parallel()
		h := sfntest.New(t, sfntest.Config{
			Definition: ecsDefinition(sfntest.ResourceECSRunTaskWaitForToken, 0),
			ECS:        &sfntest.ECSConfig{Binary: script(t, `test -n "$TOKEN" || exit 9; exit 3`)},
		})
		e, err := h.Start(t.Context(), "exits", map[string]any{})
		require.NoError(t, err)
		res := wait(t, e)
		assert.Equal(t, sfntest.StatusFailed, res.Status)
		assert.Equal(t, "States.HeartbeatTimeout", res.Error)
		assert.Contains(t, res.Cause, "exited (code 3)", "the token was in the environment")
	})
	t.Run("no heartbeat within HeartbeatSeconds fails the state", func(t *testing.T) {
		t.Parallel()
		h := sfntest.New(t, sfntest.Config{
			Definition: ecsDefinition(sfntest.ResourceECSRunTaskWaitForToken, 1),
			ECS:        &sfntest.ECSConfig{Binary: script(t, `sleep 5`)},
		})
		e, err := h.Start(t.Context(), "silent", map[string]any{})
		require.NoError(t, err)
		start := time.Now()
		res := wait(t, e)
		assert.Equal(t, sfntest.StatusFailed, res.Status)
		assert.Equal(t, "States.HeartbeatTimeout", res.Error)
		assert.Less(t, time.Since(start), 4*time.Second)
	})
	t.Run("aborting a .sync task's execution stops the task", func(t *testing.T) {
		t.Parallel()
		h := sfntest.New(t, sfntest.Config{
			Definition: ecsDefinition(sfntest.ResourceECSRunTaskSync, 0),
			ECS:        &sfntest.ECSConfig{Binary: script(t, `trap 'exit 143' TERM; while :; do sleep 0.05; done`)},
		})
		e, err := h.Start(t.Context(), "abort", map[string]any{})
		require.NoError(t, err)
		require.Eventually(t, func() bool { return len(h.TaskRuns()) == 1 }, 10*time.Second, 10*time.Millisecond)
		require.NoError(t, e.Stop())
		assert.Equal(t, sfntest.StatusAborted, wait(t, e).Status)
		require.Eventually(t, func() bool { return !h.TaskRuns()[0].Running }, 10*time.Second, 10*time.Millisecond)
		assert.Equal(t, 143, h.TaskRuns()[0].ExitCode)
		assert.NotEmpty(t, h.TaskRuns()[0].StopReason)
	})
}
