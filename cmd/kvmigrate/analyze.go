package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/topology"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// analysisFlags are the analysis options of analyze and run.
type analysisFlags struct {
	sample     int
	timeBudget time.Duration
	// match and typ: analyze's --match/--type (run passes its copy
	// filters to the analysis itself).
	match, typ string
}

func (f *analysisFlags) register(cmd *cobra.Command) {
	cmd.Flags().IntVar(&f.sample, "sample", analysis.DefaultSample,
		fmt.Sprintf("keys to sample over all masters (%d to %d)", analysis.MinSample, analysis.MaxSample))
	cmd.Flags().DurationVar(&f.timeBudget, "time-budget", analysis.DefaultTimeBudget, "stop sampling after this long and extrapolate from what was sampled")
}

// registerFilters adds analyze's --match and --type, the filters of the
// migration to analyze.
func (f *analysisFlags) registerFilters(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.match, "match", "", "analyze only the keys a migration with this --match copies (a SCAN MATCH glob)")
	cmd.Flags().StringVar(&f.typ, "type", "", "analyze only the keys a migration with this --type copies: "+strings.Join(topology.KeyTypes, ", "))
}

// options checks the flags and returns the analysis options.
func (f *analysisFlags) options(maxOps int) (analysis.Options, error) {
	o := analysis.Options{Sample: f.sample, TimeBudget: f.timeBudget, MaxOps: maxOps, Match: f.match, Type: f.typ}
	if f.timeBudget <= 0 {
		return o, usageError{errors.New("--time-budget must be positive")}
	}
	if err := (analysis.Options{Sample: f.sample}).Check(); err != nil {
		return o, usageError{fmt.Errorf("--sample: %w", err)}
	}
	if err := (analysis.Options{Type: f.typ}).Check(); err != nil {
		return o, usageError{fmt.Errorf("--type: %w", err)}
	}
	if err := o.Check(); err != nil {
		return o, usageError{err}
	}
	return o, nil
}

// blockingFindings makes analyze exit with exitBlocked; the report says
// why. It matches analysis.ErrBlocked, as run's refusal does.
type blockingFindings struct{}

func (blockingFindings) Error() string {
	return "the analysis has blocking findings: a migration would be refused without --force"
}

func (blockingFindings) Is(target error) bool { return target == analysis.ErrBlocked }

func (a *app) analyzeCmd() *cobra.Command {
	var (
		source, target string
		af             analysisFlags
		maxOps         int
		asJSON         bool
	)
	cmd := &cobra.Command{
		Use:   "analyze --source URL --target URL",
		Short: "Report what a migration would move and what would break, without writing anything",
		Long: `Read the source and the target (never writing to either) and report the
engines, topology, databases, a sampled type/TTL/memory profile, hash field
TTLs, the command mix, whether DUMP/RESTORE can be used, how much of the
source already exists on the target, and findings with a severity.

With --match and/or --type (the filters of kvmigrate migrate and run) the
report describes the keys such a migration copies: the sample SCANs with
the same MATCH and TYPE, and the key count, type mix, TTLs and memory
estimate (and so memory_fit) are extrapolated from the share of scanned
keys that match.

The report is kept with the job (kvmigrate jobs JOB).

Exit codes: 0 no blocking findings; 3 blocking findings (kvmigrate run
would refuse the migration unless given --force); 1 the analysis failed
(unreachable server, wrong password, ...); 2 bad input, nothing done;
130 interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, dst, err := endpoints(source, target)
			if err != nil {
				return err
			}
			if maxOps < 0 {
				return usageError{errors.New("--max-ops must not be negative")}
			}
			opts, err := af.options(maxOps)
			if err != nil {
				return err
			}
			store, err := a.openStore()
			if err != nil {
				return err
			}
			defer store.Close()
			l := &workflow.Local{Store: store, Log: a.logger()}
			status := startStatus(a, "analyzing source and target", asJSON)
			out, err := l.Analyze(cmd.Context(), workflow.AnalyzeRequest{Source: src, Target: dst, Options: opts})
			status.stop()
			if err != nil {
				if out.Job.ID != "" {
					return fmt.Errorf("analysis job %s: %w", out.Job.ID, err)
				}
				return err
			}
			if asJSON {
				if err := writeJSON(a, out.Report); err != nil {
					return err
				}
			} else if err := out.Report.WriteText(a.out); err != nil {
				return err
			}
			if out.Report.Blocking {
				return blockingFindings{}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&source, "source", "", "source URL (password: $KVMIGRATE_SOURCE_PASSWORD)")
	cmd.Flags().StringVar(&target, "target", "", "target URL (password: $KVMIGRATE_TARGET_PASSWORD)")
	cmd.Flags().IntVar(&maxOps, "max-ops", 0, "at most this many commands per second on each side (0: no limit)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	af.register(cmd)
	af.registerFilters(cmd)
	return cmd
}
