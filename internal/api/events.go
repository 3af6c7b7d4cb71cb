package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/phase"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// DetailTypeExecutionStatusChange is the detail type of the events Step
// Functions sends when an execution changes status.
const DetailTypeExecutionStatusChange = "Step Functions Execution Status Change"

// Execution statuses in those events.
const (
	ExecutionRunning   = "RUNNING"
	ExecutionSucceeded = "SUCCEEDED"
	ExecutionFailed    = "FAILED"
	ExecutionTimedOut  = "TIMED_OUT"
	ExecutionAborted   = "ABORTED"
)

// ExecutionStatusChange is the detail of a Step Functions execution status
// change event (the fields kvmigrate reads).
type ExecutionStatusChange struct {
	ExecutionARN    string  `json:"executionArn"`
	StateMachineARN string  `json:"stateMachineArn"`
	Name            string  `json:"name"`
	Status          string  `json:"status"`
	StartDate       int64   `json:"startDate"`
	StopDate        int64   `json:"stopDate"`
	Error           *string `json:"error"`
	Cause           *string `json:"cause"`
}

// HandleEvent handles the EventBridge events the api function receives:
//
//   - "MigrationRequested" (phase.EventMigrationRequested), whose detail is
//     a MigrationRequest, starts a migration as POST /migrations does. Its
//     job id is the event's id, so that a redelivered event starts nothing
//     more.
//   - "Step Functions Execution Status Change" ends a job whose execution
//     ended without recording it: FAILED or TIMED_OUT → failed, ABORTED →
//     stopped, with the cause (a job already finished is left as it is).
//     For every ended execution it frees the job's concurrency slot and
//     sets expireAt (the state machine's own writes do neither).
//
// It returns an error only when trying again may help (the store or the
// state machine did not answer, no slot was free); a request that can
// never work is logged and dropped.
func (a *API) HandleEvent(ctx context.Context, ev events.CloudWatchEvent) error {
	switch ev.DetailType {
	case phase.EventMigrationRequested:
		return a.migrationRequested(ctx, ev)
	case DetailTypeExecutionStatusChange:
		return a.executionChanged(ctx, ev)
	}
	a.log.WarnContext(ctx, "event ignored: unknown detail type", "detailType", ev.DetailType, "source", ev.Source, "eventId", ev.ID)
	return nil
}

func (a *API) migrationRequested(ctx context.Context, ev events.CloudWatchEvent) error {
	id := ev.ID
	if !phase.ValidJobID(id) {
		id = job.NewID()
	}
	log := a.log.With("eventId", ev.ID, "jobId", id, "source", ev.Source)
	if _, err := a.cfg.Store.Get(ctx, id); err == nil {
		log.InfoContext(ctx, "MigrationRequested: already handled (the job exists)")
		return nil
	} else if !errors.Is(err, job.ErrNotFound) {
		return err
	}
	var req MigrationRequest
	dec := json.NewDecoder(bytes.NewReader(ev.Detail))
	dec.DisallowUnknownFields()
	err := dec.Decode(&req)
	if err != nil {
		err = decodeError(err)
	} else {
		var in phase.AnalyzeInput
		if in, err = req.input(id, a.cfg.SecretPrefix); err == nil {
			_, err = a.start(ctx, in)
		}
	}
	if err == nil {
		log.InfoContext(ctx, "MigrationRequested: migration started")
		return nil
	}
	status, body := answer(err)
	if errors.Is(err, job.ErrLimit) || status >= 500 {
		log.ErrorContext(ctx, "MigrationRequested: not started; the event will be retried", "status", status, "error", body.Error)
		return err
	}
	log.ErrorContext(ctx, "MigrationRequested: refused", "status", status, "field", body.Field, "error", body.Error)
	return nil
}

func (a *API) executionChanged(ctx context.Context, ev events.CloudWatchEvent) error {
	var d ExecutionStatusChange
	if err := json.Unmarshal(ev.Detail, &d); err != nil {
		a.log.ErrorContext(ctx, "status change event: bad detail", "eventId", ev.ID, "error", err.Error())
		return nil
	}
	log := a.log.With("jobId", d.Name, "executionArn", d.ExecutionARN, "status", d.Status)
	if a.cfg.StateMachineARN != "" && d.StateMachineARN != a.cfg.StateMachineARN {
		log.WarnContext(ctx, "status change event of another state machine ignored", "stateMachineArn", d.StateMachineARN)
		return nil
	}
	switch d.Status {
	case ExecutionSucceeded, ExecutionFailed, ExecutionTimedOut, ExecutionAborted:
	default:
		return nil // RUNNING, PENDING_REDRIVE...
	}
	j, err := a.cfg.Store.Get(ctx, d.Name)
	if errors.Is(err, job.ErrNotFound) {
		log.WarnContext(ctx, "status change event for no job")
		return nil
	}
	if err != nil {
		return err
	}
	if j.ExecutionARN != "" && j.ExecutionARN != d.ExecutionARN {
		log.WarnContext(ctx, "status change event of an execution the job does not record", "jobExecutionArn", j.ExecutionARN)
	}
	if !j.Finished() && d.Status != ExecutionSucceeded {
		to, cause := endOf(d)
		if j, err = a.cfg.Store.Transition(ctx, j.ID, to, func(j *job.Job) { j.Error = endpoint.Redact(cause) }); errors.Is(err, job.ErrConflict) {
			j, err = a.cfg.Store.Get(ctx, d.Name) // ended meanwhile
		}
		if err != nil {
			return err
		}
		log.InfoContext(ctx, "job ended by its execution's status", "jobStatus", j.Status)
	}
	if d.Status != ExecutionSucceeded && workflow.IsShake(j.Mode) {
		// An execution that timed out, failed or was aborted while
		// waiting for a redis-shake task does not stop the task itself.
		a.stopTask(ctx, j, fmt.Sprintf("kvmigrate: the execution of job %s ended %s", j.ID, d.Status))
	}
	if !j.Finished() {
		// SUCCEEDED with the job not finished: the state machine did not
		// record it. Say so; the slot is freed all the same.
		log.ErrorContext(ctx, "the execution ended and the job did not", "jobStatus", j.Status)
	}
	if err := a.cfg.Store.Release(ctx, j.ID, j.Kind); err != nil {
		return err
	}
	if j.Finished() {
		finished := j.FinishedAt
		if finished.IsZero() {
			finished = a.stopTime(d)
		}
		if want := finished.Add(a.cfg.Retention).Truncate(time.Second); !j.ExpireAt.Equal(want) {
			if _, err := a.cfg.Store.Update(ctx, j.ID, func(j *job.Job) { j.ExpireAt = want }); err != nil {
				return err
			}
		}
	}
	return nil
}

// endOf is the status and error of a job whose execution ended so.
func endOf(d ExecutionStatusChange) (job.Status, string) {
	var detail string
	if d.Error != nil && *d.Error != "" {
		detail = *d.Error
	}
	if d.Cause != nil && *d.Cause != "" {
		if detail != "" {
			detail += ": "
		}
		detail += *d.Cause
	}
	if detail != "" {
		detail = " (" + detail + ")"
	}
	switch d.Status {
	case ExecutionAborted:
		return job.StatusCancelled, "the execution was stopped" + detail
	case ExecutionTimedOut:
		return job.StatusFailed, "the execution timed out" + detail
	}
	return job.StatusFailed, fmt.Sprintf("the execution failed%s", detail)
}

func (a *API) stopTime(d ExecutionStatusChange) time.Time {
	if d.StopDate > 0 {
		return time.UnixMilli(d.StopDate).UTC()
	}
	return a.cfg.Now().UTC()
}
