package shake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Supervision defaults.
const (
	DefaultGrace       = 30 * time.Second // SIGTERM → SIGKILL
	DefaultReportEvery = 5 * time.Second  // redis-shake's own log interval
	reportTimeout      = 30 * time.Second // bounds one Reporter call
	pipeDrainDelay     = 5 * time.Second  // after exit, for output still buffered
)

// Errors of a run that did not fail in redis-shake's own terms.
var (
	// ErrStopped: a scan run was stopped (Stop or ctx) before it finished.
	ErrStopped = errors.New("redis-shake was stopped before it finished")
	// ErrKilled: redis-shake did not exit within the grace period after
	// SIGTERM and was killed; writes in flight may be lost.
	ErrKilled = errors.New("redis-shake was killed")
)

// Reporter receives the status of a run: when the stage, readiness or
// failure changes, otherwise at most once per RunOptions.ReportEvery, and
// a last time when the run has ended. Calls are sequential and never
// concurrent with each other; a slow Reporter delays reports, never
// redis-shake. ctx is not cancelled when the run is stopped (reports go on
// during the grace period) but each call is bounded. An error is logged.
type Reporter interface {
	Report(ctx context.Context, st Status) error
}

// ReporterFunc adapts a function to Reporter.
type ReporterFunc func(ctx context.Context, st Status) error

// Report calls f.
func (f ReporterFunc) Report(ctx context.Context, st Status) error { return f(ctx, st) }

// RunOptions configure a supervised redis-shake run.
type RunOptions struct {
	// Config is redis-shake's configuration; its Mode and Dir apply to the
	// run and its passwords are masked in everything redis-shake prints.
	Config Config
	// Binary is the redis-shake executable (default: FindBinary).
	Binary string
	// Env is redis-shake's whole environment; nil means an empty one. It
	// gets nothing from kvmigrate's: no credentials to inherit, and nothing
	// for redis-shake's ${NAME} substitution in its configuration to find.
	Env []string
	// Grace is how long redis-shake has to exit after SIGTERM before it is
	// killed (default DefaultGrace).
	Grace time.Duration
	// ReportEvery throttles progress reports (default DefaultReportEvery).
	ReportEvery time.Duration
	// Reporter receives the status (optional).
	Reporter Reporter
	// Logger receives redis-shake's log records, sanitized (default: none).
	Logger *slog.Logger
	// ReadyAfter and Sources: see ParserOptions.
	ReadyAfter int
	Sources    int
}

// Result describes a finished run.
type Result struct {
	// Status is the final status; a run that ended badly without saying
	// why in its log has a Failure of kind FailureExit.
	Status Status `json:"status"`
	// ExitCode is redis-shake's exit status, -1 if a signal ended it.
	ExitCode int `json:"exitCode"`
	// Signal names the signal that ended it, if any.
	Signal string `json:"signal,omitempty"`
	// StopRequested: Stop was called or ctx was done.
	StopRequested bool `json:"stopRequested"`
	// Killed: it did not exit within the grace period and was killed.
	Killed   bool          `json:"killed"`
	Duration time.Duration `json:"duration"`
}

// Process is a running, supervised redis-shake.
type Process struct {
	opts    RunOptions
	cmd     *exec.Cmd
	started time.Time
	logger  *slog.Logger

	mu        sync.Mutex // guards parser
	parser    *Parser
	notify    chan struct{} // a status change for the reporter
	stopOnce  sync.Once
	stopCh    chan struct{}
	stopMu    sync.Mutex
	stopState stopState
	done      chan struct{} // closed when Wait's results are set
	result    Result
	err       error
}

type stopState struct {
	requested, killed bool
	cause             error
}

// Run starts redis-shake and waits for it: see Start and Process.Wait.
func Run(ctx context.Context, opts RunOptions) (Result, error) {
	p, err := Start(ctx, opts)
	if err != nil {
		return Result{}, err
	}
	return p.Wait()
}

