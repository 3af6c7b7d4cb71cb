package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
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
	// cpuProfile and memProfile are hidden flags for bench/: pprof files
	// written around the command's run.
	cpuProfile, memProfile string
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
	root.PersistentFlags().StringVar(&a.cpuProfile, "cpuprofile", "", "write a CPU profile of the command to this file")
	root.PersistentFlags().StringVar(&a.memProfile, "memprofile", "", "write a heap profile at the end of the command to this file")
	_ = root.PersistentFlags().MarkHidden("cpuprofile")
	_ = root.PersistentFlags().MarkHidden("memprofile")
	root.AddCommand(a.migrateCmd(), a.resumeCmd(), a.jobsCmd(), a.sampleCmd())
	root.AddCommand(a.validateCmd())
	root.AddCommand(a.analyzeCmd(), a.runCmd(), a.cutoverCmd())
	root.AddCommand(a.serveCmd())
	for _, c := range root.Commands() {
		if c.RunE != nil {
			c.RunE = a.profiled(c.RunE)
		}
	}
	return root
}

// profiled wraps a command's RunE so that --cpuprofile covers the whole run
// and --memprofile is taken at its end, whether the command fails or not.
func (a *app) profiled(run func(*cobra.Command, []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) (err error) {
		if a.cpuProfile != "" {
			f, err := os.Create(a.cpuProfile)
			if err != nil {
				return fmt.Errorf("--cpuprofile: %w", err)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return fmt.Errorf("--cpuprofile: %w", err)
			}
			defer func() {
				pprof.StopCPUProfile()
				if cerr := f.Close(); cerr != nil && err == nil {
					err = fmt.Errorf("--cpuprofile: %w", cerr)
				}
			}()
		}
		if a.memProfile != "" {
			defer func() {
				f, merr := os.Create(a.memProfile)
				if merr == nil {
					runtime.GC()
					merr = pprof.Lookup("allocs").WriteTo(f, 0)
					if cerr := f.Close(); merr == nil {
						merr = cerr
					}
				}
				if merr != nil && err == nil {
					err = fmt.Errorf("--memprofile: %w", merr)
				}
			}()
		}
		return run(cmd, args)
	}
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

// endpoints parses the --source and --target URLs; their passwords may
// come from KVMIGRATE_SOURCE_PASSWORD / KVMIGRATE_TARGET_PASSWORD.
func endpoints(source, target string) (src, dst endpoint.Endpoint, err error) {
	if src, err = parseEndpoint("source", source, "KVMIGRATE_SOURCE_PASSWORD"); err != nil {
		return src, dst, err
	}
	dst, err = parseEndpoint("target", target, "KVMIGRATE_TARGET_PASSWORD")
	return src, dst, err
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
