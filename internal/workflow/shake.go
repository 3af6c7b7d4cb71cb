package workflow

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/shake"
	"github.com/kvmigrate/kvmigrate/internal/topology"
	"github.com/kvmigrate/kvmigrate/internal/transfer"
)

// The redis-shake modes (Request.Mode job.ModeRedisShake and
// job.ModeRedisShakeSync) run redis-shake under internal/shake's supervisor
// instead of copying chunks: locally as a child process of the CLI, on AWS
// in shake-task (Local.ShakeStep). Both write redis-shake's stage and
// progress into the job record (job.Job.Stage, job.Job.Progress) and watch
// that record for an operator's request (job.Job.Request, set by
// RequestCutover or RequestStop): a cutover stops redis-shake gracefully,
// waits for it to exit, and lets the validation run.

// DefaultPoll is how often a redis-shake run reads its job record for a
// request between its own progress writes (which see requests too).
const DefaultPoll = time.Second

// ShakeOptions shape a redis-shake run.
type ShakeOptions struct {
	// Binary is redis-shake (default: shake.FindBinary).
	Binary string
	// Env is redis-shake's whole environment (default: none; see
	// shake.RunOptions.Env).
	Env []string
	// Dir holds redis-shake's working directory, Dir/<job id>: its log, and
	// in sync mode the source's RDB and AOF. It is removed after the run.
	// Default: os.TempDir()/kvmigrate-shake.
	Dir string
	// PreferReplica makes sync mode read from a replica of each source
	// master.
	PreferReplica bool
	// Poll: see DefaultPoll.
	Poll time.Duration
	// Grace, ReportEvery and ReadyAfter: see shake.RunOptions (defaults
	// there).
	Grace       time.Duration
	ReportEvery time.Duration
	ReadyAfter  int
}

// ShakeObserver is an Observer that also shows redis-shake runs (the CLI's
// progress bars implement it). Its methods are called from the goroutine
// that reports the run's status, one at a time.
type ShakeObserver interface {
	ShakeStarted(jobID, mode string)
	ShakeStatus(jobID string, st shake.Status)
	ShakeEnded(jobID string, end ShakeEnd)
}

// ShakeEnd says how a redis-shake run ended.
type ShakeEnd string

const (
	ShakeFinished ShakeEnd = "finished" // scan mode: redis-shake copied everything and exited
	ShakeCutOver  ShakeEnd = "cut_over" // sync mode: stopped on a cutover request
	ShakeStopped  ShakeEnd = "stopped"  // stopped (request, Ctrl-C, SIGTERM) before it finished or was cut over
	ShakeFailed   ShakeEnd = "failed"   // redis-shake failed, or could not start
)

// ShakeOutcome is the end of a redis-shake run.
type ShakeOutcome struct {
	Job    job.Job
	Result shake.Result
	End    ShakeEnd
}

// ErrStopped: a run was stopped on request (job.RequestStop, Ctrl-C, a
// stop signal) before it finished; the job ends stopped.
var ErrStopped = errors.New("stopped before the end")

// ErrNotReady: a cutover was requested before the sync replicates.
var ErrNotReady = errors.New("not ready for cutover")

// IsShake reports whether mode is one of the redis-shake modes.
func IsShake(mode string) bool {
	return mode == job.ModeRedisShake || mode == job.ModeRedisShakeSync
}

// CheckShake checks a redis-shake run before anything starts: the binary
// can be found (otherwise shake.ErrBinaryNotFound, whose message names the
// three places it is looked for) and the request maps onto a valid
// redis-shake configuration (otherwise errors wrapping
// shake.ErrInvalidConfig). Cluster mode is resolved later from the
// servers; here a URL without cluster= counts as standalone.
func CheckShake(req Request) error {
	if !IsShake(req.Mode) {
		return fmt.Errorf("mode %q is not a redis-shake mode (%s, %s): %w", req.Mode, job.ModeRedisShake, job.ModeRedisShakeSync, job.ErrInvalid)
	}
	if req.Shake.Binary == "" {
		if _, err := shake.FindBinary(); err != nil {
			return err
		}
	}
	on := func(e endpoint.Endpoint) bool { return e.Cluster == endpoint.ClusterOn }
	_, err := shakeConfig(req, on(req.Source), on(req.Target), string(filepath.Separator)+"kvmigrate-check")
	return err
}

