package shake

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
)

const (
	srcSecret = "src-Secret-1"
	dstSecret = "dst-Secret-2"
)

func testConfig(t *testing.T, mode Mode) Config {
	return Config{Mode: mode,
		Source: mustEndpoint(t, "redis://:"+srcSecret+"@127.0.0.1:17001?cluster=false"),
		Target: mustEndpoint(t, "redis://:"+dstSecret+"@127.0.0.1:17021?cluster=false"),
		Dir:    filepath.Join(t.TempDir(), "shake")}
}

// recorder is a Reporter that keeps every status it gets.
type recorder struct {
	mu    sync.Mutex
	got   []Status
	delay time.Duration
}

func (r *recorder) Report(ctx context.Context, st Status) error {
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, st)
	return nil
}

func (r *recorder) all() []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Status(nil), r.got...)
}

// logBuffer collects what the supervisor logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func withLog(opts RunOptions) (RunOptions, *logBuffer) {
	b := &logBuffer{}
	opts.Logger = slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return opts, b
}

func waitFor(t *testing.T, p *Process, what string, cond func(Status) bool) {
	t.Helper()
	require.Eventually(t, func() bool { return cond(p.Status()) }, 20*time.Second, 5*time.Millisecond, "waiting for %s", what)
}

// wait is p.Wait, failing the test if redis-shake's stand-in outlives
// any reasonable grace period.
func wait(t *testing.T, p *Process) (Result, error) {
	t.Helper()
	type out struct {
		res Result
		err error
	}
	ch := make(chan out, 1)
	go func() {
		res, err := p.Wait()
		ch <- out{res, err}
	}()
	select {
	case o := <-ch:
		return o.res, o.err
	case <-time.After(30 * time.Second):
		t.Fatal("the supervised process did not end within 30s")
		return Result{}, nil
	}
}

func TestSuperviseScanRunsToTheEnd(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	opts, logs := withLog(fakeOptions(t, "scan-full", testConfig(t, ModeScan)))
	opts.Reporter = rec
	opts.ReportEvery = time.Hour // only significant changes, and the end

	res, err := Run(context.Background(), opts)
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	assert.False(t, res.StopRequested)
	assert.Equal(t, StageDone, res.Status.Stage)
	assert.Equal(t, int64(958214), res.Status.Progress.WriteCount)

	got := rec.all()
	require.Len(t, got, 3, "throttled: the first progress, done, and the final report; not 21 status lines")
	assert.Equal(t, PhaseScanning, got[0].Progress.Phase)
	assert.Equal(t, StageInitialSync, got[0].Stage)
	assert.Equal(t, StageDone, got[1].Stage)
	assert.Equal(t, res.Status, got[2], "the last report is the final status")
	assert.Contains(t, logs.String(), `"msg":"all done"`, "records are logged")
}

func TestSuperviseReportsProgressInOrder(t *testing.T) {
	t.Parallel()
	rec := &recorder{delay: 30 * time.Millisecond} // slower than the status lines come
	opts := fakeOptions(t, "scan-full", testConfig(t, ModeScan))
	opts.Reporter = rec
	opts.ReportEvery = time.Millisecond

	res, err := Run(context.Background(), opts)
	require.NoError(t, err)
	got := rec.all()
	require.NotEmpty(t, got)
	for i := 1; i < len(got); i++ {
		assert.GreaterOrEqual(t, got[i].Progress.WriteCount, got[i-1].Progress.WriteCount, "report %d", i)
	}
	assert.Equal(t, res.Status, got[len(got)-1])
}

func TestSuperviseSyncUntilCutover(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	opts := fakeOptions(t, "sync-rdb-aof", testConfig(t, ModeSync))
	opts.Reporter = rec
	p, err := Start(context.Background(), opts)
	require.NoError(t, err)

	waitFor(t, p, "ready for cutover", func(st Status) bool { return st.ReadyForCutover })
	p.Stop()
	res, err := wait(t, p)
	require.NoError(t, err, "stopping is how a sync ends")
	assert.True(t, res.StopRequested)
	assert.False(t, res.Killed)
	assert.Equal(t, 0, res.ExitCode)
	assert.Equal(t, StageDone, res.Status.Stage, "redis-shake logged all done after the signal")
	assert.True(t, res.Status.Stopping)

	var sawRDB, sawReady bool
	for _, st := range rec.all() {
		sawRDB = sawRDB || st.Progress.Phase == PhaseSyncingRDB && st.Progress.RDBBytesTotal == 30<<20
		sawReady = sawReady || st.Stage == StageReplicating && st.ReadyForCutover
	}
	assert.True(t, sawRDB, "RDB progress was reported")
	assert.True(t, sawReady, "readiness was reported")
}

