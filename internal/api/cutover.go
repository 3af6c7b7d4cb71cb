package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// Tasks stops the task that runs a redis-shake job (its ARN is the job's
// TaskARN): on a cutover of a redis_shake_sync job, and on a stop of
// either redis-shake mode (stopping the execution does not stop a
// waitForTaskToken task). Production: api/ecstasks (ecs:StopTask, which
// sends the container a SIGTERM); nil leaves the task to find the request
// in the job record, which it polls anyway.
type Tasks interface {
	// Stop stops the task; reason is kept with it. A task that is already
	// stopping or stopped is stopped: nil. An error wrapping ErrTaskGone
	// says the task no longer exists (it ended a while ago, or its cluster
	// did): there is nothing left to stop either.
	Stop(ctx context.Context, taskARN, reason string) error
}

// ErrTaskGone: the task to stop no longer exists.
var ErrTaskGone = errors.New("the task no longer exists")

// CutoverRequest is the optional body of POST /migrations/{id}/cutover.
type CutoverRequest struct {
	// Force cuts over during the initial sync, before the job replicates:
	// the target is then incomplete.
	Force bool `json:"force,omitempty"`
}

// cutoverMigration asks the task of a running redis_shake_sync migration
// to stop replicating: it writes the request into the job record
// (workflow.RequestCutover), where the task finds it, and stops the task
// when there is one to stop. The task then stops redis-shake and sends
// its task token's success, and the execution goes on to validate. 409
// when the job is not a running sync job, or is still in its initial sync
// without force.
func (a *API) cutoverMigration(w http.ResponseWriter, r *http.Request) error {
	var req CutoverRequest
	if err := decode(r, &req, true); err != nil {
		return err
	}
	j, err := a.job(r, job.KindMigration)
	if err != nil {
		return err
	}
	j, err = workflow.RequestCutover(r.Context(), a.cfg.Store, j.ID, req.Force)
	switch {
	case errors.Is(err, job.ErrInvalid), errors.Is(err, job.ErrConflict):
		return &httpError{status: http.StatusConflict, err: err}
	case err != nil:
		return err
	}
	a.log.InfoContext(r.Context(), "cutover requested", "jobId", j.ID, "force", req.Force, "taskArn", j.TaskARN)
	// The request is in the record: a task that this does not reach finds
	// it at its next poll.
	a.stopTask(r.Context(), j, fmt.Sprintf("kvmigrate: cutover of job %s", j.ID))
	v, err := a.migration(r.Context(), j)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, v)
	return nil
}

// stopTask stops job j's task, if it has one and there are Tasks, after
// its cutover or stop is in the record; a failure is logged, not
// returned: the task finds the record's request or status at its next
// poll, and a task that is gone has nothing left to do.
func (a *API) stopTask(ctx context.Context, j job.Job, reason string) {
	if a.cfg.Tasks == nil || j.TaskARN == "" {
		return
	}
	err := a.cfg.Tasks.Stop(ctx, j.TaskARN, reason)
	switch {
	case err == nil:
		a.log.InfoContext(ctx, "task stopped", "jobId", j.ID, "taskArn", j.TaskARN)
	case errors.Is(err, ErrTaskGone):
		a.log.InfoContext(ctx, "the task has already ended", "jobId", j.ID, "taskArn", j.TaskARN, "error", err.Error())
	default:
		a.log.WarnContext(ctx, "stop the task", "jobId", j.ID, "taskArn", j.TaskARN, "error", err.Error())
	}
}
