package workflow_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/sample"
	"github.com/kvmigrate/kvmigrate/internal/shake"
	"github.com/kvmigrate/kvmigrate/internal/shake/shaketest"
	"github.com/kvmigrate/kvmigrate/internal/validation"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// The redis-shake tests run shaketest's stand-in, which only replays real
// redis-shake logs: it copies NO DATA. They check what the workflow makes
// of redis-shake (job statuses, stages, progress, the cutover and stop
// requests, failures), against real servers for the topology and the
// validation; never the data that redis-shake would have copied.
func TestMain(m *testing.M) { shaketest.Main(m) }

// shakeWatcher records what a redis-shake run shows (an Observer with the
// ShakeObserver methods).
type shakeWatcher struct {
	mu      sync.Mutex
	started []string
	seen    []shake.Status
	ended   []workflow.ShakeEnd
	jobID   string
}

func (w *shakeWatcher) Planned(string, []workflow.ShardPlan) {}
func (w *shakeWatcher) Progress(string, int, job.Counters)   {}
func (w *shakeWatcher) ShardDone(string, int)                {}
func (w *shakeWatcher) ShakeStatus(_ string, st shake.Status) {
	w.mu.Lock()
	w.seen = append(w.seen, st)
	w.mu.Unlock()
}
func (w *shakeWatcher) ShakeStarted(id, mode string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.jobID, w.started = id, append(w.started, mode)
}

func (w *shakeWatcher) ShakeEnded(_ string, end workflow.ShakeEnd) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ended = append(w.ended, end)
}

func (w *shakeWatcher) id() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.jobID
}

func (w *shakeWatcher) statuses() []shake.Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]shake.Status(nil), w.seen...)
}

// shakeOptions runs the stand-in replaying capture.
func shakeOptions(t *testing.T, capture string) workflow.ShakeOptions {
	return workflow.ShakeOptions{
		Binary: shaketest.Binary(t, capture), Dir: filepath.Join(t.TempDir(), "shake"),
		Poll: 20 * time.Millisecond, ReportEvery: 20 * time.Millisecond, Grace: 5 * time.Second,
	}
}

// waitJob waits until the job that w watches satisfies cond.
func waitJob(t *testing.T, s job.Store, w *shakeWatcher, what string, cond func(job.Job) bool) job.Job {
	t.Helper()
	var j job.Job
	require.Eventually(t, func() bool {
		id := w.id()
		if id == "" {
			return false
		}
		var err error
		j, err = s.Get(context.Background(), id)
		return err == nil && cond(j)
	}, 30*time.Second, 10*time.Millisecond, "waiting for %s; job: %+v", what, j)
	return j
}

type runResult struct {
	out workflow.RunOutcome
	err error
}

func TestShakeScanRunsToTheEndAndRecordsItsProgress(t *testing.T) {
	t.Parallel()
	e := kvtest.Require(t, "redis-7.0")
	src, dst := kvtest.StartServer(t, e), kvtest.StartServer(t, e)
	store := record(openStore(t))
	w := &shakeWatcher{}
	l := &workflow.Local{Store: store, Observer: w}
	so := shakeOptions(t, "scan-full")

	out, err := l.Migrate(context.Background(), workflow.Request{
		Source: parse(t, src.URL()), Target: parse(t, dst.URL()),
		Mode: job.ModeRedisShake, Shake: so,
	})
	require.NoError(t, err)
	j := out.Job
	assert.Equal(t, job.StatusSucceeded, j.Status)
	assert.Equal(t, job.ModeRedisShake, j.Mode)
	assert.Equal(t, "copied", j.Stage, "migrate has no validation step")
	assert.Equal(t, int64(958214), j.Progress.Keys, "the capture's last write_count")
	assert.Equal(t, []job.Status{job.StatusPending, job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning, job.StatusSucceeded}, store.of(j.ID))
	assert.Equal(t, []string{job.ModeRedisShake}, w.started)
	assert.Equal(t, []workflow.ShakeEnd{workflow.ShakeFinished}, w.ended)

	var scanning bool
	for _, st := range w.statuses() {
		scanning = scanning || st.Progress.Phase == shake.PhaseScanning && st.Progress.ScanPercent > 0 && st.Progress.WriteOPS > 0
	}
	assert.True(t, scanning, "the observer saw the scan's progress with ops/s")
	entries, err := os.ReadDir(so.Dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "redis-shake's directory (its log, a sync's RDB and AOF) is removed")
}

