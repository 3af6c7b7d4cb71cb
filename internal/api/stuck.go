package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// DefaultStuckTimeout is the template's default StuckJobTimeoutSeconds.
const DefaultStuckTimeout = 2 * time.Hour

// activeStatuses are the statuses in which a job is expected to make
// progress. A paused job waits for someone to resume it: it is never stuck.
var activeStatuses = []job.Status{
	job.StatusPending, job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning, job.StatusValidating,
}

func active(s job.Status) bool {
	for _, a := range activeStatuses {
		if s == a {
			return true
		}
	}
	return false
}

// ReapStuck fails every job that is stuck at now: not finished, in an
// active status (pending, analyzing, analyzed, running, validating; not
// paused), with no progress for timeout or more. Progress is a change of
// the job record (UpdatedAt) or, while copying, of a shard checkpoint.
// Each such job is marked failed with the error "stuck: no progress for N
// minutes" and its concurrency slot released. It returns the jobs it
// failed, as stored: a caller that runs their executions stops those with
// an ExecutionARN (the API's reads do, see Config.StuckTimeout). A job that
// moved on meanwhile is left alone. A timeout of 0 or less reaps nothing.
func ReapStuck(ctx context.Context, store job.Store, now time.Time, timeout time.Duration) ([]job.Job, error) {
	if timeout <= 0 {
		return nil, nil
	}
	var reaped []job.Job
	for _, st := range activeStatuses {
		opts := job.ListOptions{Status: st, Limit: job.MaxListLimit}
		for {
			jobs, next, err := store.List(ctx, opts)
			if err != nil {
				return reaped, fmt.Errorf("reap stuck jobs: %w", err)
			}
			for _, j := range jobs {
				j, ok, err := reap(ctx, store, j, now, timeout)
				if err != nil {
					return reaped, fmt.Errorf("reap stuck jobs: %w", err)
				}
				if ok {
					reaped = append(reaped, j)
				}
			}
			if next == "" {
				break
			}
			opts.Next = next
		}
	}
	return reaped, nil
}

// reap fails j and releases its slot if it is stuck; it returns the job as
// stored and whether it did.
func reap(ctx context.Context, store job.Store, j job.Job, now time.Time, timeout time.Duration) (job.Job, bool, error) {
	if timeout <= 0 || j.Finished() || !active(j.Status) || now.Sub(j.UpdatedAt) < timeout {
		return j, false, nil
	}
	last := j.UpdatedAt
	if j.Status == job.StatusRunning {
		// Chunks checkpoint their shards, not the job record.
		shards, err := store.Shards(ctx, j.ID)
		if err != nil {
			return j, false, err
		}
		for _, s := range shards {
			if s.UpdatedAt.After(last) {
				last = s.UpdatedAt
			}
		}
	}
	idle := now.Sub(last)
	if idle < timeout {
		return j, false, nil
	}
	cause := fmt.Sprintf("stuck: no progress for %d minutes", int(idle/time.Minute))
	stuck, err := store.Transition(ctx, j.ID, job.StatusFailed, func(j *job.Job) { j.Error = cause })
	if errors.Is(err, job.ErrConflict) {
		// It moved on (or ended) since it was read.
		cur, gerr := store.Get(ctx, j.ID)
		return cur, false, gerr
	}
	if err != nil {
		return j, false, err
	}
	if err := store.Release(context.WithoutCancel(ctx), stuck.ID, stuck.Kind); err != nil {
		return stuck, true, err
	}
	return stuck, true, nil
}

// checkStuck is the lazy check of the API's reads: it fails j if it is
// stuck (see ReapStuck), stops its execution and returns the job as
// stored. A failure to do so is logged, and the read goes on with j.
func (a *API) checkStuck(ctx context.Context, j job.Job) job.Job {
	got, ok, err := reap(ctx, a.cfg.Store, j, a.cfg.Now(), a.cfg.StuckTimeout)
	if err != nil {
		a.log.WarnContext(ctx, "check a stuck job", "jobId", j.ID, "error", err.Error())
		if !ok {
			return j
		}
	}
	if !ok {
		return got
	}
	a.log.WarnContext(ctx, "stuck job failed", "jobId", got.ID, "kind", got.Kind, "error", got.Error, "executionArn", got.ExecutionARN)
	if got.ExecutionARN != "" {
		if err := a.cfg.Executions.Stop(ctx, got.ExecutionARN, got.Error); err != nil {
			a.log.WarnContext(ctx, "stop the execution of a stuck job", "jobId", got.ID, "executionArn", got.ExecutionARN, "error", err.Error())
		}
	}
	// A redis-shake task outlives its execution (waitForTaskToken).
	if workflow.IsShake(got.Mode) {
		a.stopTask(ctx, got, fmt.Sprintf("kvmigrate: job %s %s", got.ID, got.Error))
	}
	return got
}
