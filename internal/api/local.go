package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
	"github.com/kvmigrate/kvmigrate/internal/phase"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// localPrefix begins the execution ARNs of LocalExecutions.
const localPrefix = "local:execution:"

// LocalExecutions runs jobs in this process with the local workflow
// (workflow.Local: Run for a migration, Analyze for an analysis), one
// goroutine per job: `kvmigrate serve`. Stop cancels a job's run. Only the
// command mode runs locally.
type LocalExecutions struct {
	store   job.Store
	secrets lambdafn.SecretResolver
	log     *slog.Logger

	ctx    context.Context // parent of every run; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	running map[string]context.CancelCauseFunc // by execution ARN
	closed  bool
}

var _ Executions = (*LocalExecutions)(nil)

// NewLocalExecutions returns LocalExecutions that keep jobs in store and
// resolve endpoint secrets with secrets. Close it to stop every run.
func NewLocalExecutions(store job.Store, secrets lambdafn.SecretResolver, log *slog.Logger) *LocalExecutions {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &LocalExecutions{store: store, secrets: secrets, log: log, ctx: ctx, cancel: cancel, running: map[string]context.CancelCauseFunc{}}
}

// ErrClosed: the executions are closed (the server is shutting down).
var ErrClosed = errors.New("local executions closed")

// Start resolves the endpoints' secrets, then runs the job in a goroutine;
// errors are the refusals that happen before (a secret, a mode).
func (l *LocalExecutions) Start(_ context.Context, jobID string, in phase.Execution) (string, error) {
	if in.Options.Mode != phase.ModeCommand && !in.Options.AnalysisOnly {
		return "", &phase.FieldError{Field: "mode", Err: &phase.UnsupportedError{Err: fmt.Errorf(
			"mode %s is not run by kvmigrate serve: use mode %s", in.Options.Mode, phase.ModeCommand)}}
	}
	src, err := l.secrets.Resolve(l.ctx, in.Source)
	if err != nil {
		return "", &phase.FieldError{Field: "source.secretArn", Err: fmt.Errorf("source: %w", err)}
	}
	dst, err := l.secrets.Resolve(l.ctx, in.Target)
	if err != nil {
		return "", &phase.FieldError{Field: "target.secretArn", Err: fmt.Errorf("target: %w", err)}
	}
	arn := localPrefix + jobID
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return "", &phase.TransientError{Err: ErrClosed}
	}
	if _, ok := l.running[arn]; ok {
		return "", fmt.Errorf("execution %s is running: %w", arn, job.ErrConflict)
	}
	ctx, cancel := context.WithCancelCause(l.ctx)
	l.running[arn] = cancel
	l.wg.Go(func() {
		defer func() {
			l.mu.Lock()
			delete(l.running, arn)
			l.mu.Unlock()
			cancel(nil)
		}()
		l.run(ctx, jobID, in, src, dst)
	})
	return arn, nil
}

func (l *LocalExecutions) run(ctx context.Context, id string, in phase.Execution, src, dst endpoint.Endpoint) {
	w := &workflow.Local{Store: l.store, Log: l.log}
	o := in.Options
	aopts := analysis.Options{Sample: o.SampleSize, MaxOps: o.MaxOps, Match: o.Match, Type: o.Type}
	kind := job.KindMigration
	var err error
	if o.AnalysisOnly {
		kind = job.KindAnalysis
		_, err = w.Analyze(ctx, workflow.AnalyzeRequest{JobID: id, Source: src, Target: dst, Options: aopts})
	} else {
		_, err = w.Run(ctx, workflow.RunRequest{
			Request:  workflow.Request{JobID: id, Source: src, Target: dst, Options: o.JobOptions(), ChunkKeys: o.ChunkKeys},
			Analysis: aopts,
		})
	}
	// The workflow frees the slot it takes; this frees it when the run
	// ended before (an adopted job that was not pending, say).
	if rerr := l.store.Release(context.WithoutCancel(ctx), id, kind); rerr != nil {
		l.log.Error("release a concurrency slot", "jobId", id, "error", rerr.Error())
	}
	j, gerr := l.store.Get(context.WithoutCancel(ctx), id)
	if gerr == nil && !j.Finished() && j.Status != job.StatusPaused {
		// The run ended before the workflow took the job over.
		if _, terr := l.store.Transition(context.WithoutCancel(ctx), id, job.StatusFailed, func(j *job.Job) {
			j.Error = endpoint.Redact(fmt.Sprint(err))
		}); terr != nil {
			l.log.Error("record a run that ended early", "jobId", id, "error", terr.Error())
		}
	}
	if err != nil {
		l.log.Info("local job ended", "jobId", id, "status", j.Status, "error", endpoint.Redact(err.Error()))
		return
	}
	l.log.Info("local job ended", "jobId", id, "status", j.Status)
}

// Stop cancels the run of executionARN (a run that has ended is nil).
// A migration cancelled while copying is left paused by the workflow
// unless it was marked otherwise (the API marks it stopped first).
func (l *LocalExecutions) Stop(_ context.Context, executionARN, cause string) error {
	if !strings.HasPrefix(executionARN, localPrefix) {
		return fmt.Errorf("execution %s is not a local one: %w", executionARN, job.ErrNotFound)
	}
	l.mu.Lock()
	cancel, ok := l.running[executionARN]
	l.mu.Unlock()
	if ok {
		cancel(errors.New(cause))
	}
	return nil
}

// Running reports how many runs have not ended.
func (l *LocalExecutions) Running() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.running)
}

// Close cancels every run and waits until they have ended (a migration
// that was copying is left paused: `kvmigrate resume` continues it).
func (l *LocalExecutions) Close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	l.wg.Wait()
}
