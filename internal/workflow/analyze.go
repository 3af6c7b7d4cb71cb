package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/validation"
)

// MaxAnalyses bounds the analysis jobs running at once (DESIGN: 20).
const MaxAnalyses = 20

// AnalyzeRequest asks for an analysis job.
type AnalyzeRequest struct {
	// JobID, when set, names a pending analysis job the caller created; see
	// Request.JobID.
	JobID          string
	Source, Target endpoint.Endpoint
	Options        analysis.Options
}

// AnalysisOutcome is a finished analysis job and its report (nil when the
// analysis failed).
type AnalysisOutcome struct {
	Job    job.Job
	Report *analysis.Report
}

// Analyze runs an analysis job: pending → analyzing → analyzed, with the
// report stored with the job (job.ReportAnalysis). Blocking findings do
// not fail an analysis job: Report.Blocking says so, and Run (or the state
// machine) enforces them.
func (l *Local) Analyze(ctx context.Context, req AnalyzeRequest) (AnalysisOutcome, error) {
	if err := req.Options.Check(); err != nil {
		return AnalysisOutcome{}, err
	}
	j := job.Job{ID: req.JobID, Kind: job.KindAnalysis, Source: req.Source.String(), Target: req.Target.String()}
	if j.ID != "" {
		var err error
		if j, err = l.adopt(ctx, j.ID, job.KindAnalysis); err != nil {
			return AnalysisOutcome{Job: j}, err
		}
	} else {
		j.ID = job.NewID()
		if err := l.Store.Create(ctx, j); err != nil {
			return AnalysisOutcome{}, fmt.Errorf("create job: %w", err)
		}
	}
	if err := l.Store.Acquire(ctx, j.ID, job.KindAnalysis, MaxAnalyses); err != nil {
		j = l.finish(ctx, j.ID, job.StatusFailed, err)
		return AnalysisOutcome{Job: j}, fmt.Errorf("start job %s: %w", j.ID, err)
	}
	defer l.Store.Release(context.WithoutCancel(ctx), j.ID, job.KindAnalysis)

	if _, err := l.Store.Transition(ctx, j.ID, job.StatusAnalyzing, func(j *job.Job) { j.Stage = "connecting" }); err != nil {
		return AnalysisOutcome{Job: j}, err
	}
	src, dst, err := dial(ctx, Request{Source: req.Source, Target: req.Target})
	if err != nil {
		o, err := l.failed(ctx, j.ID, err)
		return AnalysisOutcome{Job: o.Job}, err
	}
	defer src.Close()
	defer dst.Close()
	rep, err := l.analyzeStep(ctx, j.ID, src, dst, req.Options)
	if err != nil {
		o, err := l.endAnalysis(ctx, j.ID, err)
		return AnalysisOutcome{Job: o.Job, Report: rep}, err
	}
	j, err = l.Store.Transition(context.WithoutCancel(ctx), j.ID, job.StatusAnalyzed, func(j *job.Job) { j.Stage = "analyzed" })
	return AnalysisOutcome{Job: j, Report: rep}, err
}

// RunRequest asks for the main local job: analyze, gate, migrate, validate.
type RunRequest struct {
	Request
	// Analysis shapes the analysis step (its Match and Type are
	// Request.Options'); Request.Options.Force passes the gate.
	Analysis analysis.Options
	// OnAnalysis, if set, receives the report as soon as it is stored,
	// before the gate (the CLI prints the findings then).
	OnAnalysis func(*analysis.Report)
	// Validation shapes the validation step (DBs, TargetDB, Match and Type
	// are set from the job); SkipValidation leaves it out.
	Validation     validation.Options
	SkipValidation bool
	// Baseline, when its Window is set, takes that many snapshots of the
	// target's load over the window during the analysis step, and the
	// validation compares the target after the copy with them.
	Baseline validation.RecordOptions
}

// RunOutcome is a finished (or refused, or interrupted) run.
type RunOutcome struct {
	Outcome
	// Report is the analysis report; nil when the analysis did not finish.
	Report *analysis.Report
	// Validated is true when the validation step ran and passed.
	Validated bool
	// Validation is the validation report; nil when it did not run.
	Validation *validation.Report
}

// ErrValidationFailed: the copy finished and the validation found
// differences; the report says which.
var ErrValidationFailed = errors.New("validation failed")

