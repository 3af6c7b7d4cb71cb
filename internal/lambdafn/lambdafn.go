// Package lambdafn holds the handlers of the state machine's Lambda
// functions (analyze, execute-chunk, validate) as importable constructors:
// the mains in functions/ hand them to lambda.Start, and a local Step
// Functions harness calls them in-process. The package imports no AWS code
// (the Secrets Manager resolver is lambdafn/awssecrets).
//
// Every error a handler returns has gone through phase.Classify exactly
// once, so that its Go type name is the Step Functions error name; a
// handler never marks a job failed itself (the state machine's failure
// path does, after its retries).
//
// What each handler does with the job record (see also internal/phase):
//
//	Analyze   creates the job if no API call did (pending), moves it to
//	          analyzing, stores the analysis report, then moves it to
//	          analyzed, except a migration that the gate will refuse (blocking
//	          and not force): that one stays analyzing, stage "gate", for the
//	          state machine's RecordBlocked. An analysis job's slot is
//	          released when it reaches analyzed.
//	Plan      plans the shards once (cursor "0" each, stored as the job's
//	          shard checkpoints) and moves the job from analyzed (or paused)
//	          to running; returns the shards not done, from their cursors.
//	Chunk     copies one chunk of a running job's shard from its checkpoint
//	          (workflow.CopyChunk) until the deadline minus the margin;
//	          checkpoints the cursor, the shard's and the job's counters.
//	Validate  moves the job from running (or paused) to validating, stores
//	          the validation report. The state machine records the end.
//	Revalidate validates a finished migration again on request (the API's
//	          POST /migrations/{id}/validations): stores the report, leaves
//	          the status alone.
package lambdafn

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/phase"
	"github.com/kvmigrate/kvmigrate/internal/transfer"
	"github.com/kvmigrate/kvmigrate/internal/validation"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// Deps are what the handlers need. Connections are opened per invocation
// and closed before it returns.
type Deps struct {
	Store   job.Store
	Secrets SecretResolver
	// Log receives one line per invocation (ids, counts, durations; never
	// values or credentials). Nil: none.
	Log *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// SafetyMargin: a chunk stops scanning at its context's deadline minus
	// this, to finish the keys in flight and checkpoint (DefaultSafetyMargin
	// when zero). When less than the margin is left, it takes half of what
	// is left, so that every chunk makes progress.
	SafetyMargin time.Duration
}

// DefaultSafetyMargin is used when Deps.SafetyMargin is zero.
const DefaultSafetyMargin = 30 * time.Second

// analysisBudget bounds the analysis's sampling (analysis.DefaultTimeBudget
// or a share of the invocation's time, whichever is less).
const analysisBudget = analysis.DefaultTimeBudget

func (d Deps) withDefaults() Deps {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.SafetyMargin <= 0 {
		d.SafetyMargin = DefaultSafetyMargin
	}
	return d
}

func (d Deps) check() error {
	var missing []string
	if d.Store == nil {
		missing = append(missing, "Store")
	}
	if d.Secrets == nil {
		missing = append(missing, "Secrets")
	}
	if len(missing) > 0 {
		return fmt.Errorf("lambdafn: Deps without %v", missing)
	}
	return nil
}

// fail classifies err once for Step Functions and logs it; nil stays nil.
func (d Deps) fail(ctx context.Context, step, jobID string, started time.Time, err error) error {
	if err == nil {
		return nil
	}
	err = phase.Classify(err)
	d.Log.ErrorContext(ctx, step+" failed", "jobId", jobID, "errorType", typeName(err),
		"error", endpoint.Redact(err.Error()), "ms", time.Since(started).Milliseconds())
	return err
}

// handle makes one Lambda step of body: it checks the deps and the input
// first, and every error leaves through phase.Classify exactly once
// (logged, redacted), with a zero output: nothing partial goes out with an
// error.
func handle[In, Out any, PIn interface {
	*In
	Check() error
}](d Deps, step string, jobID func(In) string, body func(context.Context, In) (Out, error)) func(context.Context, In) (Out, error) {
	return func(ctx context.Context, in In) (Out, error) {
		started := time.Now()
		out, err := func() (Out, error) {
			if err := d.check(); err != nil {
				var zero Out
				return zero, err
			}
			if err := PIn(&in).Check(); err != nil {
				var zero Out
				return zero, err
			}
			return body(ctx, in)
		}()
		if err = d.fail(ctx, step, jobID(in), started, err); err != nil {
			var zero Out
			return zero, err
		}
		return out, nil
	}
}