// shakeConfig maps a request onto redis-shake's configuration: --match
// (a Redis glob) becomes filter.allow_key_regex; --on-conflict replace
// (the default) and skip become rdb_restore_command_behavior rewrite and
// skip; --max-ops caps the commands per second written to the target;
// --strategy commands makes redis-shake write plain commands instead of
// RESTORE. --type has no redis-shake equivalent and is refused; the other
// command-mode options (parallel, concurrency, chunk keys) do not apply.
func shakeConfig(req Request, srcCluster, dstCluster bool, dir string) (shake.Config, error) {
	o := req.Options
	var errs []error
	bad := func(field, problem string) { errs = append(errs, &shake.FieldError{Field: field, Problem: problem}) }
	src, dst := req.Source, req.Target
	src.Cluster, dst.Cluster = clusterMode(srcCluster), clusterMode(dstCluster)
	cfg := shake.Config{
		Mode: shake.Mode(req.Mode), Source: src, Target: dst, Dir: dir,
		PreferReplica: req.Shake.PreferReplica && req.Mode == job.ModeRedisShakeSync,
		TargetMaxQPS:  o.MaxOps,
	}
	switch transfer.Conflict(o.OnConflict) {
	case "", transfer.ConflictReplace:
		cfg.OnExisting = shake.ExistingReplace
	case transfer.ConflictSkip:
		cfg.OnExisting = shake.ExistingSkip
	default:
		bad("on-conflict", fmt.Sprintf("%q: use replace or skip", o.OnConflict))
	}
	switch transfer.Strategy(o.Strategy) {
	case "", transfer.StrategyAuto, transfer.StrategyDump:
	case transfer.StrategyCommands:
		cfg.RestoreAsCommands = true
	default:
		bad("strategy", fmt.Sprintf("%q: use auto, dump or commands", o.Strategy))
	}
	if o.Type != "" {
		bad("type", "redis-shake cannot select keys by type: leave --type out, or use command mode")
	}
	if o.Match != "" && o.Match != "*" {
		re, err := shake.GlobRegexp(o.Match)
		if err != nil {
			bad("match", err.Error())
		} else {
			cfg.Filter.AllowKeyRegex = []string{re}
		}
	}
	if _, err := cfg.TOML(); err != nil {
		errs = append(errs, err)
	}
	return cfg, errors.Join(errs...)
}

func clusterMode(on bool) endpoint.ClusterMode {
	if on {
		return endpoint.ClusterOn
	}
	return endpoint.ClusterOff
}

// runShake is the copy step of a local redis-shake job, once the analysis
// step has passed: the job goes analyzed → running while redis-shake runs,
// then (validating →) succeeded, or ends stopped/failed.
func (l *Local) runShake(ctx context.Context, id string, s *session, req Request) (Outcome, error) {
	started := time.Now()
	out := Outcome{Source: s.sinfo, Target: s.dinfo}
	if _, err := l.Store.Transition(ctx, id, job.StatusAnalyzed, func(j *job.Job) { j.Stage = "configured" }); err != nil {
		return l.failed(ctx, id, err)
	}
	so, err := l.shake(ctx, id, req, s.sinfo, s.dinfo)
	out.Job, out.Elapsed = so.Job, time.Since(started)
	if err != nil {
		return out, err
	}
	bg := context.WithoutCancel(ctx)
	stage := so.Job.Stage
	if s.validate != nil {
		if _, err := l.Store.Transition(bg, id, job.StatusValidating, func(j *job.Job) { j.Stage = "validating" }); err != nil {
			return out, err
		}
		if verr := s.validate(ctx, id, s); verr != nil {
			o, err := l.failed(bg, id, fmt.Errorf("validation: %w", verr))
			out.Job = o.Job
			return out, err
		}
		stage = "validated"
	}
	out.Job, err = l.Store.Transition(bg, id, job.StatusSucceeded, func(j *job.Job) { j.Stage = stage })
	return out, err
}

