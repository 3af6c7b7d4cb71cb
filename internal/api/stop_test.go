package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/shake"
)

// taskStop is one Tasks.Stop call, with what was true when it came.
type taskStop struct {
	ARN, Reason string
	// JobStatus is the status of the job whose task it is, then.
	JobStatus job.Status
	// ExecutionStopped: the job's execution had been stopped by then.
	ExecutionStopped bool
}

// orderedTasks records the stops and what preceded them.
type orderedTasks struct {
	store job.Store
	execs *fakeExecutions
	err   error

	mu    sync.Mutex
	stops []taskStop
}

func (o *orderedTasks) Stop(ctx context.Context, arn, reason string) error {
	c := taskStop{ARN: arn, Reason: reason}
	jobs, _, err := o.store.List(ctx, job.ListOptions{Kind: job.KindMigration})
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if j.TaskARN == arn {
			c.JobStatus = j.Status
			o.execs.mu.Lock()
			_, c.ExecutionStopped = o.execs.stopped[j.ExecutionARN]
			o.execs.mu.Unlock()
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stops = append(o.stops, c)
	return o.err
}

func (o *orderedTasks) calls() []taskStop {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]taskStop(nil), o.stops...)
}

// logRecords is a JSON log, decoded.
type logRecords struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logRecords) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// find returns the records with msg.
func (l *logRecords) find(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(l.buf.Bytes()))
	for dec.More() {
		var r map[string]any
		require.NoError(t, dec.Decode(&r))
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// stopWorld is an API whose Tasks records the stops.
type stopWorld struct {
	*server
	execs *fakeExecutions
	tasks *orderedTasks
	log   *logRecords
}

func newStopWorld(t *testing.T, tasksErr error) *stopWorld {
	store := job.NewMemory()
	execs := newFake()
	w := &stopWorld{execs: execs, tasks: &orderedTasks{store: store, execs: execs, err: tasksErr}, log: &logRecords{}}
	w.server = newServer(t, api.Config{Store: store, Executions: execs, Tasks: w.tasks, MaxExecutions: 1,
		Log: slog.New(slog.NewJSONHandler(w.log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	return w
}

// runningJob starts a migration of mode and walks it to running, with its
// task's ARN (taskARN) when withTask.
func (w *stopWorld) runningJob(t *testing.T, mode string, withTask bool) string {
	t.Helper()
	var v api.JobView
	w.call(http.MethodPost, "/migrations", migration(set("mode", mode)), http.StatusAccepted, &v)
	running(t, w.store, v.ID, string(shake.StageReplicating), job.Progress{})
	if !withTask {
		_, err := w.store.Update(context.Background(), v.ID, func(j *job.Job) { j.TaskARN = "" })
		require.NoError(t, err)
	}
	return v.ID
}

func TestAStopStopsARedisShakeJobsTaskAfterTheJobAndItsExecution(t *testing.T) {
	for _, mode := range []string{job.ModeRedisShakeSync, job.ModeRedisShake} {
		t.Run(mode, func(t *testing.T) {
			w := newStopWorld(t, nil)
			id := w.runningJob(t, mode, true)

			var got api.MigrationView
			w.call(http.MethodPost, "/migrations/"+id+"/stop", api.StopRequest{Reason: "window closed"}, http.StatusOK, &got)
			assert.Equal(t, job.StatusCancelled, got.Status)
			assert.Equal(t, []taskStop{{
				ARN: taskARN, Reason: "kvmigrate: job " + id + " stopped by request: window closed",
				JobStatus: job.StatusCancelled, ExecutionStopped: true,
			}}, w.tasks.calls(), "the task is stopped once the stop is recorded and the execution stopped")
			assert.Len(t, w.log.find(t, "task stopped"), 1)
		})
	}
}

func TestAStopLeavesAloneWhatHasNoTask(t *testing.T) {
	t.Run("a command job", func(t *testing.T) {
		w := newStopWorld(t, nil)
		id := w.runningJob(t, job.ModeCommand, true) // a stray task ARN: still not a redis-shake job
		w.call(http.MethodPost, "/migrations/"+id+"/stop", nil, http.StatusOK, nil)
		assert.Empty(t, w.tasks.calls())
		assert.Contains(t, w.execs.stopped, executionARN+id, "its execution is stopped")
	})
	t.Run("a redis-shake job whose task has not started", func(t *testing.T) {
		w := newStopWorld(t, nil)
		id := w.runningJob(t, job.ModeRedisShakeSync, false)
		w.call(http.MethodPost, "/migrations/"+id+"/stop", nil, http.StatusOK, nil)
		assert.Empty(t, w.tasks.calls())
	})
	t.Run("an API without Tasks", func(t *testing.T) {
		s := newServer(t, api.Config{Executions: newFake()})
		var v api.JobView
		s.call(http.MethodPost, "/migrations", migration(set("mode", job.ModeRedisShakeSync)), http.StatusAccepted, &v)
		running(t, s.store, v.ID, string(shake.StageReplicating), job.Progress{})
		var got api.MigrationView
		s.call(http.MethodPost, "/migrations/"+v.ID+"/stop", nil, http.StatusOK, &got)
		assert.Equal(t, job.StatusCancelled, got.Status, "the task finds the job stopped")
	})
}

func TestAStopSucceedsWhenTheTaskCannotBeStopped(t *testing.T) {
	for _, c := range []struct {
		name  string
		err   error
		level string
		msg   string
	}{
		{"a task that is gone is noted", fmt.Errorf("stop task: %w", api.ErrTaskGone), "INFO", "the task has already ended"},
		{"another failure is a warning", errors.New("AccessDeniedException: not authorized to perform ecs:StopTask"), "WARN", "stop the task"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newStopWorld(t, c.err)
			id := w.runningJob(t, job.ModeRedisShakeSync, true)
			var got api.MigrationView
			w.call(http.MethodPost, "/migrations/"+id+"/stop", nil, http.StatusOK, &got)
			assert.Equal(t, job.StatusCancelled, got.Status)
			require.Len(t, w.tasks.calls(), 1)

			recs := w.log.find(t, c.msg)
			require.Len(t, recs, 1, "logged as %q", c.msg)
			assert.Equal(t, c.level, recs[0]["level"])
			assert.Equal(t, id, recs[0]["jobId"])
			assert.Equal(t, taskARN, recs[0]["taskArn"])
			assert.Empty(t, w.log.find(t, "task stopped"))

			stored, err := w.store.Get(context.Background(), id)
			require.NoError(t, err)
			assert.Equal(t, job.StatusCancelled, stored.Status)
			w.call(http.MethodPost, "/migrations", migration(nil), http.StatusAccepted, nil) // its slot was released
		})
	}
}

// A redis-shake task outlives its execution: a stuck job's reaping and an
// execution that ended without success stop the task too.
func TestAStuckOrEndedRedisShakeJobHasItsTaskStopped(t *testing.T) {
	long := time.Now().UTC().Add(-3 * time.Hour)
	t.Run("stuck", func(t *testing.T) {
		for _, mode := range []string{job.ModeRedisShakeSync, job.ModeCommand} {
			t.Run(mode, func(t *testing.T) {
				store := job.NewMemory()
				tasks := &orderedTasks{store: store, execs: newFake()}
				s := newServer(t, api.Config{Store: store, Executions: tasks.execs, Tasks: tasks, StuckTimeout: 2 * time.Hour})
				j := seed(t, store, job.Job{Mode: mode, Status: job.StatusRunning, UpdatedAt: long, TaskARN: taskARN, ExecutionARN: executionARN + "x"})
				var v api.MigrationView
				s.call(http.MethodGet, "/migrations/"+j.ID, nil, http.StatusOK, &v)
				require.Equal(t, job.StatusFailed, v.Status)
				if mode == job.ModeCommand {
					assert.Empty(t, tasks.calls(), "a command job has no task")
					return
				}
				assert.Equal(t, []taskStop{{ARN: taskARN, Reason: "kvmigrate: job " + j.ID + " stuck: no progress for 180 minutes",
					JobStatus: job.StatusFailed, ExecutionStopped: true}}, tasks.calls())
			})
		}
	})
	for _, tc := range []struct {
		status string
		mode   string
		stops  bool
	}{
		{"TIMED_OUT", job.ModeRedisShakeSync, true},
		{"ABORTED", job.ModeRedisShake, true},
		{"FAILED", job.ModeRedisShakeSync, true},
		{"SUCCEEDED", job.ModeRedisShakeSync, false},
		{"TIMED_OUT", job.ModeCommand, false},
	} {
		t.Run("execution "+tc.status+" of a "+tc.mode+" job", func(t *testing.T) {
			ctx := context.Background()
			store := job.NewMemory()
			tasks := &orderedTasks{store: store, execs: newFake()}
			s := newServer(t, api.Config{Store: store, Executions: tasks.execs, Tasks: tasks, StateMachineARN: stateMachine})
			status := job.StatusRunning
			if tc.status == "SUCCEEDED" {
				status = job.StatusSucceeded
			}
			seed(t, store, job.Job{ID: fixtureJob, Mode: tc.mode, Status: status, UpdatedAt: time.Now().UTC(), TaskARN: taskARN})
			ev := event(t, "execution-status-change.json")
			var d map[string]any
			require.NoError(t, json.Unmarshal(ev.Detail, &d))
			d["status"] = tc.status
			ev.Detail, _ = json.Marshal(d)
			require.NoError(t, s.api.HandleEvent(ctx, ev))
			if !tc.stops {
				assert.Empty(t, tasks.calls())
				return
			}
			require.Len(t, tasks.calls(), 1)
			assert.Equal(t, taskARN, tasks.calls()[0].ARN)
			assert.Equal(t, "kvmigrate: the execution of job "+fixtureJob+" ended "+tc.status, tasks.calls()[0].Reason)
			assert.True(t, tasks.calls()[0].JobStatus.Terminal(), "the job is ended first")
		})
	}
}