// typeName is the error name Step Functions sees (see phase.ErrorNames).
func typeName(err error) string {
	t := reflect.TypeOf(err)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}

// Analyze returns the analyze function's handler.
func Analyze(d Deps) func(context.Context, phase.AnalyzeInput) (phase.AnalyzeOutput, error) {
	d = d.withDefaults()
	return handle(d, "analyze", func(in phase.AnalyzeInput) string { return in.JobID }, func(ctx context.Context, in phase.AnalyzeInput) (out phase.AnalyzeOutput, err error) {
		started := time.Now()
		j, err := d.analyzing(ctx, in)
		if err != nil {
			return out, err
		}
		if j.Status == job.StatusAnalyzed { // a retry of a step that got this far
			rep, err := workflow.LoadReport(ctx, d.Store, j.ID)
			if err != nil {
				return out, err
			}
			return summary(j.ID, rep), nil
		}

		src, dst, err := d.dial(ctx, in.Source, in.Target)
		if err != nil {
			return out, err
		}
		defer src.Close()
		defer dst.Close()
		rep, err := analysis.Analyze(ctx, src, dst, analysis.Options{
			Sample: in.Options.SampleSize, MaxOps: in.Options.MaxOps, JobID: j.ID, TimeBudget: d.analysisBudget(ctx),
			Match: j.Options.Match, Type: j.Options.Type, // the copy's filters, as the job record keeps them
		})
		if err != nil {
			return out, err
		}
		body, err := json.Marshal(rep)
		if err != nil {
			return out, fmt.Errorf("encode the analysis report: %w", err)
		}
		if err := d.Store.PutReport(ctx, j.ID, job.ReportAnalysis, body); err != nil {
			return out, fmt.Errorf("store the analysis report: %w", err)
		}
		switch {
		case j.Kind == job.KindAnalysis:
			if _, err := d.Store.Transition(ctx, j.ID, job.StatusAnalyzed, func(j *job.Job) { j.Stage = "analyzed" }); err != nil {
				return out, err
			}
			if err := d.Store.Release(ctx, j.ID, job.KindAnalysis); err != nil {
				d.Log.WarnContext(ctx, "release the analysis slot", "jobId", j.ID, "error", err.Error())
			}
		case rep.Blocking && !j.Options.Force:
			// The state machine's gate records it blocked (RecordBlocked
			// moves analyzing → blocked).
			if _, err := d.Store.Update(ctx, j.ID, func(j *job.Job) { j.Stage = "gate" }); err != nil {
				return out, err
			}
		default:
			if _, err := d.Store.Transition(ctx, j.ID, job.StatusAnalyzed, func(j *job.Job) { j.Stage = "analyzed" }); err != nil {
				return out, err
			}
		}
		out = summary(j.ID, rep)
		d.Log.InfoContext(ctx, "analyzed", "jobId", j.ID, "kind", j.Kind, "blocking", out.Blocking,
			"findings", len(rep.Findings), "shards", len(out.Shards), "estimatedKeys", out.EstimatedKeys,
			"ms", time.Since(started).Milliseconds())
		return out, nil
	})
}

// analyzing returns the job of in in status analyzing (or analyzed, for a
// retry after the step had finished), creating it when no API call did.
func (d Deps) analyzing(ctx context.Context, in phase.AnalyzeInput) (job.Job, error) {
	j, err := d.Store.Get(ctx, in.JobID)
	if errors.Is(err, job.ErrNotFound) {
		if j, err = in.Job(); err != nil {
			return j, err
		}
		if err = d.Store.Create(ctx, j); errors.Is(err, job.ErrConflict) {
			j, err = d.Store.Get(ctx, in.JobID) // created meanwhile
		} else if err == nil {
			j, err = d.Store.Get(ctx, in.JobID)
		}
	}
	if err != nil {
		return j, err
	}
	if want := in.Options.AnalysisOnly; want != (j.Kind == job.KindAnalysis) {
		return j, fmt.Errorf("job %s is a %s job, and the input asks for analysisOnly=%t: %w", j.ID, j.Kind, want, job.ErrConflict)
	}
	switch j.Status {
	case job.StatusPending:
		return d.Store.Transition(ctx, j.ID, job.StatusAnalyzing, func(j *job.Job) { j.Stage = "analyzing" })
	case job.StatusAnalyzing:
		return j, nil // a retry
	case job.StatusAnalyzed:
		if _, err := d.Store.Report(ctx, j.ID, job.ReportAnalysis); err == nil {
			return j, nil
		}
	}
	return j, fmt.Errorf("job %s is %s: it cannot be analyzed now: %w", j.ID, j.Status, job.ErrConflict)
}

