package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/phase"
)

const (
	stateMachine = "arn:aws:states:us-east-1:123456789012:stateMachine:kvmigrate-migration"
	fixtureJob   = "01jd8z3k4m5n6p7q8r9s0t1v2w"
)

// event reads an EventBridge fixture from events/api strictly: every field
// of the file is one aws-lambda-go knows.
func event(t *testing.T, name string) events.CloudWatchEvent {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "events", "api", name))
	require.NoError(t, err)
	var ev events.CloudWatchEvent
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&ev))
	return ev
}

func TestMigrationRequestedStartsAMigrationOnce(t *testing.T) {
	ctx := context.Background()
	fake := newFake()
	s := newServer(t, api.Config{Executions: fake, StateMachineARN: stateMachine})
	ev := event(t, "migration-requested.json")
	require.Equal(t, phase.EventMigrationRequested, ev.DetailType)

	require.NoError(t, s.api.HandleEvent(ctx, ev))
	j, err := s.store.Get(ctx, ev.ID)
	require.NoError(t, err, "the job is named after the event")
	assert.Equal(t, job.KindMigration, j.Kind)
	assert.Equal(t, job.StatusPending, j.Status)
	assert.Equal(t, executionARN+ev.ID, j.ExecutionARN)
	in := fake.started[ev.ID]
	assert.Equal(t, "arn:aws:secretsmanager:us-east-1:123456789012:secret:kvmigrate/target-GhIjKl", in.Target.SecretARN)
	assert.Equal(t, phase.Options{Mode: phase.ModeCommand, Strategy: "auto", OnConflict: "replace", MaxOps: 50000, Concurrency: 64, SampleSize: 5000, ChunkKeys: 20000}, in.Options)

	require.NoError(t, s.api.HandleEvent(ctx, ev), "a redelivered event")
	assert.Equal(t, 1, fake.starts(), "starts nothing more")

	t.Run("drops a request that can never work", func(t *testing.T) {
		bad := ev
		bad.ID = "7b8e9fab-0000-4cf7-a9f1-bf3703467718"
		bad.Detail = json.RawMessage(`{"source":{"url":"redis://default:hunter22@10.0.0.1"},"target":{"url":"redis://10.0.0.2"},"mode":"command"}`)
		require.NoError(t, s.api.HandleEvent(ctx, bad), "retrying would not help")
		_, err := s.store.Get(ctx, bad.ID)
		assert.ErrorIs(t, err, job.ErrNotFound)
	})
	t.Run("asks for a retry when no slot is free", func(t *testing.T) {
		s := newServer(t, api.Config{Executions: newFake(), MaxExecutions: 1})
		require.NoError(t, s.api.HandleEvent(ctx, ev))
		second := ev
		second.ID = "8c9f0abc-0000-4cf7-a9f1-bf3703467718"
		assert.ErrorIs(t, s.api.HandleEvent(ctx, second), job.ErrLimit)
	})
}

