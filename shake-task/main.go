// Command shake-task is the ECS Fargate task of the redis-shake modes: it
// runs redis-shake for one job under kvmigrate's supervisor and reports
// the end to Step Functions. Wiring only: the work is in
// internal/workflow (ShakeStep) and internal/shake; the AWS clients are in
// aws.go.
//
// The state machine starts it with container overrides: JOB_ID, MODE
// (redis_shake or redis_shake_sync) and, in sync mode
// (ecs:runTask.waitForTaskToken), TASK_TOKEN. The task definition sets
// TABLE_NAME and SECRET_NAME_PREFIX. Scan mode (ecs:runTask.sync) exits 0
// when the copy is complete and 1 otherwise. Sync mode replicates until it
// is cut over, heartbeating the task token; a cutover (the job record's
// request, then or with a SIGTERM from ecs:StopTask) stops redis-shake
// gracefully and sends the token's success, so that the execution goes on
// to validate; anything else sends its failure. SIGTERM (Fargate's stop)
// stops redis-shake gracefully within the supervisor's grace period.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
	"github.com/kvmigrate/kvmigrate/internal/phase"
	"github.com/kvmigrate/kvmigrate/internal/shake"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// Environment variables.
const (
	EnvJobID        = "JOB_ID"
	EnvMode         = "MODE"
	EnvTaskToken    = "TASK_TOKEN"
	EnvTable        = "TABLE_NAME"
	EnvSecretPrefix = "SECRET_NAME_PREFIX"
	EnvDir          = "SHAKE_DIR"         // redis-shake's working directory (default /tmp/shake)
	EnvHeartbeat    = "HEARTBEAT_SECONDS" // between task token heartbeats (default 60)
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		log.Error("cannot start", "error", err.Error())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	d, err := newDeps(ctx, cfg, log)
	if err != nil {
		log.Error("cannot start", "error", err.Error())
		os.Exit(2)
	}
	code := run(ctx, cfg, d)
	stop()
	os.Exit(code)
}

// config is the task's configuration.
type config struct {
	JobID, Mode, TaskToken string
	Table, SecretPrefix    string
	Dir                    string
	Heartbeat              time.Duration
}

// loadConfig reads the configuration; every problem is in the one error.
func loadConfig(getenv func(string) string) (config, error) {
	var problems []string
	get := func(name string, required bool) string {
		v := strings.TrimSpace(getenv(name))
		if v == "" && required {
			problems = append(problems, name+" is not set")
		}
		return v
	}
	c := config{
		JobID: get(EnvJobID, true), Mode: get(EnvMode, true), TaskToken: get(EnvTaskToken, false),
		Table: get(EnvTable, true), SecretPrefix: get(EnvSecretPrefix, true),
		Dir: get(EnvDir, false), Heartbeat: time.Minute,
	}
	if c.JobID != "" && !phase.ValidJobID(c.JobID) {
		problems = append(problems, fmt.Sprintf("%s=%q is not a job id", EnvJobID, c.JobID))
	}
	switch c.Mode {
	case "", job.ModeRedisShake:
	case job.ModeRedisShakeSync:
		if c.TaskToken == "" {
			problems = append(problems, EnvTaskToken+" is not set (mode "+job.ModeRedisShakeSync+" runs as ecs:runTask.waitForTaskToken)")
		}
	default:
		problems = append(problems, fmt.Sprintf("%s=%q: want %s or %s", EnvMode, c.Mode, job.ModeRedisShake, job.ModeRedisShakeSync))
	}
	if c.Dir == "" {
		c.Dir = "/tmp/shake"
	}
	if v := get(EnvHeartbeat, false); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			problems = append(problems, fmt.Sprintf("%s=%q: want a whole number of seconds, at least 1", EnvHeartbeat, v))
		} else {
			c.Heartbeat = time.Duration(n) * time.Second
		}
	}
	if len(problems) > 0 {
		return c, errors.New("configuration: " + strings.Join(problems, "; "))
	}
	return c, nil
}

// taskTokens reports on the task token of a waitForTaskToken task
// (aws.go: Step Functions). Errors wrap errTokenGone when the execution
// no longer waits for the token (it timed out, was stopped, or the token is
// unknown).
type taskTokens interface {
	Heartbeat(ctx context.Context, token string) error
	Succeed(ctx context.Context, token, output string) error
	Fail(ctx context.Context, token, name, cause string) error
}

var errTokenGone = errors.New("the execution no longer waits for this task")