func TestShakeSyncCutsOverThenValidates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	// The stand-in copies nothing: the same keys on both sides make a
	// target that validates.
	for _, s := range []*kvtest.Server{src, dst} {
		c := s.Client(t)
		for _, k := range []string{"a", "b", "c"} {
			require.NoError(t, c.Do(ctx, c.B().Set().Key(k).Value("v-"+k).Build()).Error())
		}
	}
	store := record(openStore(t))
	w := &shakeWatcher{}
	l := &workflow.Local{Store: store, Observer: w}
	done := make(chan runResult, 1)
	go func() {
		out, err := l.Run(ctx, workflow.RunRequest{
			Request: workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL()),
				Mode: job.ModeRedisShakeSync, Shake: shakeOptions(t, "sync-rdb-aof")},
			Validation: validation.Options{Sample: 50},
		})
		done <- runResult{out, err}
	}()

	j := waitJob(t, store, w, "ready for cutover", func(j job.Job) bool { return j.Progress.ReadyForCutover })
	assert.Equal(t, job.StatusRunning, j.Status)
	assert.Equal(t, string(shake.StageReplicating), j.Stage)
	assert.Equal(t, "syncing_aof", j.Progress.Phase)
	_, err := workflow.RequestCutover(ctx, store, j.ID, false)
	require.NoError(t, err)

	r := <-done
	require.NoError(t, r.err)
	assert.Equal(t, job.StatusSucceeded, r.out.Job.Status)
	assert.Equal(t, "validated", r.out.Job.Stage)
	assert.True(t, r.out.Validated)
	assert.Empty(t, r.out.Job.Request, "the request is cleared once done")
	assert.Equal(t, []job.Status{job.StatusPending, job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning,
		job.StatusValidating, job.StatusSucceeded}, store.of(j.ID))
	assert.Equal(t, []workflow.ShakeEnd{workflow.ShakeCutOver}, w.ended)
	_, err = store.Report(ctx, j.ID, job.ReportValidation)
	assert.NoError(t, err, "the validation report is stored")

	var rdb bool
	for _, st := range w.statuses() {
		rdb = rdb || st.Stage == shake.StageInitialSync && st.Progress.RDBBytesTotal == 30<<20 && st.Progress.RDBBytesDone > 0
	}
	assert.True(t, rdb, "the RDB bytes of the initial sync were shown")
}

func TestShakeSyncCutoverValidatesAndFailsAnIncompleteTarget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	_, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 5})
	require.NoError(t, err)
	store := openStore(t)
	w := &shakeWatcher{}
	l := &workflow.Local{Store: store, Observer: w}
	done := make(chan runResult, 1)
	go func() {
		out, err := l.Run(ctx, workflow.RunRequest{
			Request: workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL()),
				Mode: job.ModeRedisShakeSync, Shake: shakeOptions(t, "sync-rdb-aof")},
			Validation: validation.Options{Sample: 50},
		})
		done <- runResult{out, err}
	}()
	j := waitJob(t, store, w, "replicating", func(j job.Job) bool { return j.Stage == string(shake.StageReplicating) })
	_, err = workflow.RequestCutover(ctx, store, j.ID, false)
	require.NoError(t, err)
	r := <-done
	require.ErrorIs(t, r.err, workflow.ErrValidationFailed, "the stand-in copied nothing: the validation must see it")
	assert.Equal(t, job.StatusFailed, r.out.Job.Status)
	assert.Contains(t, r.out.Job.Error, "validation")
}