func TestExecutionStatusChangeEndsTheJob(t *testing.T) {
	ctx := context.Background()
	fixture := event(t, "execution-status-change.json")
	require.Equal(t, api.DetailTypeExecutionStatusChange, fixture.DetailType)
	var detail api.ExecutionStatusChange
	require.NoError(t, json.Unmarshal(fixture.Detail, &detail))
	require.Equal(t, fixtureJob, detail.Name)

	withDetail := func(mut func(d map[string]any)) events.CloudWatchEvent {
		var d map[string]any
		require.NoError(t, json.Unmarshal(fixture.Detail, &d))
		mut(d)
		ev := fixture
		ev.Detail, _ = json.Marshal(d)
		return ev
	}
	const retention = 7 * 24 * time.Hour
	for _, tc := range []struct {
		name      string
		from      job.Status
		status    string
		errorName any
		cause     any
		want      job.Status
		wantError string
	}{
		{"a timed-out execution fails its job", job.StatusRunning, "TIMED_OUT", nil, nil, job.StatusFailed, "the execution timed out"},
		{"an aborted execution stops its job", job.StatusAnalyzing, "ABORTED", nil, "Stopped from the console", job.StatusCancelled, "the execution was stopped (Stopped from the console)"},
		{"a failed execution fails its job with the cause", job.StatusValidating, "FAILED", "States.Runtime", "An error occurred while executing the state 'RecordFailure'", job.StatusFailed,
			"the execution failed (States.Runtime: An error occurred while executing the state 'RecordFailure')"},
		{"a job that has ended is left as it is", job.StatusBlocked, "FAILED", "BlockedError", "blocked", job.StatusBlocked, "blocked by the analysis"},
		{"a succeeded execution only frees the slot and sets expireAt", job.StatusSucceeded, "SUCCEEDED", nil, nil, job.StatusSucceeded, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := job.NewMemory()
			s := newServer(t, api.Config{Executions: newFake(), Store: store, StateMachineARN: stateMachine, Retention: retention, MaxExecutions: 1})
			require.NoError(t, store.Create(ctx, job.Job{ID: fixtureJob, Kind: job.KindMigration, Mode: job.ModeCommand,
				Source: "redis://a:1", Target: "redis://b:1", ExecutionARN: detail.ExecutionARN}))
			require.NoError(t, store.Acquire(ctx, fixtureJob, job.KindMigration, 1))
			path := map[job.Status][]job.Status{
				job.StatusRunning:    {job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning},
				job.StatusAnalyzing:  {job.StatusAnalyzing},
				job.StatusValidating: {job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning, job.StatusValidating},
				job.StatusBlocked:    {job.StatusAnalyzing, job.StatusBlocked},
				job.StatusSucceeded:  {job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning, job.StatusSucceeded},
			}[tc.from]
			for _, st := range path {
				_, err := store.Transition(ctx, fixtureJob, st, func(j *job.Job) {
					if st == job.StatusBlocked {
						j.Error = "blocked by the analysis (force not set)"
					}
				})
				require.NoError(t, err)
			}

			ev := withDetail(func(d map[string]any) { d["status"], d["error"], d["cause"] = tc.status, tc.errorName, tc.cause })
			require.NoError(t, s.api.HandleEvent(ctx, ev))

			j, err := store.Get(ctx, fixtureJob)
			require.NoError(t, err)
			assert.Equal(t, tc.want, j.Status)
			if tc.wantError != "" {
				assert.Contains(t, j.Error, tc.wantError)
			}
			assert.Equal(t, j.FinishedAt.Add(retention).Truncate(time.Second), j.ExpireAt, "expires after the stack's retention")
			assert.NoError(t, store.Acquire(ctx, job.NewID(), job.KindMigration, 1), "the job's slot is free")
		})
	}
	t.Run("ignores other state machines, running executions and unknown jobs", func(t *testing.T) {
		store := job.NewMemory()
		s := newServer(t, api.Config{Executions: newFake(), Store: store, StateMachineARN: stateMachine})
		require.NoError(t, store.Create(ctx, job.Job{ID: fixtureJob, Kind: job.KindMigration, Mode: job.ModeCommand, Source: "redis://a:1", Target: "redis://b:1"}))
		for _, ev := range []events.CloudWatchEvent{
			withDetail(func(d map[string]any) { d["stateMachineArn"] = stateMachine + "-other" }),
			withDetail(func(d map[string]any) { d["status"] = "RUNNING" }),
			withDetail(func(d map[string]any) { d["name"] = "01jd8z3k4m5n6p7q8r9s0t1zzz" }),
		} {
			require.NoError(t, s.api.HandleEvent(ctx, ev))
		}
		j, err := store.Get(ctx, fixtureJob)
		require.NoError(t, err)
		assert.Equal(t, job.StatusPending, j.Status)
		require.NoError(t, s.api.HandleEvent(ctx, events.CloudWatchEvent{DetailType: "Something Else", Detail: json.RawMessage(`{}`)}))
	})
}
