package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/job/bolt"
	"github.com/kvmigrate/kvmigrate/internal/shake"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// registerMode adds --mode and --cutover-on-signal to migrate and run.
func (f *runFlags) registerMode(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.mode, "mode", job.ModeCommand, "command (kvmigrate copies), redis_shake (redis-shake scan: one pass, same engine) or redis_shake_sync (redis-shake replication until you cut over)")
	fl.BoolVar(&f.cutoverOnSignal, "cutover-on-signal", false, "redis_shake_sync: Ctrl-C (or SIGTERM) cuts over without asking")
}

// checkMode sets the request's mode and checks a redis-shake run before
// anything starts: the binary is found and the options fit redis-shake.
func (a *app) checkMode(f *runFlags, req *workflow.Request) error {
	switch f.mode {
	case "", job.ModeCommand:
		if f.cutoverOnSignal {
			return usageError{errors.New("--cutover-on-signal applies to --mode " + job.ModeRedisShakeSync)}
		}
		req.Mode = job.ModeCommand
		return nil
	case job.ModeRedisShake, job.ModeRedisShakeSync:
	default:
		return usageError{fmt.Errorf("--mode %q: use %s, %s or %s", f.mode, job.ModeCommand, job.ModeRedisShake, job.ModeRedisShakeSync)}
	}
	if f.cutoverOnSignal && f.mode != job.ModeRedisShakeSync {
		return usageError{errors.New("--cutover-on-signal applies to --mode " + job.ModeRedisShakeSync)}
	}
	req.Mode = f.mode
	path, err := a.storeFile()
	if err != nil {
		return err
	}
	// redis-shake's working directory (a sync keeps the source's RDB and
	// AOF there until the run ends) lives next to the job store.
	req.Shake.Dir = filepath.Join(filepath.Dir(path), "shake")
	req.Shake.ReportEvery = time.Second // the bars' refresh; the job store is local
	if err := workflow.CheckShake(*req); err != nil {
		if errors.Is(err, shake.ErrBinaryNotFound) || errors.Is(err, shake.ErrInvalidConfig) || errors.Is(err, job.ErrInvalid) {
			return usageError{fmt.Errorf("--mode %s: %w", f.mode, err)}
		}
		return err
	}
	return nil
}

// storeFile is the job store's path (--job-store, or the default).
func (a *app) storeFile() (string, error) {
	if a.storePath != "" {
		return a.storePath, nil
	}
	return bolt.DefaultPath()
}

// liveRun is what a migrate, resume or run command shows and listens to
// while its job runs: progress bars or lines, and for the redis-shake
// modes the control socket (kvmigrate cutover from another terminal) and,
// in sync mode, Ctrl-C handling (cut over, abort or keep replicating).
type liveRun struct {
	a      *app
	f      *runFlags
	store  *bolt.Store
	ctx    context.Context
	cancel context.CancelFunc
	bars   *progress
	track  *shakeTracker
	ctl    *workflow.ControlServer
	sigs   chan os.Signal
	done   chan struct{}
	wg     sync.WaitGroup
}

// startRun sets l's observer and returns the run's context: cmd's, except
// in redis_shake_sync mode, where Ctrl-C is a question, not a cancel.
func (a *app) startRun(cmd *cobra.Command, f *runFlags, l *workflow.Local, store *bolt.Store) *liveRun {
	r := &liveRun{a: a, f: f, store: store, done: make(chan struct{})}
	syncMode := f.mode == job.ModeRedisShakeSync
	if syncMode {
		r.ctx, r.cancel = context.WithCancel(context.WithoutCancel(cmd.Context()))
	} else {
		r.ctx, r.cancel = context.WithCancel(cmd.Context())
	}
	var inner workflow.Observer
	if !f.json && !f.noProgress && isTerminal(os.Stderr) {
		r.bars = newProgress(r.ctx, a.errOut)
		inner = r.bars
	} else if !f.json {
		inner = newLineProgress(a.errOut)
	}
	r.track = &shakeTracker{inner: inner}
	l.Observer = r.track
	if !workflow.IsShake(f.mode) {
		return r
	}
	ctl, err := workflow.ListenControl(workflow.ControlPath(store.Path()), store, l.Log)
	if err != nil {
		l.Log.Warn("kvmigrate cutover from another terminal is unavailable for this run", "err", err)
	}
	r.ctl = ctl
	if syncMode {
		r.sigs = make(chan os.Signal, 4)
		signal.Notify(r.sigs, os.Interrupt, syscall.SIGTERM)
		r.wg.Go(r.signals)
	}
	return r
}

// finish stops listening and waits for the bars.
func (r *liveRun) finish() {
	if r.sigs != nil {
		signal.Stop(r.sigs)
		close(r.done)
		r.wg.Wait()
	}
	if r.ctl != nil {
		r.ctl.Close() // after the job's last transition: waiting clients get it
	}
	if r.bars != nil {
		r.bars.wait()
	}
	r.cancel()
}

