// Package workflow runs migrations on one machine with the same steps as
// the AWS state machine: connect and plan (the analyze step), copy every
// shard chunk by chunk with a checkpoint after each (the Map of CopyChunk
// tasks, here goroutines), then record the result. Jobs live in a
// job.Store, so an interrupted job resumes from its checkpoints.
package workflow

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/topology"
	"github.com/kvmigrate/kvmigrate/internal/transfer"
)

// Limits of concurrent jobs (DESIGN: at most 10 executions at once).
const MaxExecutions = 10

// Chunk bounds: one chunk is one checkpoint; an interrupted job redoes at
// most the chunk in flight of each shard.
const (
	DefaultChunkKeys = 20_000
	DefaultChunkTime = 10 * time.Second
)

// Request asks for a migration.
type Request struct {
	// JobID, when set, names a pending migration job the caller created
	// (the HTTP API does, to answer with its id at once); the run takes it
	// over instead of creating one. Empty: a new job.
	JobID          string
	Source, Target endpoint.Endpoint
	Options        job.Options
	// ChunkKeys and ChunkTime bound one chunk (defaults above).
	ChunkKeys int
	ChunkTime time.Duration
	// Mode is the job's mode: job.ModeCommand (or empty), or a redis-shake
	// mode, which Shake shapes (see shake.go).
	Mode  string
	Shake ShakeOptions
}

// ShardPlan describes one shard for progress display.
type ShardPlan struct {
	Node string
	DB   int
	// Keys is the shard's key count when planned (DBSIZE of that node
	// and database), the denominator of its progress.
	Keys int64
	// Done is what earlier runs of this job already did.
	Done job.Counters
	// Finished is true when the shard was complete before this run.
	Finished bool
}

// Observer receives progress; the CLI draws bars with it. Methods are
// called from several goroutines.
type Observer interface {
	Planned(jobID string, shards []ShardPlan)
	Progress(node string, db int, delta job.Counters)
	ShardDone(node string, db int)
}

// Local runs jobs in this process.
type Local struct {
	Store    job.Store
	Log      *slog.Logger
	Observer Observer
}

// Outcome is a finished (or interrupted) run.
type Outcome struct {
	Job    job.Job
	Shards []job.Shard
	// Errors and Warnings are the first per-key problems of this run.
	Errors   []string
	Warnings []string
	Source   topology.Info
	Target   topology.Info
	Elapsed  time.Duration
}

// ErrNotResumable: the job is finished or not a migration.
var ErrNotResumable = errors.New("job cannot be resumed")

// Migrate creates a migration job and runs it to the end. The job is in
// the store as soon as it is created; on Ctrl-C (ctx cancelled) it is left
// paused and Resume continues it. Run does the same with the analysis and
// its gate first.
func (l *Local) Migrate(ctx context.Context, req Request) (Outcome, error) {
	return l.migrate(ctx, req, steps{})
}

// steps are the optional steps of a migration job around the copy.
type steps struct {
	// analyze runs once both endpoints are connected, while the job is
	// analyzing; an error ends the job (see endAnalysis).
	analyze func(ctx context.Context, id string, src, dst *endpoint.Conn) error
	// validate runs after a copy without failures, while the job is
	// validating; an error fails the job.
	validate func(ctx context.Context, id string, s *session) error
}

