package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/transfer"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

type runFlags struct {
	source, target string
	opts           job.Options
	chunkKeys      int
	json           bool
	noProgress     bool
	// mode and cutoverOnSignal: see registerMode (shake.go).
	mode            string
	cutoverOnSignal bool
}

func (f *runFlags) register(cmd *cobra.Command, withEndpoints bool) {
	fl := cmd.Flags()
	if withEndpoints {
		fl.StringVar(&f.source, "source", "", "source URL, e.g. redis://user@10.0.0.5:6379/0 (password: $KVMIGRATE_SOURCE_PASSWORD)")
		fl.StringVar(&f.target, "target", "", "target URL, e.g. valkey://10.0.0.9:6379?cluster=true (password: $KVMIGRATE_TARGET_PASSWORD)")
		fl.StringVar(&f.opts.Strategy, "strategy", string(transfer.StrategyAuto), "auto (SET for strings, DUMP/RESTORE when the target accepts it), dump, or commands")
		fl.StringVar(&f.opts.OnConflict, "on-conflict", string(transfer.ConflictReplace), "what to do with keys already on the target: replace or skip")
		fl.StringVar(&f.opts.Match, "match", "", "copy only keys matching this SCAN MATCH glob")
		fl.StringVar(&f.opts.Type, "type", "", "copy only keys of this type: string, list, set, zset, hash, stream")
		fl.IntVar(&f.opts.MaxOps, "max-ops", 0, "at most this many commands per second on the source (0: no limit)")
		fl.IntVar(&f.opts.Parallel, "parallel", 4, "shards (master × database) copied at once")
		fl.IntVar(&f.opts.Concurrency, "concurrency", transfer.DefaultInFlight, "big and compound keys in flight per shard (at least 50)")
		f.registerMode(cmd)
	}
	fl.IntVar(&f.chunkKeys, "chunk-keys", workflow.DefaultChunkKeys, "keys per checkpoint: an interruption redoes at most this many per shard")
	fl.BoolVar(&f.json, "json", false, "print the result as JSON")
	fl.BoolVar(&f.noProgress, "no-progress", false, "no progress bars (they are off anyway when stderr is not a terminal)")
}

func (a *app) migrateCmd() *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "migrate --source URL --target URL",
		Short: "Copy every key from source to target in resumable chunks",
		Long: `Copy every key (all types, binary-safe, with TTLs) from source to target.

Standalone sources: every database in use is copied to the same database
number, unless a URL names a database (then that one only). Cluster sources:
every master is scanned; writes to a cluster target follow the slots.
The job is checkpointed after each chunk: Ctrl-C, then kvmigrate resume JOB.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, dst, err := endpoints(f.source, f.target)
			if err != nil {
				return err
			}
			if err := checkOptions(f.opts); err != nil {
				return err
			}
			req := workflow.Request{Source: src, Target: dst, Options: f.opts, ChunkKeys: f.chunkKeys}
			if err := a.checkMode(f, &req); err != nil {
				return err
			}
			return a.runJob(cmd, f, func(ctx context.Context, l *workflow.Local) (workflow.Outcome, error) {
				return l.Migrate(ctx, req)
			})
		},
	}
	f.register(cmd, true)
	return cmd
}

// checkOptions validates options before anything connects.
func checkOptions(o job.Options) error {
	_, err := transfer.New(nil, nil, transfer.Options{
		JobID: "check", Strategy: transfer.Strategy(o.Strategy), OnConflict: transfer.Conflict(o.OnConflict),
		Type: o.Type, MaxOps: o.MaxOps,
	})
	if err != nil {
		return usageError{err}
	}
	if o.Parallel < 1 {
		return usageError{errors.New("--parallel must be at least 1")}
	}
	return nil
}

func (a *app) resumeCmd() *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "resume JOB",
		Short: "Continue an interrupted migration from its last checkpoints",
		Long: `Continue a paused or crashed migration from the cursors it checkpointed.
Jobs never store passwords: give them again with --source/--target URLs or
$KVMIGRATE_SOURCE_PASSWORD / $KVMIGRATE_TARGET_PASSWORD.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := a.openStore()
			if err != nil {
				return err
			}
			j, err := store.Get(cmd.Context(), args[0])
			store.Close()
			if err != nil {
				return fmt.Errorf("job %s: %w", args[0], err)
			}
			src, err := resumeEndpoint("source", f.source, j.Source, "KVMIGRATE_SOURCE_PASSWORD")
			if err != nil {
				return err
			}
			dst, err := resumeEndpoint("target", f.target, j.Target, "KVMIGRATE_TARGET_PASSWORD")
			if err != nil {
				return err
			}
			return a.runJob(cmd, f, func(ctx context.Context, l *workflow.Local) (workflow.Outcome, error) {
				return l.Resume(ctx, j.ID, workflow.Request{Source: src, Target: dst, ChunkKeys: f.chunkKeys})
			})
		},
	}
	cmd.Flags().StringVar(&f.source, "source", "", "source URL with credentials (default: the job's, without password)")
	cmd.Flags().StringVar(&f.target, "target", "", "target URL with credentials (default: the job's, without password)")
	f.register(cmd, false)
	return cmd
}

// resumeEndpoint is the URL given again, or the job's stored (redacted) URL
// with the password, if any, from env.
func resumeEndpoint(flag, given, stored, env string) (endpoint.Endpoint, error) {
	if given != "" {
		return parseEndpoint(flag, given, env)
	}
	e, err := endpoint.Parse(stored)
	if err != nil {
		return e, fmt.Errorf("stored %s URL: %w", flag, err)
	}
	return e.WithCredentials(e.Username, os.Getenv(env)), nil
}

// runJob opens the store, runs the job with progress bars, and prints the
// outcome.
func (a *app) runJob(cmd *cobra.Command, f *runFlags, run func(context.Context, *workflow.Local) (workflow.Outcome, error)) error {
	store, err := a.openStore()
	if err != nil {
		return err
	}
	defer store.Close()
	l := &workflow.Local{Store: store, Log: a.logger()}
	live := a.startRun(cmd, f, l, store)
	started := time.Now()
	out, err := run(live.ctx, l)
	live.finish()
	if out.Job.ID == "" {
		return err
	}
	if f.json {
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(jsonOutcome(out, err)); jerr != nil {
			return jerr
		}
	} else {
		renderOutcome(a.out, out, time.Since(started))
	}
	return err
}
