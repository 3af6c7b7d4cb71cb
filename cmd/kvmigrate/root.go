package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job/bolt"
)

// app is what every command shares.
type app struct {
	out, errOut io.Writer
	storePath   string
	logLevel    string
}

func newRoot(out, errOut io.Writer) *cobra.Command {
	a := &app{out: out, errOut: errOut}
	root := &cobra.Command{
		Use:   "kvmigrate",
		Short: "Move data between Redis and Valkey without losing a key, a TTL or a byte",
		Long: `kvmigrate copies every key from a Redis or Valkey source to a Redis or Valkey
target — Redis→Valkey, Valkey→Redis, same engine, standalone and cluster —
with types, binary values, TTLs and databases intact, in resumable chunks.

URLs: redis://, rediss:// (TLS), valkey://, valkeys:// with optional
user:password@, /db and ?cluster=true. Keep passwords off the command line
with KVMIGRATE_SOURCE_PASSWORD and KVMIGRATE_TARGET_PASSWORD.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.SetErr(errOut)
	root.PersistentFlags().StringVar(&a.storePath, "job-store", "", "job store file (default $KVMIGRATE_HOME/jobs.db or ~/.kvmigrate/jobs.db)")
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	root.AddCommand(a.migrateCmd(), a.resumeCmd(), a.jobsCmd(), a.sampleCmd())
	return root
}

func (a *app) logger() *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(a.errOut, &slog.HandlerOptions{Level: level}))
}

func (a *app) openStore() (*bolt.Store, error) {
	path := a.storePath
	if path == "" {
		var err error
		if path, err = bolt.DefaultPath(); err != nil {
			return nil, err
		}
	}
	return bolt.Open(path)
}

// parseEndpoint parses a --source/--target URL; the password may come from
// the environment variable env instead of the URL.
func parseEndpoint(flag, raw, env string) (endpoint.Endpoint, error) {
	if strings.TrimSpace(raw) == "" {
		return endpoint.Endpoint{}, usageError{fmt.Errorf("--%s is required, e.g. --%s redis://127.0.0.1:6379", flag, flag)}
	}
	e, err := endpoint.Parse(raw)
	if err != nil {
		return e, usageError{fmt.Errorf("--%s: %w", flag, err)}
	}
	if pw, ok := os.LookupEnv(env); ok && pw != "" {
		e = e.WithCredentials(e.Username, pw)
	}
	return e, nil
}