// migrate runs one migration job through its statuses: pending →
// analyzing (connect, then st.analyze, then plan) → analyzed → running →
// (validating →) succeeded, or paused/failed/blocked/stopped.
func (l *Local) migrate(ctx context.Context, req Request, st steps) (Outcome, error) {
	j := job.Job{
		ID:      req.JobID,
		Kind:    job.KindMigration,
		Mode:    cmp.Or(req.Mode, job.ModeCommand),
		Source:  req.Source.String(),
		Target:  req.Target.String(),
		Options: req.Options,
	}
	if j.ID != "" {
		var err error
		if j, err = l.adopt(ctx, j.ID, job.KindMigration); err != nil {
			return Outcome{Job: j}, err
		}
	} else {
		j.ID = job.NewID()
		if err := l.Store.Create(ctx, j); err != nil {
			return Outcome{}, fmt.Errorf("create job: %w", err)
		}
	}
	if err := l.Store.Acquire(ctx, j.ID, job.KindMigration, MaxExecutions); err != nil {
		l.finish(ctx, j.ID, job.StatusFailed, err)
		return Outcome{Job: j}, fmt.Errorf("start job %s: %w", j.ID, err)
	}
	defer l.Store.Release(context.WithoutCancel(ctx), j.ID, job.KindMigration)

	j, err := l.Store.Transition(ctx, j.ID, job.StatusAnalyzing, func(j *job.Job) { j.Stage = "connecting" })
	if err != nil {
		return Outcome{Job: j}, err
	}
	src, dst, err := dial(ctx, req)
	if err != nil {
		return l.failed(ctx, j.ID, err)
	}
	if st.analyze != nil {
		if err := st.analyze(ctx, j.ID, src, dst); err != nil {
			src.Close()
			dst.Close()
			return l.endAnalysis(ctx, j.ID, err)
		}
	}
	s, err := l.setup(ctx, j.ID, req, src, dst)
	if err != nil {
		return l.failed(ctx, j.ID, err)
	}
	defer s.close()
	s.validate = st.validate
	if IsShake(j.Mode) {
		req.Mode = j.Mode
		return l.runShake(ctx, j.ID, s, req)
	}

	chunks, err := transfer.Plan(s.sinfo, s.dinfo, s.dbs)
	if err != nil {
		return l.failed(ctx, j.ID, err)
	}
	for _, ch := range chunks {
		if err := l.Store.PutShard(ctx, j.ID, job.Shard{Node: ch.Node, DB: ch.DB, Cursor: "0"}); err != nil {
			return l.failed(ctx, j.ID, err)
		}
	}
	if _, err := l.Store.Transition(ctx, j.ID, job.StatusAnalyzed, func(j *job.Job) { j.Stage = "planned" }); err != nil {
		return l.failed(ctx, j.ID, err)
	}
	if _, err := l.Store.Transition(ctx, j.ID, job.StatusRunning, func(j *job.Job) { j.Stage = "copying" }); err != nil {
		return l.failed(ctx, j.ID, err)
	}
	return l.run(ctx, j.ID, s, req)
}

// adopt returns the pending job id of kind that a caller created for this
// run (Request.JobID); job.ErrConflict when it is not a pending job of that
// kind.
func (l *Local) adopt(ctx context.Context, id string, kind job.Kind) (job.Job, error) {
	j, err := l.Store.Get(ctx, id)
	if err != nil {
		return job.Job{}, fmt.Errorf("job %s: %w", id, err)
	}
	if j.Kind != kind || j.Status != job.StatusPending {
		return j, fmt.Errorf("job %s is a %s %s job, not a pending %s job: %w", id, j.Status, j.Kind, kind, job.ErrConflict)
	}
	return j, nil
}

// Resume continues a paused (or crashed, still "running") job from its
// checkpoints. src and dst carry the credentials, which jobs never store;
// their hosts must be the job's.
func (l *Local) Resume(ctx context.Context, id string, req Request) (Outcome, error) {
	j, err := l.Store.Get(ctx, id)
	if err != nil {
		return Outcome{}, err
	}
	if j.Kind != job.KindMigration || j.Mode != job.ModeCommand {
		return Outcome{Job: j}, fmt.Errorf("%w: job %s is a %s %s job", ErrNotResumable, id, j.Mode, j.Kind)
	}
	if !same(req.Source, j.Source) || !same(req.Target, j.Target) {
		return Outcome{Job: j}, fmt.Errorf("%w: job %s copies %s to %s, not %s to %s",
			ErrNotResumable, id, j.Source, j.Target, req.Source, req.Target)
	}
	switch j.Status {
	case job.StatusPaused:
		if _, err := l.Store.Transition(ctx, id, job.StatusRunning, func(j *job.Job) { j.Stage, j.Error = "copying", "" }); err != nil {
			return Outcome{Job: j}, err
		}
	case job.StatusRunning: // the process that ran it died
	default:
		return Outcome{Job: j}, fmt.Errorf("%w: job %s is %s; start a new migration instead (copying again is safe: keys are replaced)",
			ErrNotResumable, id, j.Status)
	}
	if err := l.Store.Acquire(ctx, id, job.KindMigration, MaxExecutions); err != nil {
		return Outcome{Job: j}, err
	}
	defer l.Store.Release(context.WithoutCancel(ctx), id, job.KindMigration)
	req.Options = j.Options
	s, err := l.open(ctx, id, req)
	if err != nil {
		return l.failed(ctx, id, err)
	}
	defer s.close()
	return l.run(ctx, id, s, req)
}

