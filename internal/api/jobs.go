package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/phase"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

func (a *API) createMigration(w http.ResponseWriter, r *http.Request) error {
	var req MigrationRequest
	if err := decode(r, &req, false); err != nil {
		return err
	}
	in, err := req.input(job.NewID(), a.cfg.SecretPrefix)
	if err != nil {
		return err
	}
	j, err := a.start(r.Context(), in)
	if err != nil {
		return err
	}
	v, err := a.migration(r.Context(), j)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/migrations/"+j.ID)
	writeJSON(w, http.StatusAccepted, v)
	return nil
}

func (a *API) createAnalysis(w http.ResponseWriter, r *http.Request) error {
	var req AnalysisRequest
	if err := decode(r, &req, false); err != nil {
		return err
	}
	in, err := req.input(job.NewID(), a.cfg.SecretPrefix)
	if err != nil {
		return err
	}
	j, err := a.start(r.Context(), in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/analyses/"+j.ID)
	writeJSON(w, http.StatusAccepted, a.analysis(r.Context(), j))
	return nil
}

// start creates the job of in and starts its execution: it takes a slot
// of the job's kind (job.ErrLimit when none is free), creates the record
// (pending), starts the execution and records its ARN. When the execution
// cannot start, the job is marked failed and the slot freed.
func (a *API) start(ctx context.Context, in phase.AnalyzeInput) (job.Job, error) {
	j, err := in.Job()
	if err != nil {
		return j, err
	}
	limit := a.cfg.MaxExecutions
	if j.Kind == job.KindAnalysis {
		limit = a.cfg.MaxAnalyses
	}
	if err := a.cfg.Store.Acquire(ctx, j.ID, j.Kind, limit); err != nil {
		if errors.Is(err, job.ErrLimit) {
			return j, &httpError{status: http.StatusConflict, err: fmt.Errorf(
				"%d %s jobs are running, the most allowed at once: retry when one has ended (%w)", limit, j.Kind, err)}
		}
		return j, err
	}
	if err := a.cfg.Store.Create(ctx, j); err != nil {
		// A conflict is a job with this id already (a redelivered event):
		// the slot is its own unless it has finished.
		if existing, gerr := a.cfg.Store.Get(ctx, j.ID); !errors.Is(err, job.ErrConflict) || gerr == nil && existing.Finished() {
			a.release(ctx, j.ID, j.Kind)
		}
		return j, err
	}
	arn, err := a.cfg.Executions.Start(ctx, j.ID, phase.Execution{AnalyzeInput: in})
	if err != nil {
		cause := fmt.Errorf("the execution could not start: %w", err)
		if _, terr := a.cfg.Store.Transition(context.WithoutCancel(ctx), j.ID, job.StatusFailed, func(j *job.Job) {
			j.Stage, j.Error = "starting", endpoint.Redact(cause.Error())
		}); terr != nil {
			a.log.ErrorContext(ctx, "record a job that could not start", "jobId", j.ID, "error", terr.Error())
		}
		a.release(ctx, j.ID, j.Kind)
		return j, cause
	}
	if j, err = a.cfg.Store.Update(ctx, j.ID, func(j *job.Job) { j.ExecutionARN = arn }); err != nil {
		return j, err
	}
	a.log.InfoContext(ctx, "job started", "jobId", j.ID, "kind", j.Kind, "mode", j.Mode, "executionArn", arn)
	return j, nil
}

func (a *API) release(ctx context.Context, id string, kind job.Kind) {
	if err := a.cfg.Store.Release(context.WithoutCancel(ctx), id, kind); err != nil {
		a.log.ErrorContext(ctx, "release a concurrency slot", "jobId", id, "kind", kind, "error", err.Error())
	}
}

// job returns the job named by the path's {id}, of kind: a 404 when there
// is none (or it is of the other kind).
func (a *API) job(r *http.Request, kind job.Kind) (job.Job, error) {
	id := r.PathValue("id")
	if !job.ValidID(id) {
		return job.Job{}, notFound("no %s %q: a job id is 1 to 80 characters of [A-Za-z0-9_-]", kind, id)
	}
	j, err := a.cfg.Store.Get(r.Context(), id)
	if errors.Is(err, job.ErrNotFound) || err == nil && j.Kind != kind {
		return j, notFound("no %s job %s", kind, id)
	}
	return j, err
}

func (a *API) getMigration(w http.ResponseWriter, r *http.Request) error {
	j, err := a.job(r, job.KindMigration)
	if err != nil {
		return err
	}
	j = a.checkStuck(r.Context(), j)
	v, err := a.migration(r.Context(), j)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (a *API) getAnalysis(w http.ResponseWriter, r *http.Request) error {
	j, err := a.job(r, job.KindAnalysis)
	if err != nil {
		return err
	}
	j = a.checkStuck(r.Context(), j)
	writeJSON(w, http.StatusOK, a.analysis(r.Context(), j))
	return nil
}

// MigrationList is the answer of GET /migrations.
type MigrationList struct {
	Migrations []JobView `json:"migrations"`
	// Next is the token of the next page (?next=), absent after the last.
	Next string `json:"next,omitempty"`
}

func (a *API) listMigrations(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	opts := job.ListOptions{Kind: job.KindMigration, Next: q.Get("next"), Status: job.Status(q.Get("status"))}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > job.MaxListLimit {
			return badRequest("limit", "limit %q: want a number from 1 to %d", s, job.MaxListLimit)
		}
		opts.Limit = n
	}
	if opts.Status != "" && !opts.Status.Valid() {
		return badRequest("status", "status %q: want one of %s", opts.Status, statusList())
	}
	jobs, next, err := a.cfg.Store.List(r.Context(), opts)
	if errors.Is(err, job.ErrInvalid) && opts.Next != "" {
		return badRequest("next", "next: not a token this API returned")
	}
	if err != nil {
		return err
	}
	out := MigrationList{Migrations: make([]JobView, 0, len(jobs)), Next: next}
	for _, j := range jobs {
		j = a.checkStuck(r.Context(), j)
		out.Migrations = append(out.Migrations, view(j))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func statusList() string {
	var s []string
	for _, st := range job.Statuses() {
		s = append(s, string(st))
	}
	return strings.Join(s, ", ")
}

// StopRequest is the optional body of POST /migrations/{id}/stop.
type StopRequest struct {
	Reason string `json:"reason,omitempty"`
}

const maxReason = 500

// stopMigration ends a migration stopped: it records the stop (the job's
// steps and its task find it there), stops the execution and, for a
// redis-shake job, its task, and releases the job's slot.
func (a *API) stopMigration(w http.ResponseWriter, r *http.Request) error {
	var req StopRequest
	if err := decode(r, &req, true); err != nil {
		return err
	}
	if len(req.Reason) > maxReason {
		return badRequest("reason", "reason: at most %d bytes", maxReason)
	}
	j, err := a.job(r, job.KindMigration)
	if err != nil {
		return err
	}
	if j.Finished() {
		return &httpError{status: http.StatusConflict, err: fmt.Errorf("migration %s has already ended: it is %s", j.ID, j.Status)}
	}
	cause := "stopped by request"
	if req.Reason != "" {
		cause += ": " + req.Reason
	}
	j, err = a.cfg.Store.Transition(r.Context(), j.ID, job.StatusCancelled, func(j *job.Job) { j.Stage, j.Error = "stopped", cause })
	if errors.Is(err, job.ErrConflict) {
		return &httpError{status: http.StatusConflict, err: fmt.Errorf("migration %s: %w", r.PathValue("id"), err)}
	}
	if err != nil {
		return err
	}
	if j.ExecutionARN != "" {
		// The job is stopped whatever happens here: a step that still runs
		// finds it so and ends the execution.
		if err := a.cfg.Executions.Stop(r.Context(), j.ExecutionARN, cause); err != nil {
			a.log.WarnContext(r.Context(), "stop the execution", "jobId", j.ID, "executionArn", j.ExecutionARN, "error", err.Error())
		}
	}
	if workflow.IsShake(j.Mode) {
		// Stopping the execution does not stop a waitForTaskToken task
		// (redis_shake_sync), and a .sync one only in time: stop it now.
		a.stopTask(r.Context(), j, fmt.Sprintf("kvmigrate: job %s %s", j.ID, cause))
	}
	a.release(r.Context(), j.ID, j.Kind)
	a.log.InfoContext(r.Context(), "job stopped", "jobId", j.ID)
	v, err := a.migration(r.Context(), j)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (a *API) validateMigration(w http.ResponseWriter, r *http.Request) error {
	if a.cfg.Revalidate == nil {
		return &httpError{status: http.StatusNotImplemented, err: errors.New("validating on request is not available here")}
	}
	if err := decode(r, &struct{}{}, true); err != nil {
		return err
	}
	j, err := a.job(r, job.KindMigration)
	if err != nil {
		return err
	}
	if _, err := a.cfg.Revalidate(r.Context(), j.ID); err != nil {
		return err
	}
	if j, err = a.cfg.Store.Get(r.Context(), j.ID); err != nil {
		return err
	}
	v, err := a.migration(r.Context(), j)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}
