// Command kvmigrate moves data between Redis and Valkey: analyse, copy,
// check. This file only wires the commands; the work is in internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRoot(os.Stdout, os.Stderr).ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvmigrate:", endpoint.Redact(err.Error()))
	}
	stop()
	os.Exit(exitCode(err))
}

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1 // the job ran and something failed
	exitUsage       = 2 // bad input: nothing was done
	exitBlocked     = 3 // the analysis gate refused the migration (or analyze found blocking findings): nothing was written
	exitInterrupted = 130
)

// usageError marks bad input (flags, URLs, options).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, context.Canceled), errors.Is(err, workflow.ErrStopped): // Ctrl-C, or a redis-shake run stopped before its end
		return exitInterrupted
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, analysis.ErrBlocked):
		return exitBlocked
	default:
		return exitFailed
	}
}
