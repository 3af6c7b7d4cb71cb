package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/validation"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// validationNotRun is what run says with --no-validate.
const validationNotRun = "validation was not run (--no-validate): check with kvmigrate validate"

func (a *app) runCmd() *cobra.Command {
	f := &runFlags{}
	af := &analysisFlags{}
	var (
		noValidate     bool
		validateSample int
		baselineWindow time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run --source URL --target URL [--force]",
		Short: "Analyze, then migrate unless the analysis blocks it (the main local job)",
		Long: `Run one migration job: analyze the source and the target, refuse the
migration when the analysis has blocking findings (unless --force), copy
every key in resumable chunks, then validate the target against the
source (key counts, a sample compared on type, value and TTL; see
kvmigrate validate). The job succeeds only when the validation passes.

The analysis report is kept with the job. A refused job ends "blocked" and
nothing is written to the target. Ctrl-C during the copy leaves the job
paused: kvmigrate resume JOB. The migrate flags apply to the copy; --max-ops
also limits the analysis, and --match/--type shape it too: it describes
(and gates on) the keys the copy selects. They shape the validation as
well: it checks the keys they select on both sides (kvmigrate validate
--match/--type), so keys the copy left out are neither missing nor extra.

Exit codes: 0 the job succeeded; 1 it failed (keys failed, the validation
found differences, or an error); 2 bad input, nothing done; 3 refused by
the analysis (blocking findings, nothing written: fix them or --force);
130 interrupted (resumable: kvmigrate resume JOB).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, dst, err := endpoints(f.source, f.target)
			if err != nil {
				return err
			}
			if err := checkOptions(f.opts); err != nil {
				return err
			}
			aopts, err := af.options(f.opts.MaxOps)
			if err != nil {
				return err
			}
			if validateSample < 1 {
				return usageError{fmt.Errorf("--validate-sample must be at least 1, got %d", validateSample)}
			}
			req := workflow.Request{Source: src, Target: dst, Options: f.opts, ChunkKeys: f.chunkKeys}
			if err := a.checkMode(f, &req); err != nil {
				return err
			}
			return a.run(cmd, f, workflow.RunRequest{
				Request:        req,
				Analysis:       aopts,
				Validation:     validation.Options{Sample: validateSample},
				SkipValidation: noValidate,
				Baseline:       validation.RecordOptions{Window: baselineWindow},
			})
		},
	}
	f.register(cmd, true)
	af.register(cmd)
	cmd.Flags().BoolVar(&f.opts.Force, "force", false, "migrate despite blocking findings")
	cmd.Flags().BoolVar(&noValidate, "no-validate", false, "skip the validation after the copy")
	cmd.Flags().IntVar(&validateSample, "validate-sample", validation.DefaultSample, "keys the validation compares")
	cmd.Flags().DurationVar(&baselineWindow, "baseline-window", 0, "take 5 snapshots of the target's load over this window before copying, and compare after (0: no baseline)")
	return cmd
}

// run runs the job with the findings printed as soon as the analysis is
// done, progress bars during the copy, and the outcome at the end.
func (a *app) run(cmd *cobra.Command, f *runFlags, req workflow.RunRequest) error {
	store, err := a.openStore()
	if err != nil {
		return err
	}
	defer store.Close()
	l := &workflow.Local{Store: store, Log: a.logger()}
	var status *statusLine
	if !f.json {
		status = startStatus(a, "analyzing source and target", false)
		req.OnAnalysis = func(r *analysis.Report) {
			status.stop()
			writeFindings(a.out, r, req.Options.Force)
		}
	}
	live := a.startRun(cmd, f, l, store)
	started := time.Now()
	out, err := l.Run(live.ctx, req)
	status.stop()
	live.finish()
	if out.Job.ID == "" {
		return err
	}
	if f.json {
		j := runJSON{outcomeJSON: jsonOutcome(out.Outcome, err), Analysis: out.Report, Validation: out.Validation}
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(j); jerr != nil {
			return jerr
		}
		return err
	}
	renderOutcome(a.out, out.Outcome, time.Since(started))
	switch {
	case out.Validation != nil:
		fmt.Fprintln(a.out)
		renderValidation(a.out, out.Job.Source, out.Job.Target, *out.Validation)
	case err == nil && req.SkipValidation:
		fmt.Fprintf(a.out, "  %s\n", validationNotRun)
	}
	return err
}

// runJSON is the --json form of run: the migration outcome with the
// analysis and validation reports (null when the step did not run).
type runJSON struct {
	outcomeJSON
	Analysis   *analysis.Report   `json:"analysis"`
	Validation *validation.Report `json:"validation"`
}

// writeFindings prints the analysis in short: the sides, the findings and
// what the gate decides.
func writeFindings(w io.Writer, r *analysis.Report, force bool) {
	fmt.Fprintf(w, "analysis (job %s): %d keys, about %s", r.JobID, r.EstimatedKeys, bytesHuman(r.Memory.EstimatedBytes))
	if !r.Memory.Available {
		fmt.Fprint(w, " (memory unknown)")
	}
	noun := "findings"
	if len(r.Findings) == 1 {
		noun = "finding"
	}
	fmt.Fprintf(w, ", %d %s\n", len(r.Findings), noun)
	for _, f := range r.Findings {
		fmt.Fprintf(w, "  %-8s  %-16s  %s\n", f.Severity, f.Category, f.Message)
	}
	switch {
	case !r.Blocking:
	case force:
		fmt.Fprintln(w, "  blocking findings overridden by --force: migrating anyway")
	default:
		fmt.Fprintln(w, "  blocking findings: the migration is refused (fix them, or pass --force)")
	}
}