// Start starts redis-shake with opts.Config, in opts.Config.Dir (created
// 0700 if missing). The configuration reaches redis-shake through a pipe
// (/dev/fd/3), so the passwords never touch the disk. When ctx is done the
// run is stopped as by Stop.
func Start(ctx context.Context, opts RunOptions) (*Process, error) {
	conf, err := opts.Config.TOML()
	if err != nil {
		return nil, err
	}
	if opts.Binary == "" {
		if opts.Binary, err = FindBinary(); err != nil {
			return nil, err
		}
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.ReportEvery <= 0 {
		opts.ReportEvery = DefaultReportEvery
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Config.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create redis-shake's directory: %w", err)
	}

	confR, confW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("pipe for redis-shake's configuration: %w", err)
	}
	defer confR.Close()
	// The configuration is a few hundred bytes: it fits in the pipe's
	// buffer, so writing it before redis-shake runs does not block.
	_, werr := confW.Write(conf)
	if cerr := confW.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("write redis-shake's configuration: %w", werr)
	}

	cmd := exec.Command(opts.Binary, "/dev/fd/3")
	cmd.Dir = opts.Config.Dir
	cmd.Env = append([]string{}, opts.Env...) // non-nil: nothing inherited
	cmd.ExtraFiles = []*os.File{confR}        // fd 3
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = pipeDrainDelay
	stdoutR, stdoutW := io.Pipe()
	stderrR, stderrW := io.Pipe()
	cmd.Stdout, cmd.Stderr = stdoutW, stderrW

	p := &Process{
		opts: opts, cmd: cmd, logger: logger,
		parser: NewParser(ParserOptions{
			Mode: opts.Config.Mode, ReadyAfter: opts.ReadyAfter, Sources: opts.Sources,
			Sanitizer: NewSanitizer(opts.Config.Source.Password(), opts.Config.Target.Password()),
		}),
		notify: make(chan struct{}, 1),
		stopCh: make(chan struct{}),
		done:   make(chan struct{}),
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-shake (%s): %w", opts.Binary, err)
	}
	p.started = time.Now()
	logger.Info("redis-shake started", "pid", cmd.Process.Pid, "mode", string(opts.Config.Mode), "dir", opts.Config.Dir)

	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		_ = readLines(stdoutR, maxLineLen, p.stdoutLine)
	}()
	go func() {
		defer readers.Done()
		_ = readLines(stderrR, maxLineLen, p.stderrLine)
	}()

	exited := make(chan struct{})
	go p.stopper(ctx, exited)
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		p.reportLoop(ctx, exited)
	}()
	go func() {
		waitErr := cmd.Wait() // returns once the output is copied (bounded by WaitDelay)
		stdoutW.Close()
		stderrW.Close()
		readers.Wait()
		close(exited)
		<-reported
		p.finish(ctx, waitErr)
		close(p.done)
	}()
	return p, nil
}

// Stop asks redis-shake to stop: SIGTERM, then SIGKILL if it has not
// exited within the grace period. It does not wait (see Wait); calling it
// again does nothing.
func (p *Process) Stop() { p.stopOnce.Do(func() { close(p.stopCh) }) }

// Status returns the current status; once the run has ended, the final
// one (Result.Status).
func (p *Process) Status() Status {
	select {
	case <-p.done:
		return p.result.Status.clone()
	default:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.parser.Status()
}

// Wait waits for redis-shake to exit and for the last report. The error is
// nil when the run ended as it should: scan mode finished ("all done"),
// or sync mode stopped on request. Otherwise it is the *Failure from the
// log (errors.Is: ErrFailed and its class), a failure of kind FailureExit
// when the log did not say, ErrKilled, or ErrStopped for a scan stopped
// early.
func (p *Process) Wait() (Result, error) {
	<-p.done
	return p.result, p.err
}

func (p *Process) stdoutLine(line string) {
	p.mu.Lock()
	recs, changed := p.parser.Line(line)
	warnings := p.parser.st.Warnings
	p.mu.Unlock()
	for _, r := range recs {
		p.logRecord(r, warnings)
	}
	if changed {
		p.changed()
	}
}

func (p *Process) stderrLine(line string) {
	p.mu.Lock()
	changed := p.parser.Stderr(line)
	var msg string
	if st := p.parser.st; len(st.LastErrors) > 0 && changed {
		msg = st.LastErrors[len(st.LastErrors)-1]
	}
	p.mu.Unlock()
	if changed {
		p.logger.Warn(msg, "component", "redis-shake", "stream", "stderr")
		p.changed()
	}
}

func (p *Process) changed() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// logRecord logs a sanitized record. Past the first warnings the parser
// returns a sample of them (see maxWarnRecords): say so.
func (p *Process) logRecord(r Record, warnings int64) {
	lvl := slog.LevelInfo
	attrs := []any{"component", "redis-shake"}
	switch r.Level {
	case LevelTrace, LevelDebug:
		lvl = slog.LevelDebug
	case LevelWarn:
		lvl = slog.LevelWarn
		if warnings > maxWarnRecords {
			attrs = append(attrs, "warnings", warnings, "sampled", fmt.Sprintf("1 in %d warnings logged", warnRecordEvery))
		}
	case LevelError, LevelFatal, LevelPanic:
		lvl = slog.LevelError
	}
	p.logger.Log(context.Background(), lvl, r.Message, attrs...)
}

// stopper sends SIGTERM on Stop or ctx, then SIGKILL after the grace
// period.
func (p *Process) stopper(ctx context.Context, exited <-chan struct{}) {
	var cause error
	select {
	case <-exited:
		return
	case <-p.stopCh:
	case <-ctx.Done():
		cause = ctx.Err()
	}
	p.stopMu.Lock()
	p.stopState.requested, p.stopState.cause = true, cause
	p.stopMu.Unlock()
	p.logger.Info("stopping redis-shake", "signal", "SIGTERM", "grace", p.opts.Grace.String())
	if err := terminate(p.cmd.Process); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.logger.Warn("signal redis-shake", "err", err.Error())
	}
	t := time.NewTimer(p.opts.Grace)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		p.stopMu.Lock()
		p.stopState.killed = true
		p.stopMu.Unlock()
		p.logger.Warn("redis-shake did not stop in time; killing it", "grace", p.opts.Grace.String())
		if err := kill(p.cmd.Process); err != nil && !errors.Is(err, os.ErrProcessDone) {
			p.logger.Warn("kill redis-shake", "err", err.Error())
		}
	}
}

