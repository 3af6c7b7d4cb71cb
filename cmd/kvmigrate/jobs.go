package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/validation"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

func (a *app) jobsCmd() *cobra.Command {
	var (
		asJSON bool
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "jobs [JOB]",
		Short: "List jobs, newest first, or show one with its shards",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := a.openStore()
			if err != nil {
				return err
			}
			defer store.Close()
			ctx := cmd.Context()
			if len(args) == 1 {
				j, err := store.Get(ctx, args[0])
				if err != nil {
					return fmt.Errorf("job %s: %w", args[0], err)
				}
				shards, err := store.Shards(ctx, j.ID)
				if err != nil {
					return err
				}
				rep, vrep, err := jobReports(ctx, store, j.ID)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(a, map[string]any{"job": j, "shards": shards, "analysis": rep, "validation": vrep})
				}
				fmt.Fprintf(a.out, "job %s  %s %s  %s → %s\n", j.ID, j.Status, j.Stage, j.Source, j.Target)
				if rep != nil {
					writeFindings(a.out, rep, j.Options.Force)
				}
				if vrep != nil {
					fmt.Fprintf(a.out, "validation passed=%v, key count discrepancy %.2f %%, %d issue(s)\n",
						vrep.Passed, vrep.KeyCountDiscrepancyPct, len(vrep.Issues)+vrep.IssuesOmitted)
				}
				if workflow.IsShake(j.Mode) {
					renderShake(a.out, workflow.Outcome{Job: j})
				}
				if j.Error != "" {
					fmt.Fprintf(a.out, "  %s\n", j.Error)
				}
				tw := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "SHARD\tDB\tCURSOR\tDONE\tCOPIED\tFAILED")
				for _, s := range shards {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%v\t%d\t%d\n", s.Node, s.DB, s.Cursor, s.Done, s.Counters.Copied, s.Counters.Failed)
				}
				return tw.Flush()
			}
			jobs, _, err := store.List(ctx, job.ListOptions{Limit: limit})
			if err != nil {
				return err
			}
			if asJSON {
				if jobs == nil {
					jobs = []job.Job{}
				}
				return writeJSON(a, jobs)
			}
			tw := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATUS\tCREATED\tCOPIED\tFAILED\tSOURCE\tTARGET")
			for _, j := range jobs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", j.ID, j.Status, j.CreatedAt.Local().Format(time.DateTime),
					j.Counters.Copied, j.Counters.Failed, j.Source, j.Target)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many jobs")
	return cmd
}

func writeJSON(a *app, v any) error {
	enc := json.NewEncoder(a.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// jobReports loads a job's analysis and validation reports; nil for one
// the job does not have.
func jobReports(ctx context.Context, store job.Store, id string) (*analysis.Report, *validation.Report, error) {
	rep, err := workflow.LoadReport(ctx, store, id)
	if err != nil && !errors.Is(err, job.ErrNotFound) {
		return nil, nil, err
	}
	body, err := store.Report(ctx, id, job.ReportValidation)
	switch {
	case errors.Is(err, job.ErrNotFound):
		return rep, nil, nil
	case err != nil:
		return nil, nil, err
	}
	var vrep validation.Report
	if err := json.Unmarshal(body, &vrep); err != nil {
		return nil, nil, fmt.Errorf("job %s: decode the validation report: %w", id, err)
	}
	return rep, &vrep, nil
}