// same reports whether e is the server (and database) a job stored as url.
func same(e endpoint.Endpoint, url string) bool {
	stored, err := endpoint.Parse(url)
	return err == nil && stored.Host == e.Host && stored.Port == e.Port && stored.DB == e.DB
}

// session holds the connections and the copier of one run.
type session struct {
	src, dst     *endpoint.Conn
	sinfo, dinfo topology.Info
	copier       *transfer.Copier
	dbs          []int // source databases (nil: all in use)
	targetDB     func(int) int
	match, typ   string // the copy's filters: the validation checks the keys they select
	observer     Observer
	validate     func(ctx context.Context, id string, s *session) error // nil: no validation step
}

func (s *session) close() {
	s.src.Close()
	s.dst.Close()
}

func (l *Local) open(ctx context.Context, id string, req Request) (*session, error) {
	src, dst, err := dial(ctx, req)
	if err != nil {
		return nil, err
	}
	return l.setup(ctx, id, req, src, dst)
}

// dial connects to the source and the target.
func dial(ctx context.Context, req Request) (src, dst *endpoint.Conn, err error) {
	if src, err = endpoint.Dial(ctx, req.Source); err != nil {
		return nil, nil, fmt.Errorf("source: %w", err)
	}
	if dst, err = endpoint.Dial(ctx, req.Target); err != nil {
		src.Close()
		return nil, nil, fmt.Errorf("target: %w", err)
	}
	return src, dst, nil
}

