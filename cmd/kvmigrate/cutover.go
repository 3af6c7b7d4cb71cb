package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/job/bolt"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

func (a *app) cutoverCmd() *cobra.Command {
	var force, noWait, asJSON bool
	cmd := &cobra.Command{
		Use:   "cutover JOB",
		Short: "Cut over a running redis_shake_sync job: stop replicating, then validate",
		Long: `Cut over a redis_shake_sync job that a kvmigrate migrate or run command is
running (in another terminal, with the same job store): that process stops
redis-shake gracefully, waits for it to exit, then validates the target
(kvmigrate run) and ends the job. Stop the writes to the source and wait for
"ready for cutover" first.

A job still in its initial sync is refused: the target would be incomplete
(--force cuts over anyway). Without --no-wait, the command waits for the job
to end and exits 0 only when it succeeded.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if !job.ValidID(id) {
				return usageError{fmt.Errorf("%q is not a job id (see kvmigrate jobs)", id)}
			}
			path, err := a.storeFile()
			if err != nil {
				return err
			}
			accepted := func(j job.Job) {
				if !asJSON {
					fmt.Fprintf(a.out, "job %s: cutover requested (%s); stopping redis-shake, then validating\n", j.ID, j.Stage)
				}
			}
			j, err := workflow.SendRequest(cmd.Context(), workflow.ControlPath(path), id, job.RequestCutover, force, !noWait, accepted)
			if errors.Is(err, workflow.ErrNoProcess) {
				return notRunning(cmd, path, id, err)
			}
			if err != nil {
				return fmt.Errorf("cutover of job %s: %w", id, err)
			}
			if asJSON {
				if err := writeJSON(a, j); err != nil {
					return err
				}
			}
			if noWait {
				if !asJSON {
					fmt.Fprintf(a.out, "job %s: cutover requested; follow it with kvmigrate jobs %s\n", j.ID, j.ID)
				}
				return nil
			}
			if !asJSON {
				fmt.Fprintf(a.out, "job %s: %s (%s)\n", j.ID, j.Status, j.Stage)
				if j.Error != "" {
					fmt.Fprintf(a.out, "  %s\n", j.Error)
				}
			}
			if j.Status != job.StatusSucceeded {
				return fmt.Errorf("job %s ended %s after the cutover", j.ID, j.Status)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "cut over even during the initial sync (the target is then incomplete)")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the request is accepted")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the job as JSON")
	return cmd
}

// notRunning explains why no process took the request: the job store is
// free (nothing runs the job) or held by a process without a control
// socket.
func notRunning(cmd *cobra.Command, path, id string, cause error) error {
	store, err := bolt.Open(path)
	if errors.Is(err, bolt.ErrLocked) {
		return fmt.Errorf("cutover of job %s: the job store %s is held by a kvmigrate process that does not run a redis-shake job (kvmigrate serve? use its API): %w", id, path, cause)
	}
	if err != nil {
		return err
	}
	defer store.Close()
	j, err := store.Get(cmd.Context(), id)
	if err != nil {
		return fmt.Errorf("cutover of job %s: %w", id, err)
	}
	if j.Mode != job.ModeRedisShakeSync {
		return fmt.Errorf("cutover of job %s: it is a %s job; only %s jobs are cut over: %w", id, j.Mode, job.ModeRedisShakeSync, job.ErrInvalid)
	}
	return fmt.Errorf("cutover of job %s: it is %s and no kvmigrate process runs it (its process ended; a sync cannot be resumed: start it again): %w", id, j.Status, cause)
}