// analysisBudget leaves the analysis half of the invocation's remaining
// time, at most analysisBudget.
func (d Deps) analysisBudget(ctx context.Context) time.Duration {
	dl, ok := ctx.Deadline()
	if !ok {
		return analysisBudget
	}
	return max(min(analysisBudget, dl.Sub(d.Now())/2), time.Second)
}

// summary is the state's short form of a report: blocking findings first,
// at most phase.MaxFindings, messages cut to phase.MaxFindingMessage.
func summary(id string, rep *analysis.Report) phase.AnalyzeOutput {
	out := phase.AnalyzeOutput{JobID: id, Blocking: rep.Blocking, EstimatedKeys: rep.EstimatedKeys, Findings: []phase.Finding{}}
	findings := slices.Clone(rep.Findings)
	slices.SortStableFunc(findings, func(a, b analysis.Finding) int { return cmp.Compare(rank(a.Severity), rank(b.Severity)) })
	for _, f := range findings[:min(len(findings), phase.MaxFindings)] {
		out.Findings = append(out.Findings, phase.Finding{Category: string(f.Category), Severity: string(f.Severity), Message: cut(f.Message, phase.MaxFindingMessage)})
	}
	for _, s := range rep.Shards {
		out.Shards = append(out.Shards, phase.Shard{Node: s.Node, DB: s.DB})
	}
	return out
}

func rank(s analysis.Severity) int {
	switch s {
	case analysis.Blocking:
		return 0
	case analysis.Warning:
		return 1
	}
	return 2
}

// cut shortens s to at most n bytes, on a rune boundary, ending in "…".
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	s = s[:n-len(ellipsis)]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + ellipsis
}

// Execute returns the execute-chunk function's handler: raw is a
// phase.PlanInput (action "plan"; the result is a *phase.PlanOutput) or a
// phase.ChunkInput (the result is a *phase.ChunkOutput); see
// phase.DecodeExecute. Plan and Chunk are the same handlers with typed
// payloads.
func Execute(d Deps) func(context.Context, json.RawMessage) (any, error) {
	plan, chunk := Plan(d), Chunk(d)
	d = d.withDefaults()
	return func(ctx context.Context, raw json.RawMessage) (any, error) {
		in, err := phase.DecodeExecute(raw)
		if err != nil {
			return nil, d.fail(ctx, "execute-chunk", "", time.Now(), err)
		}
		switch in := in.(type) {
		case *phase.PlanInput:
			out, err := plan(ctx, *in)
			if err != nil {
				return nil, err
			}
			return &out, nil
		case *phase.ChunkInput:
			out, err := chunk(ctx, *in)
			if err != nil {
				return nil, err
			}
			return &out, nil
		}
		return nil, d.fail(ctx, "execute-chunk", "", time.Now(), fmt.Errorf("unexpected payload %T", in))
	}
}

// Plan returns the plan handler (execute-chunk with action "plan").
func Plan(d Deps) func(context.Context, phase.PlanInput) (phase.PlanOutput, error) {
	d = d.withDefaults()
	return handle(d, "plan", func(in phase.PlanInput) string { return in.JobID }, func(ctx context.Context, in phase.PlanInput) (out phase.PlanOutput, err error) {
		started := time.Now()
		j, err := d.migration(ctx, in.JobID)
		if err != nil {
			return out, err
		}
		switch j.Status {
		case job.StatusAnalyzed, job.StatusRunning, job.StatusPaused:
		default:
			return out, fmt.Errorf("job %s is %s: it cannot be planned now: %w", j.ID, j.Status, job.ErrConflict)
		}
		shards, err := d.Store.Shards(ctx, j.ID)
		if err != nil {
			return out, err
		}
		if len(shards) == 0 {
			if shards, err = d.planShards(ctx, j); err != nil {
				return out, err
			}
		}
		if j.Status != job.StatusRunning {
			if _, err := d.Store.Transition(ctx, j.ID, job.StatusRunning, func(j *job.Job) { j.Stage = "copying" }); err != nil {
				return out, err
			}
		}
		out.Shards = []phase.ChunkInput{}
		for _, s := range shards {
			if !s.Done {
				out.Shards = append(out.Shards, phase.ChunkInput{JobID: j.ID, Node: s.Node, DB: s.DB, Cursor: cmp.Or(s.Cursor, "0")})
			}
		}
		d.Log.InfoContext(ctx, "planned", "jobId", j.ID, "shards", len(shards), "toCopy", len(out.Shards),
			"ms", time.Since(started).Milliseconds())
		return out, nil
	})
}