// setup discovers both sides and builds the copier; on error it closes
// the connections.
func (l *Local) setup(ctx context.Context, id string, req Request, src, dst *endpoint.Conn) (*session, error) {
	var err error
	s := &session{src: src, dst: dst, observer: l.Observer}
	if s.sinfo, err = topology.Discover(ctx, src); err != nil {
		s.close()
		return nil, fmt.Errorf("source %s: %w", req.Source, err)
	}
	if s.dinfo, err = topology.Discover(ctx, dst); err != nil {
		s.close()
		return nil, fmt.Errorf("target %s: %w", req.Target, err)
	}
	// A database in either URL selects single-database mode: source db →
	// target db. Otherwise every database in use keeps its number.
	s.targetDB = func(db int) int { return db }
	if req.Source.OneDB() || req.Target.OneDB() {
		s.dbs = []int{req.Source.DB}
		s.targetDB = func(int) int { return req.Target.DB }
	}
	o := req.Options
	s.match, s.typ = o.Match, o.Type
	s.copier, err = transfer.New(src, dst, transfer.Options{
		JobID:          id,
		Strategy:       transfer.Strategy(o.Strategy),
		OnConflict:     transfer.Conflict(o.OnConflict),
		Match:          o.Match,
		Type:           o.Type,
		InFlight:       o.Concurrency,
		MaxOps:         o.MaxOps,
		TargetDB:       s.targetDB,
		SourceFieldTTL: s.sinfo.HashFieldTTL,
		TargetFieldTTL: s.dinfo.HashFieldTTL,
		FastPath:       s.dinfo.Accepts(s.sinfo.RDBVersion),
		Progress:       l.progress,
		Logger:         l.log(),
	})
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (l *Local) log() *slog.Logger {
	if l.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.Log
}

func (l *Local) progress(node string, db int, delta job.Counters) {
	if l.Observer != nil {
		l.Observer.Progress(node, db, delta)
	}
}

// run copies every unfinished shard and records the outcome.
func (l *Local) run(ctx context.Context, id string, s *session, req Request) (Outcome, error) {
	started := time.Now()
	out := Outcome{Source: s.sinfo, Target: s.dinfo}
	shards, err := l.Store.Shards(ctx, id)
	if err != nil {
		return l.failed(ctx, id, err)
	}
	// Temporary keys left by an earlier, interrupted run of this job: only
	// a shard whose chunk failed or died can have some (a fresh job has
	// none, and skips this SCAN of the whole target).
	if anyDirty(shards) {
		swept, err := s.copier.SweepJob(ctx, shardDBs(shards))
		if err != nil {
			return l.failed(ctx, id, err)
		}
		if swept > 0 {
			l.log().Info("removed temporary keys left by an interrupted run", "job", id, "keys", swept)
			if err := l.Store.AddCounters(ctx, id, job.Counters{TempKeysSwept: swept}); err != nil {
				return l.failed(ctx, id, err)
			}
		}
	}
	if l.Observer != nil {
		l.Observer.Planned(id, planOf(shards, s.sinfo))
	}

	limits := func() transfer.Limits {
		keys, d := req.ChunkKeys, req.ChunkTime
		if keys <= 0 {
			keys = DefaultChunkKeys
		}
		if d <= 0 {
			d = DefaultChunkTime
		}
		return transfer.Limits{MaxKeys: keys, Deadline: time.Now().Add(d)}
	}
	parallel := req.Options.Parallel
	if parallel <= 0 {
		parallel = 4
	}
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, parallel)
	)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, sh := range shards {
		if sh.Done {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			for !sh.Done && runCtx.Err() == nil {
				var res transfer.Result
				var err error
				sh, res, err = CopyChunk(runCtx, l.Store, s.copier, id, sh, limits())
				mu.Lock()
				out.Errors = appendMax(out.Errors, res.Errors...)
				out.Warnings = appendMax(out.Warnings, res.Warnings...)
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("shard %s db %d: %w", sh.Node, sh.DB, err)
					cancel()
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
			if sh.Done && l.Observer != nil {
				l.Observer.ShardDone(sh.Node, sh.DB)
			}
		})
	}
	wg.Wait()
	out.Elapsed = time.Since(started)
	bg := context.WithoutCancel(ctx)
	out.Shards, _ = l.Store.Shards(bg, id)

	switch {
	case ctx.Err() != nil:
		out.Job, err = l.Store.Transition(bg, id, job.StatusPaused, func(j *job.Job) {
			j.Stage, j.Error = "interrupted", "interrupted: run `kvmigrate resume "+id+"` to continue"
		})
		return out, errors.Join(ctx.Err(), err)
	case firstErr != nil && !errors.Is(firstErr, transfer.ErrInvalidOptions):
		// A chunk stopped on something no key could get past (a lost
		// connection, a target out of memory or read-only, a denied
		// command): every shard is at a checkpoint, so once the cause is
		// fixed the job resumes from there.
		out.Job, err = l.Store.Transition(bg, id, job.StatusPaused, func(j *job.Job) {
			j.Stage, j.Error = "interrupted", endpoint.Redact(firstErr.Error())+"; fix the cause, then run `kvmigrate resume "+id+"`"
		})
		return out, errors.Join(firstErr, err)
	case firstErr != nil:
		o, err := l.failed(bg, id, firstErr)
		o.Source, o.Target, o.Shards, o.Errors, o.Warnings, o.Elapsed = out.Source, out.Target, out.Shards, out.Errors, out.Warnings, out.Elapsed
		return o, err
	}
	j, err := l.Store.Get(bg, id)
	if err != nil {
		return out, err
	}
	if j.Counters.Failed > 0 {
		out.Job, err = l.Store.Transition(bg, id, job.StatusFailed, func(j *job.Job) {
			j.Stage = "copied"
			j.Error = fmt.Sprintf("%d keys failed to copy", j.Counters.Failed)
			if len(out.Errors) > 0 {
				j.Error += "; first: " + endpoint.Redact(out.Errors[0])
			}
		})
		if err == nil {
			err = fmt.Errorf("%s", out.Job.Error)
		}
		return out, err
	}
	if s.validate != nil {
		if _, err := l.Store.Transition(bg, id, job.StatusValidating, func(j *job.Job) { j.Stage = "validating" }); err != nil {
			return out, err
		}
		if verr := s.validate(ctx, id, s); verr != nil {
			o, err := l.failed(bg, id, fmt.Errorf("validation: %w", verr))
			out.Job = o.Job
			return out, err
		}
	}
	stage := "copied"
	if s.validate != nil {
		stage = "validated"
	}
	out.Job, err = l.Store.Transition(bg, id, job.StatusSucceeded, func(j *job.Job) { j.Stage = stage })
	return out, err
}