// reportLoop forwards status changes to the Reporter, throttled.
func (p *Process) reportLoop(ctx context.Context, exited <-chan struct{}) {
	if p.opts.Reporter == nil {
		return
	}
	var last Status
	var lastAt time.Time
	var due <-chan time.Time
	send := func(st Status) {
		p.report(ctx, st)
		last, lastAt, due = st, time.Now(), nil
	}
	for {
		select {
		case <-exited:
			return
		case <-due:
			send(p.Status())
		case <-p.notify:
			st := p.Status()
			switch {
			case significant(last, st) || time.Since(lastAt) >= p.opts.ReportEvery:
				send(st)
			case due == nil:
				due = time.After(time.Until(lastAt.Add(p.opts.ReportEvery)))
			}
		}
	}
}

// significant reports a change worth reporting at once.
func significant(a, b Status) bool {
	return a.Stage != b.Stage || a.ReadyForCutover != b.ReadyForCutover ||
		a.Stopping != b.Stopping || (a.Failure == nil) != (b.Failure == nil) ||
		a.Progress.Phase != b.Progress.Phase
}

func (p *Process) report(ctx context.Context, st Status) {
	if p.opts.Reporter == nil {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reportTimeout)
	defer cancel()
	if err := p.opts.Reporter.Report(rctx, st); err != nil {
		p.logger.Warn("report redis-shake status", "err", Sanitize(err.Error()))
	}
}

// finish works out the result and the error, and sends the last report.
func (p *Process) finish(ctx context.Context, waitErr error) {
	p.mu.Lock()
	last := p.parser.Flush()
	st := p.parser.Status()
	p.mu.Unlock()
	if last != nil {
		p.logRecord(*last, st.Warnings)
	}
	p.stopMu.Lock()
	stop := p.stopState
	p.stopMu.Unlock()

	res := Result{StopRequested: stop.requested, Killed: stop.killed, Duration: time.Since(p.started), ExitCode: -1}
	if ps := p.cmd.ProcessState; ps != nil {
		res.ExitCode = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = ws.Signal().String()
		}
	} else if waitErr != nil {
		p.logger.Warn("wait for redis-shake", "err", Sanitize(waitErr.Error()))
	}
	exit := fmt.Sprintf("exit status %d", res.ExitCode)
	if res.Signal != "" {
		exit = "signal: " + res.Signal
	}

	var err error
	exitFailure := func(reason string) {
		f := &Failure{Kind: FailureExit, Reason: reason, Message: exit, Time: time.Now().UTC()}
		st.Failure, st.Stage, st.ReadyForCutover = f, StageFailed, false
		err = f
	}
	switch {
	case st.Failure != nil:
		err = fmt.Errorf("redis-shake (%s): %w", exit, st.Failure)
	case stop.killed:
		err = fmt.Errorf("redis-shake did not exit within %s of SIGTERM and was killed; writes in flight may be lost: %w", p.opts.Grace, ErrKilled)
	case stop.requested && p.opts.Config.Mode == ModeSync:
		// Stopping is how a sync ends.
	case stop.requested && st.Stage != StageDone:
		err = ErrStopped
		if stop.cause != nil {
			err = fmt.Errorf("%w: %w", ErrStopped, stop.cause)
		}
	case res.ExitCode != 0:
		exitFailure(fmt.Sprintf("redis-shake ended (%s) without logging an error%s", exit, lastErrorHint(st)))
	case p.opts.Config.Mode == ModeSync && !stop.requested:
		exitFailure("redis-shake stopped replicating by itself (" + exit + ") before the cutover")
	case st.Stage != StageDone:
		exitFailure("redis-shake exited (" + exit + ") without finishing: it never logged \"all done\"")
	}
	res.Status = st
	p.result, p.err = res, err

	attrs := []any{"exit", exit, "stage", string(st.Stage), "duration", res.Duration.Round(time.Millisecond).String()}
	if err != nil {
		p.logger.Error("redis-shake ended", append(attrs, "err", err.Error())...)
	} else {
		p.logger.Info("redis-shake ended", attrs...)
	}
	p.report(ctx, st)
}

func lastErrorHint(st Status) string {
	if n := len(st.LastErrors); n > 0 {
		return "; last output: " + shorten(strings.TrimSpace(st.LastErrors[n-1]))
	}
	return ""
}