func TestShakeSyncStopRequestEndsTheJobStopped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := kvtest.Require(t, "valkey-8.0")
	src, dst := kvtest.StartServer(t, e), kvtest.StartServer(t, e)
	store := record(openStore(t))
	w := &shakeWatcher{}
	l := &workflow.Local{Store: store, Observer: w}
	done := make(chan runResult, 1)
	go func() {
		out, err := l.Migrate(ctx, workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL()),
			Mode: job.ModeRedisShakeSync, Shake: shakeOptions(t, "sync-rdb-aof")})
		done <- runResult{workflow.RunOutcome{Outcome: out}, err}
	}()
	j := waitJob(t, store, w, "the initial sync", func(j job.Job) bool { return j.Progress.Phase == string(shake.PhaseSyncingRDB) })

	_, err := workflow.RequestCutover(ctx, store, j.ID, false)
	require.ErrorIs(t, err, workflow.ErrNotReady, "a cutover during the initial sync needs force")
	assert.ErrorIs(t, err, job.ErrConflict)
	_, err = workflow.RequestStop(ctx, store, j.ID)
	require.NoError(t, err)

	r := <-done
	require.ErrorIs(t, r.err, workflow.ErrStopped)
	assert.Equal(t, job.StatusCancelled, r.out.Job.Status)
	assert.Contains(t, r.out.Job.Error, "without a cutover")
	assert.NotContains(t, store.of(j.ID), job.StatusValidating)
	assert.Equal(t, []workflow.ShakeEnd{workflow.ShakeStopped}, w.ended)

	_, err = workflow.RequestCutover(ctx, store, j.ID, true)
	assert.ErrorIs(t, err, job.ErrConflict, "a stopped job cannot be cut over")
}

func TestShakeFailureFailsTheJobWithTheReason(t *testing.T) {
	t.Parallel()
	e := kvtest.Require(t, "redis-7.0")
	src, dst := kvtest.StartServer(t, e), kvtest.StartServer(t, e)
	store := openStore(t)
	l := &workflow.Local{Store: store}
	out, err := l.Migrate(context.Background(), workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL()),
		Mode: job.ModeRedisShake, Shake: shakeOptions(t, "bad-password")})
	require.ErrorIs(t, err, endpoint.ErrAuth)
	assert.ErrorIs(t, err, shake.ErrFailed)
	assert.Equal(t, job.StatusFailed, out.Job.Status)
	assert.Equal(t, "failed", out.Job.Stage)
	assert.Contains(t, out.Job.Error, "password", "the reason is recorded")
}

func TestShakeScanInterruptedEndsStopped(t *testing.T) {
	t.Parallel()
	e := kvtest.Require(t, "redis-7.0")
	src, dst := kvtest.StartServer(t, e), kvtest.StartServer(t, e)
	store := openStore(t)
	w := &shakeWatcher{}
	l := &workflow.Local{Store: store, Observer: w}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan runResult, 1)
	go func() {
		out, err := l.Migrate(ctx, workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL()),
			Mode: job.ModeRedisShake, Shake: shakeOptions(t, "scan-full")})
		done <- runResult{workflow.RunOutcome{Outcome: out}, err}
	}()
	waitJob(t, store, w, "progress", func(j job.Job) bool { return j.Progress.Keys > 0 })
	cancel()
	r := <-done
	require.ErrorIs(t, r.err, context.Canceled)
	assert.ErrorIs(t, r.err, workflow.ErrStopped)
	assert.Equal(t, job.StatusCancelled, r.out.Job.Status)
	assert.Contains(t, r.out.Job.Error, "cannot resume")
}