// deps are what run uses.
type deps struct {
	store   job.Store
	secrets lambdafn.SecretResolver
	tokens  taskTokens
	log     *slog.Logger
	// shake overrides redis-shake's binary and timings (tests); Dir comes
	// from the configuration.
	shake workflow.ShakeOptions
	// taskARN is this task's ARN (aws.go: from the ECS task metadata), kept
	// in the job record for ecs:StopTask; "" when unknown.
	taskARN string
}

// poll is how often the task reads the job record for a request (cutover,
// stop) besides its progress writes, which see requests too.
const poll = 5 * time.Second

// reportTimeout bounds the Step Functions calls at the end.
const reportTimeout = 30 * time.Second

// run runs the job's redis-shake step and reports its end; it returns the
// exit status.
func run(ctx context.Context, cfg config, d deps) int {
	log := d.log.With("jobId", cfg.JobID, "mode", cfg.Mode)
	syncMode := cfg.Mode == job.ModeRedisShakeSync
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var hb sync.WaitGroup
	if syncMode {
		hb.Go(func() { heartbeat(runCtx, cfg, d.tokens, log, cancel) })
	}

	so := d.shake
	so.Dir = cfg.Dir
	if so.Poll == 0 {
		so.Poll = poll
	}
	if d.taskARN != "" {
		if _, err := d.store.Update(runCtx, cfg.JobID, func(j *job.Job) { j.TaskARN = d.taskARN }); err != nil {
			log.Warn("record the task ARN in the job", "error", err.Error())
		}
	}
	l := &workflow.Local{Store: d.store, Log: log}
	out, err := l.ShakeStep(runCtx, cfg.JobID, func(ctx context.Context, j job.Job) (endpoint.Endpoint, endpoint.Endpoint, error) {
		if j.Mode != cfg.Mode {
			return endpoint.Endpoint{}, endpoint.Endpoint{}, fmt.Errorf("job %s is a %s job, but the task was started for %s: %w", j.ID, j.Mode, cfg.Mode, job.ErrInvalid)
		}
		source, target := phase.JobEndpoints(j)
		src, err := d.secrets.Resolve(ctx, source)
		if err != nil {
			return src, endpoint.Endpoint{}, fmt.Errorf("source: %w", err)
		}
		dst, err := d.secrets.Resolve(ctx, target)
		if err != nil {
			return src, dst, fmt.Errorf("target: %w", err)
		}
		return src, dst, nil
	}, so)
	if cause := context.Cause(runCtx); err != nil && errors.Is(cause, errTokenGone) {
		err = fmt.Errorf("%w: %w", err, cause)
	}
	cancel(nil)
	hb.Wait()

	if err == nil {
		log.Info("redis-shake step done", "end", string(out.End), "stage", out.Job.Stage, "entries", out.Job.Progress.Keys)
	} else {
		log.Error("redis-shake step failed", "end", string(out.End), "error", redact(err.Error()))
	}
	if !syncMode {
		if err != nil {
			return 1
		}
		return 0
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), reportTimeout)
	defer rcancel()
	if err == nil {
		output, _ := json.Marshal(map[string]string{"jobId": cfg.JobID, "mode": cfg.Mode, "end": string(out.End), "stage": out.Job.Stage})
		if serr := d.tokens.Succeed(rctx, cfg.TaskToken, string(output)); serr != nil {
			log.Error("send the task success", "error", serr.Error())
			return 1
		}
		return 0
	}
	name, cause := failure(err)
	if ferr := d.tokens.Fail(rctx, cfg.TaskToken, name, cause); ferr != nil {
		log.Error("send the task failure", "error", ferr.Error())
	}
	return 1
}

// heartbeat sends the task token's heartbeat now and every cfg.Heartbeat;
// when the execution no longer waits, it stops the run.
func heartbeat(ctx context.Context, cfg config, tokens taskTokens, log *slog.Logger, stop context.CancelCauseFunc) {
	t := time.NewTicker(cfg.Heartbeat)
	defer t.Stop()
	for {
		err := tokens.Heartbeat(ctx, cfg.TaskToken)
		switch {
		case errors.Is(err, errTokenGone):
			log.Error("the execution no longer waits for this task: stopping redis-shake", "error", err.Error())
			stop(errTokenGone)
			return
		case err != nil && ctx.Err() == nil:
			log.Warn("task heartbeat", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// failure is the error name and cause sent with the task's failure: the
// names of phase's error types (ErrStopped is a ConflictError), and the
// message sanitized and cut to Step Functions' limits.
func failure(err error) (name, cause string) {
	classified := phase.Classify(err)
	if errors.Is(err, workflow.ErrStopped) {
		classified = &phase.ConflictError{Err: err}
	}
	t := reflect.TypeOf(classified)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name(), cut(redact(err.Error()), 32768)
}

func redact(s string) string { return endpoint.Redact(shake.Sanitize(s)) }

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