// Resolver returns the endpoints of job j with their credentials (which
// job records never hold: see phase.JobEndpoints and lambdafn's
// SecretResolver).
type Resolver func(ctx context.Context, j job.Job) (src, dst endpoint.Endpoint, err error)

// ShakeStep runs the redis-shake step of migration job id as shake-task
// does on Fargate: the job must be analyzed (or running, for a task that
// starts again); it resolves the job's endpoints, connects to them to learn
// their topology, runs redis-shake with the job's options, and records the
// end. After ShakeFinished and ShakeCutOver the job stays running, for the
// validation step; a stopped or failed run ends the job stopped or failed,
// and the error says why (ErrStopped, or the failure).
func (l *Local) ShakeStep(ctx context.Context, id string, resolve Resolver, so ShakeOptions) (ShakeOutcome, error) {
	// The record is read and written without ctx: a run stopped this early
	// (a task whose execution is gone) still ends its job as stopped.
	j, err := l.Store.Get(context.WithoutCancel(ctx), id)
	if err != nil {
		return ShakeOutcome{End: ShakeFailed}, fmt.Errorf("job %s: %w", id, err)
	}
	switch {
	case j.Kind != job.KindMigration || !IsShake(j.Mode):
		return ShakeOutcome{Job: j, End: ShakeFailed}, fmt.Errorf("job %s is a %s %s job, not a redis-shake migration: %w", id, j.Mode, j.Kind, job.ErrInvalid)
	case j.Status != job.StatusAnalyzed && j.Status != job.StatusRunning:
		return ShakeOutcome{Job: j, End: ShakeFailed}, fmt.Errorf("job %s is %s: redis-shake runs after the analysis: %w", id, j.Status, job.ErrConflict)
	}
	fail := func(err error) (ShakeOutcome, error) { return l.notStarted(ctx, id, err) }
	src, dst, err := resolve(ctx, j)
	if err != nil {
		return fail(err)
	}
	req := Request{Source: src, Target: dst, Mode: j.Mode, Options: j.Options, Shake: so}
	sc, dc, err := dial(ctx, req)
	if err != nil {
		return fail(err)
	}
	sinfo, serr := topology.Discover(ctx, sc)
	dinfo, derr := topology.Discover(ctx, dc)
	sc.Close()
	dc.Close()
	if serr != nil {
		return fail(fmt.Errorf("source %s: %w", src, serr))
	}
	if derr != nil {
		return fail(fmt.Errorf("target %s: %w", dst, derr))
	}
	return l.shake(ctx, id, req, sinfo, dinfo)
}