// CopyChunk runs one chunk of a shard and checkpoints it: the shard's
// cursor and counters, and the job's counters. The execute-chunk Lambda and
// the local workflow both call it. On error nothing is checkpointed but the
// shard is marked dirty: the chunk runs again from the same cursor.
//
// When the shard is done, its temporary keys are swept if a chunk may have
// left some: one failed or died (InFlight found set), or could not delete
// one. A clean shard skips the sweep, a SCAN of the whole target keyspace.
func CopyChunk(ctx context.Context, store job.Store, c *transfer.Copier, id string, sh job.Shard, lim transfer.Limits) (job.Shard, transfer.Result, error) {
	if sh.InFlight {
		sh.Dirty = true // the previous attempt died before its checkpoint
	}
	sh.InFlight, sh.UpdatedAt = true, time.Time{}
	if err := store.PutShard(ctx, id, sh); err != nil {
		return sh, transfer.Result{}, fmt.Errorf("mark shard %s db %d in flight: %w", sh.Node, sh.DB, err)
	}
	ch := transfer.Chunk{Node: sh.Node, DB: sh.DB, Cursor: sh.Cursor, Commands: sh.Commands}
	res, err := c.CopyChunk(ctx, ch, lim)
	sh.InFlight = false
	if err != nil {
		sh.Dirty = true
		if perr := store.PutShard(context.WithoutCancel(ctx), id, sh); perr != nil {
			err = errors.Join(err, fmt.Errorf("mark shard %s db %d dirty: %w", sh.Node, sh.DB, perr))
		}
		return sh, res, err
	}
	sh.Dirty = sh.Dirty || res.TempKeysLeft > 0
	delta := res.Counters
	if res.Done && sh.Dirty {
		swept, err := c.SweepShard(ctx, ch)
		if err != nil {
			return sh, res, err
		}
		delta.TempKeysSwept += swept
		sh.Dirty = false
	}
	sh.Cursor, sh.Done, sh.Commands = res.Cursor, res.Done, res.Commands
	sh.Counters.Add(delta)
	sh.UpdatedAt = time.Time{}
	if err := store.PutShard(ctx, id, sh); err != nil {
		return sh, res, fmt.Errorf("checkpoint shard %s db %d: %w", sh.Node, sh.DB, err)
	}
	if err := store.AddCounters(ctx, id, delta); err != nil {
		return sh, res, fmt.Errorf("add counters: %w", err)
	}
	return sh, res, nil
}

func (l *Local) failed(ctx context.Context, id string, cause error) (Outcome, error) {
	j := l.finish(ctx, id, job.StatusFailed, cause)
	return Outcome{Job: j}, cause
}

func (l *Local) finish(ctx context.Context, id string, to job.Status, cause error) job.Job {
	j, err := l.Store.Transition(context.WithoutCancel(ctx), id, to, func(j *job.Job) {
		if cause != nil {
			j.Error = endpoint.Redact(cause.Error())
		}
	})
	if err != nil {
		l.log().Error("record job outcome", "job", id, "status", to, "err", err)
		j, _ = l.Store.Get(context.WithoutCancel(ctx), id)
	}
	return j
}

func anyDirty(shards []job.Shard) bool {
	for _, s := range shards {
		if s.Dirty || s.InFlight {
			return true
		}
	}
	return false
}

func shardDBs(shards []job.Shard) []int {
	seen := map[int]bool{}
	var dbs []int
	for _, s := range shards {
		if !seen[s.DB] {
			seen[s.DB] = true
			dbs = append(dbs, s.DB)
		}
	}
	sort.Ints(dbs)
	return dbs
}

func planOf(shards []job.Shard, src topology.Info) []ShardPlan {
	keys := map[string]int64{}
	for _, m := range src.Masters {
		for db, n := range m.Keyspace {
			keys[fmt.Sprintf("%s/%d", m.Addr, db)] = n
		}
	}
	out := make([]ShardPlan, 0, len(shards))
	for _, s := range shards {
		out = append(out, ShardPlan{Node: s.Node, DB: s.DB, Keys: keys[fmt.Sprintf("%s/%d", s.Node, s.DB)], Done: s.Counters, Finished: s.Done})
	}
	return out
}

const maxMessages = 20

func appendMax(list []string, more ...string) []string {
	for _, m := range more {
		if len(list) >= maxMessages {
			break
		}
		list = append(list, m)
	}
	return list
}