// planShards connects, plans the job's shards and stores their checkpoints.
func (d Deps) planShards(ctx context.Context, j job.Job) ([]job.Shard, error) {
	s, err := d.open(ctx, j)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	chunks, err := s.Plan()
	if err != nil {
		return nil, err
	}
	shards := make([]job.Shard, 0, len(chunks))
	for _, ch := range chunks {
		sh := job.Shard{Node: ch.Node, DB: ch.DB, Cursor: "0"}
		if err := d.Store.PutShard(ctx, j.ID, sh); err != nil {
			return nil, err
		}
		shards = append(shards, sh)
	}
	return shards, nil
}

// Chunk returns the chunk handler (execute-chunk without an action).
func Chunk(d Deps) func(context.Context, phase.ChunkInput) (phase.ChunkOutput, error) {
	d = d.withDefaults()
	return handle(d, "chunk", func(in phase.ChunkInput) string { return in.JobID }, func(ctx context.Context, in phase.ChunkInput) (out phase.ChunkOutput, err error) {
		started := time.Now()
		j, err := d.migration(ctx, in.JobID)
		if err != nil {
			return out, err
		}
		if j.Status != job.StatusRunning {
			return out, fmt.Errorf("job %s is %s, not running: chunk of %s db %d not copied: %w", j.ID, j.Status, in.Node, in.DB, job.ErrConflict)
		}
		sh, err := d.shard(ctx, j.ID, in.Node, in.DB)
		if err != nil {
			return out, err
		}
		if sh.Cursor != in.Cursor {
			// The checkpoint is ahead of the input when an invocation
			// checkpointed and then failed to answer: go on from it.
			d.Log.InfoContext(ctx, "going on from the checkpoint", "jobId", j.ID, "node", in.Node, "db", in.DB,
				"inputCursor", in.Cursor, "checkpoint", sh.Cursor)
		}
		out.ChunkInput = phase.ChunkInput{JobID: j.ID, Node: sh.Node, DB: sh.DB, Cursor: cmp.Or(sh.Cursor, "0")}
		if sh.Done {
			out.Done = true
			return out, nil
		}
		s, err := d.open(ctx, j)
		if err != nil {
			return out, err
		}
		defer s.Close()
		lim, err := d.limits(ctx, j.Options.ChunkKeys)
		if err != nil {
			return out, err
		}
		sh, res, err := workflow.CopyChunk(ctx, d.Store, s.Copier(), j.ID, sh, lim)
		if err != nil {
			return out, fmt.Errorf("shard %s db %d: %w", in.Node, in.DB, err)
		}
		out.Cursor, out.Done = cmp.Or(sh.Cursor, "0"), sh.Done
		out.Copied, out.Skipped, out.Failed = res.Counters.Copied, res.Counters.Skipped, res.Counters.Failed
		d.Log.InfoContext(ctx, "chunk copied", "jobId", j.ID, "node", sh.Node, "db", sh.DB, "cursor", out.Cursor,
			"done", out.Done, "scanned", res.Scanned, "copied", out.Copied, "skipped", out.Skipped, "failed", out.Failed,
			"expired", res.Counters.Expired, "keyErrors", len(res.Errors), "ms", time.Since(started).Milliseconds())
		return out, nil
	})
}

// shard returns the checkpoint of (node, db).
func (d Deps) shard(ctx context.Context, id, node string, db int) (job.Shard, error) {
	shards, err := d.Store.Shards(ctx, id)
	if err != nil {
		return job.Shard{}, err
	}
	for _, s := range shards {
		if s.Node == node && s.DB == db {
			return s, nil
		}
	}
	return job.Shard{}, fmt.Errorf("job %s has no shard %s db %d (plan it first): %w", id, node, db, job.ErrNotFound)
}