// shake runs redis-shake for job id (analyzed or running) and records how
// it ended; see ShakeStep.
func (l *Local) shake(ctx context.Context, id string, req Request, sinfo, dinfo topology.Info) (ShakeOutcome, error) {
	bg := context.WithoutCancel(ctx)
	so := req.Shake
	parent := so.Dir
	if parent == "" {
		parent = filepath.Join(os.TempDir(), "kvmigrate-shake")
	}
	parent, err := filepath.Abs(parent)
	if err != nil {
		return l.notStarted(ctx, id, fmt.Errorf("redis-shake's directory: %w", err))
	}
	dir := filepath.Join(parent, id)
	cfg, err := shakeConfig(req, sinfo.Cluster, dinfo.Cluster, dir)
	if err != nil {
		return l.notStarted(ctx, id, err)
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			l.log().Warn("remove redis-shake's directory", "job", id, "dir", dir, "err", err)
		}
	}()

	begin := func(j *job.Job) {
		j.Stage, j.Progress, j.Request, j.Error = string(shake.StageInitialSync), job.Progress{}, "", ""
	}
	if ctx.Err() != nil {
		return l.notStarted(ctx, id, context.Cause(ctx))
	}
	j, err := l.Store.Get(bg, id)
	if err == nil && j.Status == job.StatusRunning {
		_, err = l.Store.Update(bg, id, begin)
	} else if err == nil {
		_, err = l.Store.Transition(bg, id, job.StatusRunning, begin)
	}
	if err != nil {
		return l.notStarted(ctx, id, err)
	}

	obs, _ := l.Observer.(ShakeObserver)
	r := &shakeRun{l: l, id: id, mode: cfg.Mode, obs: obs, requests: make(chan string, 1)}
	sources := 1
	if sinfo.Cluster {
		sources = len(sinfo.Masters)
	}
	opts := shake.RunOptions{
		Config: cfg, Binary: so.Binary, Env: so.Env,
		Grace: so.Grace, ReportEvery: so.ReportEvery, ReadyAfter: so.ReadyAfter, Sources: sources,
		Reporter: r, Logger: l.log().With("job", id),
	}
	if obs != nil {
		obs.ShakeStarted(id, req.Mode)
	}
	l.log().Info("redis-shake run", "job", id, "mode", req.Mode, "sourceCluster", sinfo.Cluster, "sources", sources,
		"targetCluster", dinfo.Cluster, "filtered", len(cfg.Filter.AllowKeyRegex) > 0)
	p, err := shake.Start(ctx, opts)
	if err != nil {
		o, err := l.notStarted(ctx, id, err)
		if obs != nil {
			obs.ShakeEnded(id, o.End)
		}
		return o, err
	}
	res, werr, cutover, stopped := r.supervise(ctx, p, so.Poll)

	// A cutover requested just before redis-shake was stopped from outside
	// (the API sets the request, then stops the task) is a cutover.
	if cfg.Mode == shake.ModeSync && !cutover && !stopped && werr == nil {
		if j, err := l.Store.Get(bg, id); err == nil && j.Request == job.RequestCutover {
			cutover = true
		}
	}
	out := ShakeOutcome{Result: res}
	var end error
	switch {
	case werr == nil && (cfg.Mode == shake.ModeScan || cutover):
		stage := "copied"
		out.End = ShakeFinished
		if cfg.Mode == shake.ModeSync {
			out.End, stage = ShakeCutOver, job.StageCutOver
		}
		out.Job, end = l.Store.Update(bg, id, func(j *job.Job) {
			j.Stage, j.Request, j.Progress = stage, "", progressOf(res.Status)
		})
	case werr == nil || errors.Is(werr, shake.ErrStopped):
		out.End = ShakeStopped
		msg := "stopped before the scan finished: the target holds part of the data; run the job again (redis-shake cannot resume a scan)"
		if cfg.Mode == shake.ModeSync {
			msg = "stopped without a cutover: the target holds the data replicated so far; run the job again to sync anew"
		}
		end = ErrStopped
		if ctx.Err() != nil {
			end = errors.Join(ErrStopped, ctx.Err())
		}
		out.Job = l.end(bg, id, job.StatusCancelled, "stopped", msg, res.Status)
	default:
		out.End, end = ShakeFailed, werr
		out.Job = l.end(bg, id, job.StatusFailed, string(shake.StageFailed), endpoint.Redact(shake.Sanitize(werr.Error())), res.Status)
	}
	if obs != nil {
		obs.ShakeEnded(id, out.End)
	}
	l.log().Info("redis-shake run ended", "job", id, "end", string(out.End), "exit", res.ExitCode,
		"stage", string(res.Status.Stage), "ms", res.Duration.Milliseconds())
	return out, end
}

// notStarted ends job id whose redis-shake did not start: stopped when ctx
// was cancelled (the caller stopped the run), failed with err otherwise.
func (l *Local) notStarted(ctx context.Context, id string, err error) (ShakeOutcome, error) {
	if ctx.Err() != nil {
		j := l.finish(ctx, id, job.StatusCancelled, fmt.Errorf("stopped before redis-shake started: %w", err))
		return ShakeOutcome{Job: j, End: ShakeStopped}, errors.Join(ErrStopped, err)
	}
	o, err := l.failed(ctx, id, err)
	return ShakeOutcome{Job: o.Job, End: ShakeFailed}, err
}