// signals decides what Ctrl-C (SIGINT) and SIGTERM do in sync mode: before
// redis-shake runs and after a decision, they interrupt as usual; while it
// replicates, --cutover-on-signal cuts over, a terminal asks, anything
// else aborts (redis-shake stopped, no validation, the job stopped).
func (r *liveRun) signals() {
	decided := false
	for {
		var sig os.Signal
		select {
		case <-r.done:
			return
		case sig = <-r.sigs:
		}
		id, live := r.track.live()
		if !live || decided {
			fmt.Fprintln(r.a.errOut, "\ninterrupted")
			r.cancel()
			continue
		}
		choice := "abort"
		switch {
		case r.f.cutoverOnSignal:
			choice = "cutover"
		case sig == os.Interrupt && isTerminal(os.Stdin) && isTerminal(os.Stderr):
			choice = r.ask()
		}
		var err error
		switch choice {
		case "keep":
			continue
		case "cutover":
			fmt.Fprintf(r.a.errOut, "\ncutting over job %s: stopping redis-shake, then validating\n", id)
			_, err = workflow.RequestCutover(context.Background(), r.store, id, true)
		default:
			fmt.Fprintf(r.a.errOut, "\naborting job %s: stopping redis-shake without a cutover\n", id)
			_, err = workflow.RequestStop(context.Background(), r.store, id)
		}
		decided = true
		if err != nil {
			fmt.Fprintf(r.a.errOut, "kvmigrate: %v; interrupting\n", err)
			r.cancel()
		}
	}
}

// ask asks on the terminal whether to cut over; another signal meanwhile
// aborts.
func (r *liveRun) ask() string {
	if r.bars != nil {
		r.bars.pause()
		defer r.bars.resume()
	}
	st := r.track.status()
	where := string(st.Stage)
	switch {
	case st.Stage == shake.StageReplicating && st.ReadyForCutover:
		where += ", caught up: ready for cutover (stop the writes to the source first)"
	case st.Stage == shake.StageReplicating:
		where += fmt.Sprintf(", %s behind: stop the writes to the source and let it catch up first", bytesHuman(st.Progress.AOFDiff))
	default:
		where += ": the initial sync is not done, cutting over now leaves the target incomplete"
	}
	fmt.Fprintf(r.a.errOut, "\nredis-shake is %s.\n[c]ut over (stop redis-shake, then validate), [a]bort (stop, no validation), [k]eep replicating? ", where)
	answers := make(chan string, 1)
	go func() {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			line = "a"
		}
		answers <- strings.ToLower(strings.TrimSpace(line))
	}()
	select {
	case <-r.done: // the run ended meanwhile
		return "keep"
	case <-r.sigs:
		return "abort"
	case ans := <-answers:
		switch {
		case strings.HasPrefix(ans, "c"):
			return "cutover"
		case strings.HasPrefix(ans, "k"):
			return "keep"
		default:
			return "abort"
		}
	}
}

// shakeTracker passes progress to the display and remembers the redis-shake
// run in progress, for the signal handler.
type shakeTracker struct {
	inner workflow.Observer // nil: nothing shown (--json)
	mu    sync.Mutex
	id    string
	on    bool
	last  shake.Status
}

func (s *shakeTracker) Planned(id string, shards []workflow.ShardPlan) {
	if s.inner != nil {
		s.inner.Planned(id, shards)
	}
}

func (s *shakeTracker) Progress(node string, db int, delta job.Counters) {
	if s.inner != nil {
		s.inner.Progress(node, db, delta)
	}
}

func (s *shakeTracker) ShardDone(node string, db int) {
	if s.inner != nil {
		s.inner.ShardDone(node, db)
	}
}

func (s *shakeTracker) ShakeStarted(id, mode string) {
	s.mu.Lock()
	s.id, s.on = id, true
	s.mu.Unlock()
	if o, ok := s.inner.(workflow.ShakeObserver); ok {
		o.ShakeStarted(id, mode)
	}
}

func (s *shakeTracker) ShakeStatus(id string, st shake.Status) {
	s.mu.Lock()
	s.last = st
	s.mu.Unlock()
	if o, ok := s.inner.(workflow.ShakeObserver); ok {
		o.ShakeStatus(id, st)
	}
}

func (s *shakeTracker) ShakeEnded(id string, end workflow.ShakeEnd) {
	s.mu.Lock()
	s.on = false
	s.mu.Unlock()
	if o, ok := s.inner.(workflow.ShakeObserver); ok {
		o.ShakeEnded(id, end)
	}
}

func (s *shakeTracker) live() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id, s.on
}

func (s *shakeTracker) status() shake.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}