// limits bound a chunk: the context's deadline minus the safety margin
// (half the time left when that is less than the margin), and the job's
// ChunkKeys. Without a deadline only ChunkKeys bounds it.
func (d Deps) limits(ctx context.Context, maxKeys int) (transfer.Limits, error) {
	lim := transfer.Limits{MaxKeys: maxKeys}
	dl, ok := ctx.Deadline()
	if !ok {
		return lim, nil
	}
	now := d.Now()
	left := dl.Sub(now)
	if left <= 0 {
		return lim, fmt.Errorf("the invocation's deadline has passed before the chunk began: %w", context.DeadlineExceeded)
	}
	budget := left - d.SafetyMargin
	if budget <= 0 {
		budget = left / 2
	}
	lim.Deadline = now.Add(budget)
	return lim, nil
}

// Validate returns the validate function's handler.
func Validate(d Deps) func(context.Context, phase.ValidateInput) (phase.ValidateOutput, error) {
	d = d.withDefaults()
	return handle(d, "validate", func(in phase.ValidateInput) string { return in.JobID }, func(ctx context.Context, in phase.ValidateInput) (out phase.ValidateOutput, err error) {
		started := time.Now()
		j, err := d.validatable(ctx, in.JobID)
		if err != nil {
			return out, err
		}
		switch j.Status {
		case job.StatusRunning, job.StatusPaused:
			if j, err = d.Store.Transition(ctx, j.ID, job.StatusValidating, func(j *job.Job) { j.Stage = "validating" }); err != nil {
				return out, err
			}
		case job.StatusValidating: // a retry
		default:
			return out, fmt.Errorf("job %s is %s: it cannot be validated now: %w", j.ID, j.Status, job.ErrConflict)
		}
		return d.validate(ctx, j, started)
	})
}

// Revalidate returns a handler that validates a finished migration again
// (succeeded, failed, stopped or paused) and stores the new report in
// place of the old one, leaving the job's status alone: the API's POST
// /migrations/{id}/validations.
func Revalidate(d Deps) func(ctx context.Context, jobID string) (phase.ValidateOutput, error) {
	d = d.withDefaults()
	return func(ctx context.Context, jobID string) (out phase.ValidateOutput, err error) {
		started := time.Now()
		defer func() {
			if err = d.fail(ctx, "revalidate", jobID, started, err); err != nil {
				out = phase.ValidateOutput{} // nothing partial goes out with an error
			}
		}()
		if err := d.check(); err != nil {
			return out, err
		}
		j, err := d.validatable(ctx, jobID)
		if err != nil {
			return out, err
		}
		switch j.Status {
		case job.StatusSucceeded, job.StatusFailed, job.StatusCancelled, job.StatusPaused:
		default:
			return out, fmt.Errorf("job %s is %s: validate it once its copy has ended: %w", j.ID, j.Status, job.ErrConflict)
		}
		return d.validate(ctx, j, started)
	}
}

// validate runs the validation of job j and stores its report. Keys that
// failed to copy count as issues (the local workflow fails such a job
// before validating).
func (d Deps) validate(ctx context.Context, j job.Job, started time.Time) (phase.ValidateOutput, error) {
	s, err := d.open(ctx, j)
	if err != nil {
		return phase.ValidateOutput{}, err
	}
	defer s.Close()
	o := s.ValidationOptions(validation.Options{Log: d.Log, Always: d.largestKeys(ctx, j.ID)})
	rep, err := validation.Run(ctx, s.Source(), s.Target(), o)
	if err != nil {
		return phase.ValidateOutput{}, err
	}
	body, err := json.Marshal(rep)
	if err != nil {
		return phase.ValidateOutput{}, fmt.Errorf("encode the validation report: %w", err)
	}
	if err := d.Store.PutReport(ctx, j.ID, job.ReportValidation, body); err != nil {
		return phase.ValidateOutput{}, fmt.Errorf("store the validation report: %w", err)
	}
	out := phase.ValidateOutput{
		JobID:                  j.ID,
		Passed:                 rep.Passed && j.Counters.Failed == 0,
		Issues:                 len(rep.Issues) + rep.IssuesOmitted + int(j.Counters.Failed),
		KeyCountDiscrepancyPct: rep.KeyCountDiscrepancyPct,
	}
	d.Log.InfoContext(ctx, "validated", "jobId", j.ID, "passed", out.Passed, "issues", out.Issues,
		"failedKeys", j.Counters.Failed, "keyCountDiscrepancyPct", out.KeyCountDiscrepancyPct,
		"sampled", rep.Sample.Sampled, "always", rep.Sample.Always, "digest", rep.Sample.Digest,
		"ms", time.Since(started).Milliseconds())
	return out, nil
}