// end moves job id to a final status with the run's last progress.
func (l *Local) end(ctx context.Context, id string, to job.Status, stage, msg string, st shake.Status) job.Job {
	j, err := l.Store.Transition(ctx, id, to, func(j *job.Job) {
		j.Stage, j.Error, j.Request, j.Progress = stage, msg, "", progressOf(st)
	})
	if err != nil {
		l.log().Error("record job outcome", "job", id, "status", to, "err", err)
		j, _ = l.Store.Get(ctx, id)
	}
	return j
}

// shakeRun reports a run's status to the observer and the job record, and
// acts on the requests it finds there.
type shakeRun struct {
	l        *Local
	id       string
	mode     shake.Mode
	obs      ShakeObserver
	requests chan string

	mu       sync.Mutex
	stopping string // the stage while redis-shake stops on a request
}

// Report implements shake.Reporter.
func (r *shakeRun) Report(ctx context.Context, st shake.Status) error {
	if r.obs != nil {
		r.obs.ShakeStatus(r.id, st)
	}
	r.mu.Lock()
	stopping := r.stopping
	r.mu.Unlock()
	j, err := r.l.Store.Update(ctx, r.id, func(j *job.Job) {
		j.Progress = progressOf(st)
		if stopping == "" {
			j.Stage = string(st.Stage)
		}
	})
	if err != nil {
		return err
	}
	r.notice(j)
	return nil
}

// notice passes on a request found in the record, or a job that was ended
// by someone else (a stop).
func (r *shakeRun) notice(j job.Job) {
	req := j.Request
	if j.Finished() {
		req = job.RequestStop
	}
	if req == "" {
		return
	}
	select {
	case r.requests <- req:
	default:
	}
}

// supervise waits for redis-shake, reading the job record every poll and
// stopping redis-shake on a request. It returns Process.Wait's results and
// whether a cutover or a stop was requested.
func (r *shakeRun) supervise(ctx context.Context, p *shake.Process, poll time.Duration) (res shake.Result, err error, cutover, stopped bool) {
	if poll <= 0 {
		poll = DefaultPoll
	}
	bg := context.WithoutCancel(ctx)
	done := make(chan struct{})
	go func() {
		res, err = p.Wait()
		close(done)
	}()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	act := func(req string) {
		switch {
		case cutover || stopped:
			return
		case req == job.RequestCutover && r.mode == shake.ModeSync:
			cutover = true
			r.stop(bg, p, job.StageCuttingOver, "cutover requested: stopping redis-shake, then validating")
		case req == job.RequestCutover:
			r.l.log().Warn("cutover requested for a scan job: ignored (a scan ends by itself)", "job", r.id)
			if _, err := r.l.Store.Update(bg, r.id, func(j *job.Job) { j.Request = "" }); err != nil {
				r.l.log().Warn("clear the request", "job", r.id, "err", err)
			}
		case req == job.RequestStop:
			stopped = true
			r.stop(bg, p, "stopping", "stop requested: stopping redis-shake")
		}
	}
	for {
		select {
		case <-done:
			return res, err, cutover, stopped
		case req := <-r.requests:
			act(req)
		case <-tick.C:
			j, gerr := r.l.Store.Get(bg, r.id)
			if gerr != nil {
				r.l.log().Warn("read the job record for requests", "job", r.id, "err", gerr)
				continue
			}
			r.notice(j)
		}
	}
}

func (r *shakeRun) stop(ctx context.Context, p *shake.Process, stage, msg string) {
	r.mu.Lock()
	r.stopping = stage
	r.mu.Unlock()
	r.l.log().Info(msg, "job", r.id)
	if _, err := r.l.Store.Update(ctx, r.id, func(j *job.Job) { j.Stage = stage }); err != nil {
		r.l.log().Warn("record the stage", "job", r.id, "stage", stage, "err", err)
	}
	p.Stop()
}