// Run runs one migration job with the analysis as its first step:
// pending → analyzing (connect, analyze, store the report, gate, plan) →
// analyzed → running → succeeded. With blocking findings and without
// Options.Force the job ends blocked, with a *analysis.BlockedError that
// lists them, before anything is written.
func (l *Local) Run(ctx context.Context, req RunRequest) (RunOutcome, error) {
	// The analysis describes what the copy copies: the copy's filters.
	req.Analysis.Match, req.Analysis.Type = req.Options.Match, req.Options.Type
	if err := req.Analysis.Check(); err != nil {
		return RunOutcome{}, err
	}
	var rep *analysis.Report
	st := steps{
		analyze: func(ctx context.Context, id string, src, dst *endpoint.Conn) error {
			var err error
			if rep, err = l.analyzeStep(ctx, id, src, dst, req.Analysis); err != nil {
				return err
			}
			if req.OnAnalysis != nil {
				req.OnAnalysis(rep)
			}
			return rep.Gate(req.Options.Force)
		},
	}
	var (
		vrep           *validation.Report
		migrationStart time.Time
	)
	if req.Baseline.Window > 0 {
		analyze := st.analyze
		st.analyze = func(ctx context.Context, id string, src, dst *endpoint.Conn) error {
			if err := analyze(ctx, id, src, dst); err != nil {
				return err
			}
			if _, err := validation.RecordBaseline(ctx, dst, l.Store, id, req.Baseline); err != nil {
				return fmt.Errorf("baseline snapshots of the target: %w", err)
			}
			migrationStart = time.Now()
			return nil
		}
	}
	if !req.SkipValidation {
		st.validate = func(ctx context.Context, id string, s *session) error {
			o := s.validationOptions(req.Validation)
			o.Log = l.log()
			if o.Always == nil {
				o.Always = l.largestKeys(ctx, id, rep)
			}
			if !migrationStart.IsZero() {
				o.Baseline = &validation.BaselineCheck{Store: l.Store, JobID: id, MigrationStart: migrationStart}
			}
			rep, err := validation.Run(ctx, s.src, s.dst, o)
			if err != nil {
				return err
			}
			vrep = &rep
			body, err := json.Marshal(rep)
			if err != nil {
				return fmt.Errorf("encode the validation report: %w", err)
			}
			if err := l.Store.PutReport(context.WithoutCancel(ctx), id, job.ReportValidation, body); err != nil {
				return fmt.Errorf("store the validation report: %w", err)
			}
			if !rep.Passed {
				return fmt.Errorf("%w: %d issue(s), key count discrepancy %.2f%%", ErrValidationFailed,
					len(rep.Issues)+rep.IssuesOmitted, rep.KeyCountDiscrepancyPct)
			}
			return nil
		}
	}
	out, err := l.migrate(ctx, req.Request, st)
	ro := RunOutcome{Outcome: out, Report: rep, Validation: vrep, Validated: err == nil && st.validate != nil}
	return ro, err
}

// analyzeStep runs the analysis on connected endpoints and stores its
// report with the job.
func (l *Local) analyzeStep(ctx context.Context, id string, src, dst *endpoint.Conn, opts analysis.Options) (*analysis.Report, error) {
	if _, err := l.Store.Update(ctx, id, func(j *job.Job) { j.Stage = "analyzing" }); err != nil {
		return nil, err
	}
	opts.JobID = id
	rep, err := analysis.Analyze(ctx, src, dst, opts)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(rep)
	if err != nil {
		return rep, fmt.Errorf("encode the analysis report: %w", err)
	}
	if err := l.Store.PutReport(ctx, id, job.ReportAnalysis, body); err != nil {
		return rep, fmt.Errorf("store the analysis report: %w", err)
	}
	l.log().Info("analysis done", "job", id, "blocking", rep.Blocking, "findings", len(rep.Findings),
		"sampled", rep.Sample.Sampled, "estimatedKeys", rep.EstimatedKeys, "ms", rep.DurationMs)
	return rep, nil
}

// endAnalysis records how the analysis step ended a job: blocked by the
// gate, stopped by Ctrl-C, or failed.
func (l *Local) endAnalysis(ctx context.Context, id string, cause error) (Outcome, error) {
	to := job.StatusFailed
	switch {
	case errors.Is(cause, analysis.ErrBlocked):
		to = job.StatusBlocked
	case ctx.Err() != nil:
		to = job.StatusCancelled
		cause = fmt.Errorf("interrupted during the analysis: %w", cause)
	}
	j := l.finish(ctx, id, to, cause)
	return Outcome{Job: j}, cause
}

// MaxLargestKeys bounds the keys LargestKeys returns.
const MaxLargestKeys = 20

// LargestKeys returns the analysis report's largest keys (its sample's and its big-key sweep's), by
// memory and by element count alternately, each key once, at most
// MaxLargestKeys: the keys a validation compares besides its random
// sample (validation.Options.Always), which on a dataset of many small
// keys and a few huge ones almost never draws the huge ones. nil for a
// nil report.
func LargestKeys(rep *analysis.Report) []validation.KeyRef {
	if rep == nil {
		return nil
	}
	var out []validation.KeyRef
	seen := map[validation.KeyRef]bool{}
	mem, elems := rep.LargestKeys.ByMemory, rep.LargestKeys.ByElements
	for i := 0; i < max(len(mem), len(elems)) && len(out) < MaxLargestKeys; i++ {
		for _, list := range [][]analysis.KeyInfo{mem, elems} {
			if i >= len(list) || len(out) >= MaxLargestKeys {
				continue
			}
			k := validation.KeyRef{DB: list[i].DB, Key: list[i].Key}
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	return out
}

// largestKeys returns LargestKeys of the job's analysis report: rep, or
// the one stored with the job when rep is nil (a resumed job). Without a
// report, nil: the validation compares its sample only.
func (l *Local) largestKeys(ctx context.Context, id string, rep *analysis.Report) []validation.KeyRef {
	if rep == nil {
		var err error
		if rep, err = LoadReport(ctx, l.Store, id); err != nil {
			if !errors.Is(err, job.ErrNotFound) {
				l.log().Warn("analysis report unreadable: validating the random sample only", "job", id, "error", err.Error())
			}
			return nil
		}
	}
	return LargestKeys(rep)
}

// LoadReport reads the analysis report stored with a job.
func LoadReport(ctx context.Context, store job.Store, id string) (*analysis.Report, error) {
	body, err := store.Report(ctx, id, job.ReportAnalysis)
	if err != nil {
		return nil, err
	}
	var r analysis.Report
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("job %s: decode the analysis report: %w", id, err)
	}
	return &r, nil
}
