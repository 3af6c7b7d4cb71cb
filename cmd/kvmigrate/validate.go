package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/topology"
	"github.com/kvmigrate/kvmigrate/internal/validation"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// errNotValid: validation ran and found differences (exit code 1).
var errNotValid = errors.New("validation failed")

func (a *app) validateCmd() *cobra.Command {
	var f struct {
		source, target string
		match, typ     string
		sample         int
		budget, ttlTol time.Duration
		json, redact   bool
		largest        time.Duration
	}
	cmd := &cobra.Command{
		Use:   "validate --source URL --target URL [--match GLOB] [--type TYPE]",
		Short: "Check the target against the source: key counts, sampled values and TTLs",
		Long: `Check, without writing anything, that the target holds what the source holds:

  - exact key counts per database (DBSIZE on every master of a cluster);
  - a sample of keys spread over every master and database, compared on
    type, TTL and value: in full up to 100 elements, by element count and a
    digest streamed from both sides above that, within --budget (keys left
    when it runs out are listed as compared by count only);
  - a sample of target keys looked up on the source (keys only on the target);
  - the source's largest keys, found first by a big-key sweep (the
    analysis's, read-only, within --largest; 0 skips it): a random sample
    of many small keys almost never draws the few huge ones.

With --match and/or --type (the filters of a migrate or run that copied
only some keys) only the keys they select are checked, on both sides: the
key counts are those of a SCAN with that MATCH and TYPE over every master
and database instead of DBSIZE, the samples hold matching keys only, and a
target key the filter does not select is not an extra one.

Passes when no difference is found and the key counts differ by less than
1 %. Exit codes: 0 passed, 1 failed (or an error), 2 bad input.
Standalone: every database in use, unless a URL names one (then that one
only, source db → target db).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, dst, err := endpoints(f.source, f.target)
			if err != nil {
				return err
			}
			if f.sample < 1 {
				return usageError{fmt.Errorf("--sample must be at least 1, got %d", f.sample)}
			}
			if f.budget <= 0 || f.ttlTol <= 0 {
				return usageError{errors.New("--budget and --ttl-tolerance must be positive durations, e.g. 30s")}
			}
			if err := (validation.Options{Type: f.typ}).Check(); err != nil {
				return usageError{fmt.Errorf("--type: %w", err)}
			}
			ctx := cmd.Context()
			sc, err := endpoint.Dial(ctx, src)
			if err != nil {
				return fmt.Errorf("source: %w", err)
			}
			defer sc.Close()
			dc, err := endpoint.Dial(ctx, dst)
			if err != nil {
				return fmt.Errorf("target: %w", err)
			}
			defer dc.Close()

			o := validation.Options{Sample: f.sample, Budget: f.budget, TTLTolerance: f.ttlTol,
				RedactKeys: f.redact, Match: f.match, Type: f.typ, Log: a.logger()}
			status := startStatus(a, "validating", f.json)
			defer status.stop()
			if f.largest > 0 {
				// The analysis's sample and big-key sweep find the largest
				// keys; a failure leaves the validation to its sample.
				ar, err := analysis.Analyze(ctx, sc, dc, analysis.Options{Sample: analysis.MinSample,
					TimeBudget: f.largest, Match: f.match, Type: f.typ})
				if err != nil {
					a.logger().Warn("find the largest keys: validating the sample only", "error", err.Error())
				} else {
					o.Always = workflow.LargestKeys(ar)
				}
			}
			if src.OneDB() || dst.OneDB() { // as migrate does: one database, source → target
				o.DBs = []int{src.DB}
				o.TargetDB = func(int) int { return dst.DB }
			}
			rep, err := validation.Run(ctx, sc, dc, o)
			status.stop()
			if err != nil {
				return fmt.Errorf("validate: %w", err)
			}
			if f.json {
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				renderValidation(a.out, src.String(), dst.String(), rep)
			}
			if !rep.Passed {
				return fmt.Errorf("%w: %s", errNotValid, verdict(rep))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.source, "source", "", "source URL (password: $KVMIGRATE_SOURCE_PASSWORD)")
	fl.StringVar(&f.target, "target", "", "target URL (password: $KVMIGRATE_TARGET_PASSWORD)")
	fl.StringVar(&f.match, "match", "", "check only the keys matching this SCAN MATCH glob (the copy's --match)")
	fl.StringVar(&f.typ, "type", "", "check only the keys of this type (the copy's --type): "+strings.Join(topology.KeyTypes, ", "))
	fl.IntVar(&f.sample, "sample", validation.DefaultSample, "source keys to compare (all of them when the source has no more)")
	fl.DurationVar(&f.budget, "budget", validation.DefaultBudget, "time for the streamed digests of big keys")
	fl.DurationVar(&f.ttlTol, "ttl-tolerance", validation.DefaultTTLTolerance, "how far source and target expiry times may differ")
	fl.DurationVar(&f.largest, "largest", 30*time.Second, "time to find the source's largest keys, compared besides the sample (0: sample only)")
	fl.BoolVar(&f.json, "json", false, "print the report as JSON")
	fl.BoolVar(&f.redact, "redact-keys", false, "show key, field and member names as SHA-256 prefixes, and no scores")
	return cmd
}

// verdict sums up why a validation failed.
func verdict(rep validation.Report) string {
	var parts []string
	if n := len(rep.Issues) + rep.IssuesOmitted; n > 0 {
		parts = append(parts, plural(n, "issue"))
	}
	if rep.KeyCountDiscrepancyPct >= validation.MaxDiscrepancyPct {
		parts = append(parts, fmt.Sprintf("key counts differ by %.2f %%", rep.KeyCountDiscrepancyPct))
	}
	return strings.Join(parts, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// renderValidation prints a validation report for a terminal.
func renderValidation(w io.Writer, source, target string, rep validation.Report) {
	result := "PASSED"
	if !rep.Passed {
		result = "FAILED"
	}
	fmt.Fprintf(w, "validation %s (%s)\n", result, (time.Duration(rep.ElapsedMs) * time.Millisecond).String())
	fmt.Fprintf(w, "  source  %s  (%s)\n", source, sideText(rep.Source))
	fmt.Fprintf(w, "  target  %s  (%s)\n", target, sideText(rep.Target))

	if rep.Filter != nil {
		fmt.Fprintf(w, "\nkey counts of the keys the filter selects (%s; SCAN of every master, not DBSIZE)\n", rep.Filter)
	} else {
		fmt.Fprintln(w, "\nkey counts")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tDB\tSOURCE\tTARGET\tDIFF\t")
	for _, c := range rep.KeyCounts {
		db := fmt.Sprint(c.SourceDB)
		if c.SourceDB != c.TargetDB {
			db = fmt.Sprintf("%d→%d", c.SourceDB, c.TargetDB)
		}
		fmt.Fprintf(tw, "\t%s\t%d\t%d\t%+d\t\n", db, c.Source, c.Target, c.Target-c.Source)
	}
	tw.Flush()
	for _, c := range rep.KeyCounts {
		if c.Source != c.Target && (len(c.SourceMasters) > 1 || len(c.TargetMasters) > 1) {
			fmt.Fprintf(w, "  db %d per master: source %s; target %s\n", c.SourceDB, masters(c.SourceMasters), masters(c.TargetMasters))
		}
	}
	fmt.Fprintf(w, "  discrepancy %.4g %% (fails at %g %%)\n", rep.KeyCountDiscrepancyPct, validation.MaxDiscrepancyPct)

	s := rep.Sample
	how := "sampled"
	if s.Exhaustive {
		how = "every key"
	}
	if rep.Filter != nil {
		how += ", matching keys only"
	}
	keys := fmt.Sprintf("%d source keys", s.Sampled)
	if s.Always > 0 {
		keys = fmt.Sprintf("%d source keys and the analysis's %d largest", s.Sampled, s.Always)
	}
	fmt.Fprintf(w, "\nsample (%s): %s: %d compared in full, %d by digest, %d by count only",
		how, keys, s.Full, s.Digest, s.CountOnly)
	if s.Vanished > 0 {
		fmt.Fprintf(w, ", %d expired or deleted meanwhile", s.Vanished)
	}
	fmt.Fprintf(w, "; %d target keys looked up on the source\n", s.TargetSampled)
	if s.Digest+s.CountOnly > 0 {
		fmt.Fprintf(w, "  digests: %d elements in %s\n", s.DigestElements, time.Duration(s.DigestMs)*time.Millisecond)
	}
	if len(rep.CountOnly) > 0 {
		fmt.Fprintf(w, "  compared by count only (type, TTL and length match; content not checked):\n")
		for _, c := range rep.CountOnly {
			why := "the digest budget ran out"
			switch c.Reason {
			case validation.ReasonUnstableScan:
				why = "the key changed while it was read"
			case validation.ReasonUnknownType:
				why = "no portable reader for this type (type and TTL compared)"
			}
			fmt.Fprintf(w, "    db %d  %s  (%s, %d elements): %s\n", c.DB, c.Key, c.Type, c.Elements, why)
		}
	}

	if b := rep.Baseline; b != nil {
		fmt.Fprintln(w, "\nbaseline (target load before and after the migration)")
		if !b.Compared {
			fmt.Fprintf(w, "  not compared: %s\n", b.Skipped)
		}
		for _, m := range b.Metrics {
			mark := "ok"
			if m.Regression {
				mark = "REGRESSION"
			}
			fmt.Fprintf(w, "  %-20s before %.4g ± %.3g  after %.4g  %s\n", m.Metric, m.BeforeMean, m.BeforeStdDev, m.After, mark)
		}
	}

	if n := len(rep.Issues) + rep.IssuesOmitted; n > 0 {
		fmt.Fprintf(w, "\n%s:\n", plural(n, "issue"))
		for _, is := range rep.Issues {
			where := fmt.Sprintf("db %d", is.DB)
			if is.Key != "" {
				where += "  " + is.Key
			}
			fmt.Fprintf(w, "  %-9s  %s: %s\n", is.Kind, where, is.Detail)
		}
		if rep.IssuesOmitted > 0 {
			fmt.Fprintf(w, "  … and %d more (see --json)\n", rep.IssuesOmitted)
		}
	} else {
		fmt.Fprintln(w, "\nno differences found")
	}
}

func sideText(s validation.Side) string {
	if s.Cluster {
		return fmt.Sprintf("%s %s cluster, %d masters", s.Engine, s.Version, s.Masters)
	}
	return fmt.Sprintf("%s %s standalone", s.Engine, s.Version)
}

func masters(ms []validation.MasterCount) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprintf("%s=%d", m.Addr, m.Keys)
	}
	return strings.Join(parts, " ")
}