// progressOf is the job record's form of a status.
func progressOf(st shake.Status) job.Progress {
	p := st.Progress
	return job.Progress{
		Phase: string(p.Phase), Keys: p.WriteCount, OpsPerSec: p.WriteOPS, ScanPercent: p.ScanPercent,
		RDBBytesDone: p.RDBBytesDone, RDBBytesTotal: p.RDBBytesTotal, AOFDiff: p.AOFDiff,
		ReadyForCutover: st.ReadyForCutover,
	}
}

// RequestCutover asks the process that runs redis_shake_sync job id to cut
// over: stop redis-shake gracefully, wait for it, then validate. The job
// must be running and, unless force, replicating (ErrNotReady while its
// initial sync runs: cutting over then leaves the target incomplete).
// Asking twice is fine. The request is a field of the job record
// (job.RequestCutover), so it works through any store the running process
// reads: the same process (kvmigrate serve), DynamoDB (shake-task), or the
// control socket of a local run (SendRequest).
func RequestCutover(ctx context.Context, store job.Store, id string, force bool) (job.Job, error) {
	j, err := store.Get(ctx, id)
	if err != nil {
		return j, err
	}
	switch {
	case j.Kind != job.KindMigration || j.Mode != job.ModeRedisShakeSync:
		return j, fmt.Errorf("job %s is a %s %s job: only %s jobs are cut over: %w", id, j.Mode, j.Kind, job.ModeRedisShakeSync, job.ErrInvalid)
	case j.Request == job.RequestCutover:
		return j, nil
	case j.Status != job.StatusRunning || j.Request != "":
		return j, fmt.Errorf("job %s is %s (%s): there is no sync to cut over: %w", id, j.Status, describeStage(j), job.ErrConflict)
	case !force && j.Stage != string(shake.StageReplicating):
		return j, fmt.Errorf("job %s is still in its initial sync (%s): cutting over now leaves the target incomplete; wait until it replicates, or force it: %w",
			id, describeStage(j), errors.Join(ErrNotReady, job.ErrConflict))
	}
	return request(ctx, store, id, job.RequestCutover)
}

// RequestStop asks the process that runs redis-shake job id to stop it
// without validating; the job ends stopped.
func RequestStop(ctx context.Context, store job.Store, id string) (job.Job, error) {
	j, err := store.Get(ctx, id)
	if err != nil {
		return j, err
	}
	switch {
	case j.Kind != job.KindMigration || !IsShake(j.Mode):
		return j, fmt.Errorf("job %s is a %s %s job: only redis-shake jobs take a stop request: %w", id, j.Mode, j.Kind, job.ErrInvalid)
	case j.Request == job.RequestStop:
		return j, nil
	case j.Status != job.StatusRunning:
		return j, fmt.Errorf("job %s is %s: there is no redis-shake run to stop: %w", id, j.Status, job.ErrConflict)
	}
	return request(ctx, store, id, job.RequestStop)
}

func request(ctx context.Context, store job.Store, id, req string) (job.Job, error) {
	j, err := store.Update(ctx, id, func(j *job.Job) {
		if j.Status == job.StatusRunning && (j.Request == "" || req == job.RequestStop) {
			j.Request = req
		}
	})
	if err != nil {
		return j, err
	}
	if j.Request != req {
		return j, fmt.Errorf("job %s is %s (%s): it changed meanwhile: %w", id, j.Status, describeStage(j), job.ErrConflict)
	}
	return j, nil
}

// describeStage says where a redis-shake job stands, for messages.
func describeStage(j job.Job) string {
	p := j.Progress
	s := j.Stage
	if s == "" {
		s = "no stage yet"
	}
	if p.RDBBytesTotal > 0 && p.RDBBytesDone < p.RDBBytesTotal {
		s += fmt.Sprintf(", RDB %d of %d bytes", p.RDBBytesDone, p.RDBBytesTotal)
	}
	return s
}