// TestShakeConfigFromTheJobAndTheTopology captures the configuration that
// redis-shake gets for a job with options, from a cluster found by asking
// the servers (the URL does not say).
func TestShakeConfigFromTheJobAndTheTopology(t *testing.T) {
	t.Parallel()
	const pw = "cl-Pw-42"
	e := kvtest.Require(t, "valkey-8.0")
	cl := kvtest.StartCluster(t, e, 3, kvtest.WithPassword(pw))
	dst := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	captured := filepath.Join(t.TempDir(), "shake.toml")
	wrapper := filepath.Join(t.TempDir(), "redis-shake")
	script := "#!/bin/sh\ncat \"$1\" > '" + captured + "'\nexec '" + shaketest.Binary(t, "scan-full") + "' '" + captured + "'\n"
	require.NoError(t, os.WriteFile(wrapper, []byte(script), 0o700))

	so := shakeOptions(t, "scan-full")
	so.Binary = wrapper
	store := openStore(t)
	l := &workflow.Local{Store: store}
	out, err := l.Migrate(context.Background(), workflow.Request{
		Source: parse(t, cl.Nodes[0].URL()), Target: parse(t, dst.URL()),
		Options: job.Options{Match: "user:[0-9]*", OnConflict: "skip", MaxOps: 2500, Strategy: "commands"},
		Mode:    job.ModeRedisShake, Shake: so,
	})
	require.NoError(t, err)
	assert.Equal(t, job.StatusSucceeded, out.Job.Status)

	raw, err := os.ReadFile(captured)
	require.NoError(t, err)
	var conf struct {
		ScanReader struct {
			Cluster  bool   `toml:"cluster"`
			Address  string `toml:"address"`
			Password string `toml:"password"`
		} `toml:"scan_reader"`
		RedisWriter struct {
			Cluster bool   `toml:"cluster"`
			Address string `toml:"address"`
		} `toml:"redis_writer"`
		Filter struct {
			AllowKeyRegex []string `toml:"allow_key_regex"`
		} `toml:"filter"`
		Advanced struct {
			Behavior string `toml:"rdb_restore_command_behavior"`
			MaxQPS   int    `toml:"target_redis_max_qps"`
			MaxBulk  *int64 `toml:"target_redis_proto_max_bulk_len"`
		} `toml:"advanced"`
	}
	_, err = toml.Decode(string(raw), &conf)
	require.NoError(t, err)
	assert.True(t, conf.ScanReader.Cluster, "the source is a cluster: the servers said so")
	assert.Equal(t, cl.Nodes[0].Addr(), conf.ScanReader.Address)
	assert.Equal(t, pw, conf.ScanReader.Password, "credentials come from the endpoint")
	assert.False(t, conf.RedisWriter.Cluster)
	assert.Equal(t, dst.Addr(), conf.RedisWriter.Address)
	assert.Equal(t, []string{`(?s)^user:[0-9].*$`}, conf.Filter.AllowKeyRegex)
	assert.Equal(t, "skip", conf.Advanced.Behavior)
	assert.Equal(t, 2500, conf.Advanced.MaxQPS)
	require.NotNil(t, conf.Advanced.MaxBulk, "--strategy commands: no RESTORE")
	assert.Zero(t, *conf.Advanced.MaxBulk)
}

func TestCheckShakeRefusesBeforeAnythingStarts(t *testing.T) {
	bin := shaketest.Binary(t, "scan-full")
	req := func(src, dst string, o job.Options) workflow.Request {
		return workflow.Request{Source: parse(t, src), Target: parse(t, dst), Options: o, Mode: job.ModeRedisShake,
			Shake: workflow.ShakeOptions{Binary: bin}}
	}
	ok := req("redis://127.0.0.1:6379", "valkey://127.0.0.1:6380", job.Options{Match: "a*", OnConflict: "skip"})
	require.NoError(t, workflow.CheckShake(ok))

	tests := []struct {
		name  string
		req   workflow.Request
		field string
	}{
		{"a type filter redis-shake does not have", req("redis://h:1", "redis://h:2", job.Options{Type: "hash"}), "type"},
		{"one database to another", req("redis://h:1/1", "redis://h:2/2", job.Options{}), "target.db"},
		{"TLS options redis-shake cannot use", req("rediss://h:1?tls_ca=/ca.pem", "redis://h:2", job.Options{}), "source.tls"},
		{"an unknown conflict policy", req("redis://h:1", "redis://h:2", job.Options{OnConflict: "merge"}), "on-conflict"},
		{"a pattern that is not UTF-8", req("redis://h:1", "redis://h:2", job.Options{Match: "a\xff*"}), "match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := workflow.CheckShake(tt.req)
			require.ErrorIs(t, err, shake.ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.field)
		})
	}
	t.Run("a missing binary names the three places", func(t *testing.T) {
		t.Setenv(shake.PathEnv, "")
		t.Setenv("HOME", t.TempDir())
		if _, err := os.Stat(shake.SystemPath); err == nil {
			t.Skip(shake.SystemPath + " exists on this machine")
		}
		r := ok
		r.Shake.Binary = ""
		err := workflow.CheckShake(r)
		require.ErrorIs(t, err, shake.ErrBinaryNotFound)
		for _, place := range []string{"$" + shake.PathEnv, shake.SystemPath, ".kvmigrate/bin/redis-shake"} {
			assert.Contains(t, err.Error(), place)
		}
	})
}