func TestSuperviseStopDuringTheRDB(t *testing.T) {
	t.Parallel()
	p, err := Start(context.Background(), fakeOptions(t, "sync-rdb-aof", testConfig(t, ModeSync)))
	require.NoError(t, err)
	waitFor(t, p, "the RDB phase", func(st Status) bool { return st.Progress.Phase == PhaseSyncingRDB })
	p.Stop()
	p.Stop() // twice is fine
	res, err := wait(t, p)
	require.NoError(t, err)
	assert.Equal(t, StageDone, res.Status.Stage)
	assert.Equal(t, PhaseSyncingRDB, res.Status.Progress.Phase, "it stopped before the AOF")
}

func TestSuperviseKillsAfterTheGracePeriod(t *testing.T) {
	t.Parallel()
	opts, logs := withLog(fakeOptions(t, "valkey-to-redis-sync", testConfig(t, ModeSync)))
	opts.Grace = 300 * time.Millisecond
	p, err := Start(context.Background(), opts)
	require.NoError(t, err)
	waitFor(t, p, "replicating", func(st Status) bool { return st.Stage == StageReplicating })
	p.Stop()
	res, err := wait(t, p)
	require.ErrorIs(t, err, ErrKilled)
	assert.True(t, res.Killed)
	assert.True(t, res.StopRequested)
	assert.Equal(t, -1, res.ExitCode)
	assert.Equal(t, "killed", res.Signal)
	assert.Equal(t, res.Status, p.Status(), "after the end, Status is the final one")
	assert.True(t, res.Status.Stopping, "it had logged the first signal")
	assert.Contains(t, logs.String(), "did not stop in time")
}

func TestSuperviseStopsAScanOnContextCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := Start(ctx, fakeOptions(t, "scan-full", testConfig(t, ModeScan)))
	require.NoError(t, err)
	waitFor(t, p, "progress", func(st Status) bool { return st.Progress.WriteCount > 0 })
	cancel()
	res, err := wait(t, p)
	require.ErrorIs(t, err, ErrStopped)
	assert.ErrorIs(t, err, context.Canceled)
	assert.True(t, res.StopRequested)
	assert.False(t, res.Killed)
	assert.Equal(t, "terminated", res.Signal, "the capture has no signal handler: SIGTERM ends it")
	assert.Equal(t, StageInitialSync, res.Status.Stage)
}

func TestSuperviseFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		capture string
		class   error
		kind    FailureKind
		hint    string
	}{
		{"bad-password", endpoint.ErrAuth, FailureAuth, "WRONGPASS"},
		{"unreachable-target", endpoint.ErrUnreachable, FailureUnreachable, "127.0.0.1:17999"},
		{"valkey-to-redis-scan", ErrRDBVersion, FailureRDBVersion, "DUMP payload version"},
	}
	for _, tt := range tests {
		t.Run(tt.capture+" fails with "+string(tt.kind), func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			opts, logs := withLog(fakeOptions(t, tt.capture, testConfig(t, ModeScan)))
			opts.Reporter = rec
			res, err := Run(context.Background(), opts)
			require.ErrorIs(t, err, tt.class)
			assert.ErrorIs(t, err, ErrFailed)
			assert.Contains(t, err.Error(), "exit status 1")
			assert.Contains(t, err.Error(), tt.hint)
			assert.Equal(t, 1, res.ExitCode)
			assert.Equal(t, StageFailed, res.Status.Stage)
			require.NotNil(t, res.Status.Failure)
			assert.Equal(t, tt.kind, res.Status.Failure.Kind)
			assert.Equal(t, SideTarget, res.Status.Failure.Side)
			require.NotEmpty(t, res.Status.LastErrors)
			assert.Contains(t, res.Status.LastErrors[0], tt.hint)

			got := rec.all()
			require.NotEmpty(t, got)
			assert.Equal(t, res.Status, got[len(got)-1])
			out := logs.String()
			assert.Contains(t, out, tt.hint)
			assert.NotContains(t, out, "8261652f7c0af8cf", "no DUMP payload in the logs")
			assert.NotContains(t, strings.Join(res.Status.LastErrors, ""), "8261652f7c0af8cf", "nor in the job record")
		})
	}
}