// largestKeys returns the largest keys the job's stored analysis report
// found, which the validation compares besides its random sample
// (workflow.LargestKeys); nil when the job has no analysis report, or it
// cannot be read (logged): the random sample alone is compared then.
func (d Deps) largestKeys(ctx context.Context, id string) []validation.KeyRef {
	rep, err := workflow.LoadReport(ctx, d.Store, id)
	if err != nil {
		if !errors.Is(err, job.ErrNotFound) {
			d.Log.WarnContext(ctx, "analysis report unreadable: validating the random sample only", "jobId", id, "error", err.Error())
		}
		return nil
	}
	return workflow.LargestKeys(rep)
}

// migration returns a command-mode migration job (the execute-chunk
// function's).
func (d Deps) migration(ctx context.Context, id string) (job.Job, error) {
	return d.migrationIn(ctx, id, "the execute-chunk function", job.ModeCommand)
}

// validatable returns a migration job of any mode: the validate function
// checks the target of a command-mode copy and of redis-shake's (the
// shake-task leaves its job running for it).
func (d Deps) validatable(ctx context.Context, id string) (job.Job, error) {
	return d.migrationIn(ctx, id, "the validate function", job.ModeCommand, job.ModeRedisShake, job.ModeRedisShakeSync)
}

func (d Deps) migrationIn(ctx context.Context, id, who string, modes ...string) (job.Job, error) {
	j, err := d.Store.Get(ctx, id)
	if err != nil {
		return j, err
	}
	if j.Kind != job.KindMigration {
		return j, fmt.Errorf("job %s is an %s job, not a migration: %w", id, j.Kind, job.ErrInvalid)
	}
	if !slices.Contains(modes, j.Mode) {
		return j, &phase.UnsupportedError{Err: fmt.Errorf("job %s: mode %s is not run by %s", id, j.Mode, who)}
	}
	return j, nil
}

// dial resolves both endpoints' secrets and connects.
func (d Deps) dial(ctx context.Context, source, target phase.Endpoint) (src, dst *endpoint.Conn, err error) {
	se, de, err := d.resolve(ctx, source, target)
	if err != nil {
		return nil, nil, err
	}
	if src, err = endpoint.Dial(ctx, se); err != nil {
		return nil, nil, fmt.Errorf("source: %w", err)
	}
	if dst, err = endpoint.Dial(ctx, de); err != nil {
		src.Close()
		return nil, nil, fmt.Errorf("target: %w", err)
	}
	return src, dst, nil
}

func (d Deps) resolve(ctx context.Context, source, target phase.Endpoint) (src, dst endpoint.Endpoint, err error) {
	if src, err = d.Secrets.Resolve(ctx, source); err != nil {
		return src, dst, fmt.Errorf("source: %w", err)
	}
	if dst, err = d.Secrets.Resolve(ctx, target); err != nil {
		return src, dst, fmt.Errorf("target: %w", err)
	}
	return src, dst, nil
}

// open connects to job j's endpoints and builds its copier.
func (d Deps) open(ctx context.Context, j job.Job) (*workflow.Session, error) {
	source, target := phase.JobEndpoints(j)
	src, dst, err := d.resolve(ctx, source, target)
	if err != nil {
		return nil, err
	}
	return workflow.Open(ctx, j.ID, workflow.Request{Source: src, Target: dst, Options: j.Options}, d.Log)
}

// Strict wraps a handler so that it decodes its payload with phase.Decode
// (unknown fields refused: they mean the ASL and the phase structs have
// drifted apart) instead of lambda.Start's lenient decoding. The mains use
// it; an in-process caller that holds the struct calls h directly.
func Strict[In any, PIn interface {
	*In
	Check() error
}, Out any](h func(context.Context, In) (Out, error)) func(context.Context, json.RawMessage) (Out, error) {
	return func(ctx context.Context, raw json.RawMessage) (Out, error) {
		var in In
		if err := phase.Decode(raw, PIn(&in)); err != nil {
			var zero Out
			return zero, err
		}
		return h(ctx, in)
	}
}