func TestRequestCutoverRefusals(t *testing.T) {
	ctx := context.Background()
	store := job.NewMemory()
	mk := func(mode string, to ...job.Status) string {
		j := job.Job{ID: job.NewID(), Kind: job.KindMigration, Mode: mode, Source: "redis://h:1", Target: "redis://h:2"}
		require.NoError(t, store.Create(ctx, j))
		for _, s := range to {
			_, err := store.Transition(ctx, j.ID, s, nil)
			require.NoError(t, err)
		}
		return j.ID
	}
	running := []job.Status{job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning}

	_, err := workflow.RequestCutover(ctx, store, mk(job.ModeRedisShake, running...), false)
	assert.ErrorIs(t, err, job.ErrInvalid, "a scan has no cutover")
	_, err = workflow.RequestCutover(ctx, store, mk(job.ModeCommand, running...), false)
	assert.ErrorIs(t, err, job.ErrInvalid)
	_, err = workflow.RequestCutover(ctx, store, mk(job.ModeRedisShakeSync, job.StatusAnalyzing), true)
	assert.ErrorIs(t, err, job.ErrConflict, "not running yet")
	_, err = workflow.RequestCutover(ctx, store, "nope", false)
	assert.ErrorIs(t, err, job.ErrNotFound)

	id := mk(job.ModeRedisShakeSync, running...)
	_, err = store.Update(ctx, id, func(j *job.Job) { j.Stage = string(shake.StageReplicating) })
	require.NoError(t, err)
	j, err := workflow.RequestCutover(ctx, store, id, false)
	require.NoError(t, err)
	assert.Equal(t, job.RequestCutover, j.Request)
	_, err = workflow.RequestCutover(ctx, store, id, false)
	assert.NoError(t, err, "asking twice is fine")
	j, err = workflow.RequestStop(ctx, store, id)
	require.NoError(t, err)
	assert.Equal(t, job.RequestStop, j.Request, "a stop overrides a cutover not yet done")
	_, err = workflow.RequestCutover(ctx, store, id, true)
	assert.ErrorIs(t, err, job.ErrConflict, "no cutover once a stop is asked")
}

// TestControlSocketCarriesRequests asks for a cutover through the control
// socket, as kvmigrate cutover does from another process.
func TestControlSocketCarriesRequests(t *testing.T) {
	ctx := context.Background()
	store := job.NewMemory()
	path := filepath.Join(t.TempDir(), "jobs.db.ctl")
	require.NoError(t, os.WriteFile(path, nil, 0o600))
	_, err := workflow.ListenControl(path, store, nil)
	require.Error(t, err, "a file that is not a socket is never removed")
	require.NoError(t, os.Remove(path))

	_, err = workflow.SendRequest(ctx, path, "x", job.RequestCutover, false, false, nil)
	require.ErrorIs(t, err, workflow.ErrNoProcess)

	srv, err := workflow.ListenControl(path, store, nil)
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "only the user may ask")

	j := job.Job{ID: job.NewID(), Kind: job.KindMigration, Mode: job.ModeRedisShakeSync, Source: "redis://h:1", Target: "redis://h:2"}
	require.NoError(t, store.Create(ctx, j))
	for _, s := range []job.Status{job.StatusAnalyzing, job.StatusAnalyzed, job.StatusRunning} {
		_, err := store.Transition(ctx, j.ID, s, func(j *job.Job) { j.Stage = string(shake.StageInitialSync) })
		require.NoError(t, err)
	}
	_, err = workflow.SendRequest(ctx, path, j.ID, job.RequestCutover, false, true, nil)
	require.ErrorIs(t, err, workflow.ErrNotReady, "the refusal crosses the socket")
	_, err = workflow.SendRequest(ctx, path, "missing", job.RequestStop, false, false, nil)
	require.ErrorIs(t, err, job.ErrNotFound)

	// The run (here: this test) sees the request in the record and ends the job.
	go func() {
		for {
			cur, _ := store.Get(ctx, j.ID)
			if cur.Request == job.RequestCutover {
				_, _ = store.Transition(ctx, j.ID, job.StatusSucceeded, func(j *job.Job) { j.Stage, j.Request = "validated", "" })
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var accepted job.Job
	final, err := workflow.SendRequest(ctx, path, j.ID, job.RequestCutover, true, true, func(j job.Job) { accepted = j })
	require.NoError(t, err)
	assert.Equal(t, job.RequestCutover, accepted.Request)
	assert.Equal(t, job.StatusSucceeded, final.Status, "the answer is the job as it ended")
	assert.Equal(t, "validated", final.Stage)

	require.NoError(t, srv.Close())
	_, err = os.Stat(path)
	assert.ErrorIs(t, err, os.ErrNotExist, "the socket is removed")
	_, err = workflow.SendRequest(ctx, path, j.ID, job.RequestStop, false, false, nil)
	assert.ErrorIs(t, err, workflow.ErrNoProcess)
}