// writeProbe writes a shell script that stands where redis-shake would,
// for what no capture shows: the environment, the configuration file as
// redis-shake receives it, odd exits.
func writeProbe(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "probe.sh")
	require.NoError(t, os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755))
	return path
}

func TestSuperviseHandsTheConfigThroughAPipeWithAnEmptyEnvironment(t *testing.T) {
	t.Setenv("KVMIGRATE_PARENT_ONLY", "parent-env-value")
	cfg := testConfig(t, ModeScan)
	opts, logs := withLog(RunOptions{
		Config: cfg,
		// The configuration can be read once (a pipe): keep it, print it, and
		// print the source password bare, which only the known-secret mask
		// can catch.
		Binary: writeProbe(t, `echo "args: $*"; /usr/bin/env; conf=$(/bin/cat "$1"); echo "$conf"; `+
			`echo "$conf" | /bin/sed -n 's/^password = "\(.*\)"$/bare \1 here/p'; exit 3`),
		Env: []string{"ONLY_THIS=1"},
	})
	res, err := Run(context.Background(), opts)

	var f *Failure
	require.ErrorAs(t, err, &f, "exit 3 without an error in the log is a failure")
	assert.Equal(t, FailureExit, f.Kind)
	assert.Equal(t, 3, res.ExitCode)
	out := logs.String()
	assert.Contains(t, out, "args: /dev/fd/3")
	assert.Contains(t, out, "[scan_reader]", "the configuration came through the pipe")
	assert.Contains(t, out, "ONLY_THIS=1")
	assert.NotContains(t, out, "parent-env-value", "kvmigrate's environment is not inherited")
	assert.NotContains(t, out, srcSecret, "the passwords printed by the child are masked")
	assert.NotContains(t, out, dstSecret)
	assert.Contains(t, out, `password = \"xxxxx\"`)
	assert.Contains(t, out, "bare xxxxx here")

	// Nothing in redis-shake's directory holds a password.
	require.NoError(t, filepath.WalkDir(cfg.Dir, func(path string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if !d.IsDir() {
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.NotContains(t, string(data), srcSecret, path)
		}
		return nil
	}))
	fi, err := os.Stat(cfg.Dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm(), "redis-shake's directory is private")
}

func TestSuperviseOddEndings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		mode  Mode
		probe string
		kind  FailureKind
		class error
		hint  string
	}{
		{"a sync that exits by itself is a failure", ModeSync, "exit 0", FailureExit, ErrFailed, "stopped replicating by itself"},
		{"a scan that exits 0 without all done is a failure", ModeScan, "exit 0", FailureExit, ErrFailed, `never logged "all done"`},
		{"a Go panic on stderr is a crash", ModeScan,
			`echo 'panic: runtime error: invalid memory address' >&2; echo 'goroutine 1 [running]:' >&2; exit 2`,
			FailureCrash, ErrCrashed, "invalid memory address"},
		{"output on stderr is kept as the last errors", ModeScan, `echo 'cannot open shake.log: permission denied' >&2; exit 1`,
			FailureExit, ErrFailed, "permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := Run(context.Background(), RunOptions{Config: testConfig(t, tt.mode), Binary: writeProbe(t, tt.probe)})
			require.ErrorIs(t, err, tt.class)
			assert.ErrorIs(t, err, ErrFailed)
			assert.Contains(t, err.Error(), tt.hint)
			require.NotNil(t, res.Status.Failure)
			assert.Equal(t, tt.kind, res.Status.Failure.Kind)
			assert.Equal(t, StageFailed, res.Status.Stage)
		})
	}
}

func TestStartRefuses(t *testing.T) {
	t.Run("an invalid configuration", func(t *testing.T) {
		cfg := testConfig(t, ModeScan)
		cfg.Dir = ""
		_, err := Start(context.Background(), RunOptions{Config: cfg, Binary: "/bin/true"})
		assert.ErrorIs(t, err, ErrInvalidConfig)
	})
	t.Run("when no binary is found", func(t *testing.T) {
		t.Setenv(PathEnv, filepath.Join(t.TempDir(), "missing"))
		_, err := Start(context.Background(), RunOptions{Config: testConfig(t, ModeScan)})
		assert.ErrorIs(t, err, ErrBinaryNotFound)
	})
	t.Run("a binary that cannot run", func(t *testing.T) {
		dir := t.TempDir()
		_, err := Start(context.Background(), RunOptions{Config: testConfig(t, ModeScan), Binary: dir})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "start redis-shake")
		assert.False(t, errors.Is(err, ErrFailed))
	})
}
