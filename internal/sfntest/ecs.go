package sfntest

// ECS tasks as local processes, and the task token API.
//
// aws-local-stepfunctions 3.0.0 has neither ECS integrations nor task
// tokens. The harness emulates both, as far as the migration's redis-shake
// states use them:
//
//   - $$.Task.Token: the runner (js/runner.mjs) hands out a fresh random
//     token each time a state's Parameters read it, finds the tokens in the
//     state's effective input and sends them with the task call.
//   - arn:aws:states:::ecs:runTask.sync: the container's program
//     (ECSConfig.Binary, e.g. shake-task built by BuildShakeTask) runs as a
//     local process with the environment of the task definition
//     (ECSConfig.Env) and of the state's container overrides; exit code 0
//     succeeds the state, any other fails it with States.TaskFailed, as
//     Step Functions does when the essential container exits non-zero.
//     Aborting the execution stops the task (SIGTERM), as Step Functions
//     does for .sync.
//   - arn:aws:states:::ecs:runTask.waitForTaskToken: the same process; the
//     state waits for SendTaskSuccess or SendTaskFailure with its token,
//     which the harness serves as the Step Functions API (its URL is the
//     process's AWS_ENDPOINT_URL_SFN). SendTaskHeartbeat is recorded and
//     restarts the state's HeartbeatSeconds. Differences: a process that
//     exits without answering fails the state at once with
//     States.HeartbeatTimeout (Step Functions would wait for
//     HeartbeatSeconds to pass); an ended wait answers TaskTimedOut, an
//     unknown token TaskDoesNotExist.
//   - ECS task metadata (ECS_CONTAINER_METADATA_URI_V4, GET .../task with
//     the TaskARN) and StopTask ([Harness.ECSTasks], which sends the
//     process SIGTERM as ECS sends the container's).
//
// The process group is killed when the harness closes, like a container's
// remaining processes when it stops.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/awstest"
)

// The ECS integrations the harness runs (with Config.ECS).
const (
	ResourceECSRunTaskSync         = "arn:aws:states:::ecs:runTask.sync"
	ResourceECSRunTaskWaitForToken = "arn:aws:states:::ecs:runTask.waitForTaskToken"

	// ecsTaskLimit bounds a task call (the harness's, not Step Functions').
	ecsTaskLimit = 10 * time.Minute
	// ecsStopTimeout is ECS's stopTimeout default: SIGTERM, then SIGKILL.
	ecsStopTimeout = 30 * time.Second
)

// ECSConfig runs the ecs:runTask integrations as local processes; see
// ecs.go's comment.
type ECSConfig struct {
	// Binary is the container's program.
	Binary string
	// Env is the task definition's environment, plus whatever points the
	// program at the local services (AWS_ENDPOINT_URL for DynamoDB and
	// Secrets Manager, credentials, ...). The harness adds the container
	// overrides' variables, AWS_ENDPOINT_URL_SFN (itself) and
	// ECS_CONTAINER_METADATA_URI_V4.
	Env []string
}

// TaskRun is one ECS task the harness ran.
type TaskRun struct {
	ARN      string
	State    string
	Resource string
	// Env holds the container overrides' variables.
	Env map[string]string
	// ExitCode is -1 while it runs (or when it was killed).
	ExitCode int
	Running  bool
	// StopReason is StopTask's reason, if it was stopped.
	StopReason string
	// Log is the tail of its stdout and stderr.
	Log string
}

// TokenCall is one task token call served (SendTaskHeartbeat,
// SendTaskSuccess, SendTaskFailure).
type TokenCall struct {
	Action string
	Token  string
	Output string
	Error  string
	Cause  string
	// Answer is the error the call was answered with ("" when accepted).
	Answer string
}

// TokenCalls returns the task token calls served so far.
func (h *Harness) TokenCalls() []TokenCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]TokenCall(nil), h.tokenCalls...)
}

// TaskRuns returns the ECS tasks run so far.
func (h *Harness) TaskRuns() []TaskRun {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []TaskRun
	for _, r := range h.runs {
		out = append(out, r.snapshot())
	}
	return out
}

// ECSTasks stops the harness's ECS tasks (internal/api's Tasks).
type ECSTasks struct{ h *Harness }

// ECSTasks returns the harness's StopTask.
func (h *Harness) ECSTasks() ECSTasks { return ECSTasks{h} }

// Stop is ecs:StopTask: it sends the task's process SIGTERM.
func (e ECSTasks) Stop(_ context.Context, taskARN, reason string) error {
	e.h.mu.Lock()
	var run *taskRun
	for _, r := range e.h.runs {
		if r.arn == taskARN {
			run = r
		}
	}
	e.h.mu.Unlock()
	if run == nil {
		return fmt.Errorf("ECS InvalidParameterException: the referenced task %s was not found", taskARN)
	}
	run.stop(reason)
	return nil
}

// taskRun is a running (or ended) task process.
type taskRun struct {
	arn, id, state, resource string
	env                      map[string]string
	cmd                      *exec.Cmd
	done                     chan struct{}
	log                      *awstest.TailBuffer

	mu         sync.Mutex
	exitCode   int
	running    bool
	stopReason string
}

func (r *taskRun) snapshot() TaskRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	return TaskRun{ARN: r.arn, State: r.state, Resource: r.resource, Env: r.env, ExitCode: r.exitCode,
		Running: r.running, StopReason: r.stopReason, Log: r.log.String()}
}

func (r *taskRun) stop(reason string) {
	r.mu.Lock()
	if r.stopReason == "" {
		r.stopReason = reason
	}
	running := r.running
	r.mu.Unlock()
	if running {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
	}
}

// kill stops the task as a container stops: SIGTERM, then SIGKILL of
// everything in it after the stop timeout.
func (r *taskRun) kill(timeout time.Duration) {
	r.stop("sfntest: the harness closed")
	select {
	case <-r.done:
	case <-time.After(timeout):
	}
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
}

func (r *taskRun) code() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exitCode
}

// tokenWait is a state waiting for its task token.
type tokenWait struct {
	heartbeat chan struct{}
	result    chan taskAnswer
	ended     bool // under Harness.mu
}

type ecsParameters struct {
	Cluster        string
	TaskDefinition string
	Overrides      struct {
		ContainerOverrides []struct {
			Name        string
			Environment []struct{ Name, Value string }
		}
	}
}

// ecsHandler returns the handler of an ECS resource, nil for others.
func (h *Harness) ecsHandler(state, resource string, tokens []string, heartbeat int) TaskHandler {
	if resource != ResourceECSRunTaskSync && resource != ResourceECSRunTaskWaitForToken {
		return nil
	}
	if h.cfg.ECS == nil {
		h.t.Errorf("sfntest: state %s calls %s but the harness has no ECS (Config.ECS)", state, resource)
		return failTask("sfntest.NoECS", "no ECS configured")
	}
	return func(ctx context.Context, input json.RawMessage) (json.RawMessage, error) {
		var p ecsParameters
		if err := json.Unmarshal(input, &p); err != nil {
			return nil, &TaskError{Name: "ECS.InvalidParameterException", Cause: err.Error()}
		}
		if resource == ResourceECSRunTaskSync {
			return h.runTaskSync(ctx, state, resource, p)
		}
		if len(tokens) != 1 {
			h.t.Errorf("sfntest: state %s (%s) passes %d task tokens ($$.Task.Token) to the task, want 1", state, resource, len(tokens))
			return nil, &TaskError{Name: "States.Runtime", Cause: "no task token in the task's parameters"}
		}
		return h.runTaskWaitForToken(ctx, state, resource, p, tokens[0], time.Duration(heartbeat)*time.Second)
	}
}

func (h *Harness) runTaskSync(ctx context.Context, state, resource string, p ecsParameters) (json.RawMessage, error) {
	run, err := h.startTask(state, resource, p)
	if err != nil {
		return nil, err
	}
	select {
	case <-run.done:
	case <-ctx.Done():
		// The execution was aborted (or the call timed out): Step Functions
		// stops a .sync task.
		run.stop("sfntest: the execution no longer waits for the task")
		return nil, &TaskError{Name: "States.TaskFailed", Cause: "the execution stopped waiting for the task"}
	}
	desc := taskDescription(run)
	if run.code() != 0 {
		return nil, &TaskError{Name: "States.TaskFailed", Cause: string(desc)}
	}
	return desc, nil
}

func (h *Harness) runTaskWaitForToken(ctx context.Context, state, resource string, p ecsParameters, token string, heartbeat time.Duration) (json.RawMessage, error) {
	w := &tokenWait{heartbeat: make(chan struct{}, 1), result: make(chan taskAnswer, 1)}
	h.mu.Lock()
	h.tokenWaits[token] = w
	h.mu.Unlock()
	end := func() {
		h.mu.Lock()
		w.ended = true
		h.mu.Unlock()
	}
	run, err := h.startTask(state, resource, p)
	if err != nil {
		end()
		return nil, err
	}
	answer := func(a taskAnswer) (json.RawMessage, error) {
		if a.Error != "" || a.Cause != "" {
			return nil, &TaskError{Name: a.Error, Cause: a.Cause}
		}
		return a.Output, nil
	}
	var hbTimer <-chan time.Time
	if heartbeat > 0 {
		t := time.NewTimer(heartbeat)
		defer t.Stop()
		hbTimer = t.C
		go func() {
			for {
				select {
				case <-w.heartbeat:
					t.Reset(heartbeat)
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	select {
	case a := <-w.result:
		return answer(a)
	case <-run.done:
		end()
		select {
		case a := <-w.result: // answered just before it exited
			return answer(a)
		default:
		}
		return nil, &TaskError{Name: "States.HeartbeatTimeout", Cause: fmt.Sprintf(
			"sfntest: task %s exited (code %d) without sending its task token's success or failure (Step Functions would wait for HeartbeatSeconds)", run.arn, run.code())}
	case <-hbTimer:
		end()
		return nil, &TaskError{Name: "States.HeartbeatTimeout", Cause: fmt.Sprintf("no heartbeat for %s", heartbeat)}
	case <-ctx.Done():
		// Aborted: the token is no longer waited for; the task finds out at
		// its next heartbeat (Step Functions does not stop it).
		end()
		return nil, &TaskError{Name: "States.TaskFailed", Cause: "the execution stopped waiting for the task token"}
	}
}

// startTask starts the task's process.
func (h *Harness) startTask(state, resource string, p ecsParameters) (*taskRun, error) {
	id := strings.ReplaceAll(newID(), "-", "")
	cluster := p.Cluster
	if i := strings.LastIndex(cluster, "/"); i >= 0 {
		cluster = cluster[i+1:]
	}
	run := &taskRun{
		arn: fmt.Sprintf("arn:aws:ecs:%s:%s:task/%s/%s", Region, Account, cluster, id),
		id:  id, state: state, resource: resource,
		env:      map[string]string{},
		done:     make(chan struct{}),
		log:      &awstest.TailBuffer{},
		exitCode: -1, running: true,
	}
	env := append([]string{"PATH=" + os.Getenv("PATH")}, h.cfg.ECS.Env...)
	env = append(env,
		"AWS_ENDPOINT_URL_SFN="+h.server.URL,
		"ECS_CONTAINER_METADATA_URI_V4="+h.server.URL+"/ecs-metadata/"+id,
	)
	for _, c := range p.Overrides.ContainerOverrides {
		for _, kv := range c.Environment {
			run.env[kv.Name] = kv.Value
			env = append(env, kv.Name+"="+kv.Value)
		}
	}
	cmd := exec.Command(h.cfg.ECS.Binary)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = run.log, run.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	run.cmd = cmd

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, &TaskError{Name: "States.TaskFailed", Cause: "the harness is closed"}
	}
	if err := cmd.Start(); err != nil {
		h.mu.Unlock()
		return nil, &TaskError{Name: "States.TaskFailed", Cause: "start the task: " + err.Error()}
	}
	h.runs[id] = run
	h.invocations.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.invocations.Done()
		err := cmd.Wait()
		code := -1
		var ee *exec.ExitError
		if err == nil {
			code = 0
		} else if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		run.mu.Lock()
		run.exitCode, run.running = code, false
		run.mu.Unlock()
		close(run.done)
		h.t.Logf("sfntest: ECS task %s (state %s) exited with %d; its output:\n%s", id, state, code, run.log.String())
	}()
	return run, nil
}

// taskDescription is the task as the .sync integration returns it
// (DescribeTasks' task, the fields that matter here).
func taskDescription(run *taskRun) json.RawMessage {
	code := run.code()
	run.mu.Lock()
	reason := run.stopReason
	run.mu.Unlock()
	stopCode := "EssentialContainerExited"
	if reason != "" {
		stopCode = "UserInitiated"
	} else {
		reason = "Essential container in task exited"
	}
	out, _ := json.Marshal(map[string]any{
		"TaskArn": run.arn, "LastStatus": "STOPPED", "DesiredStatus": "STOPPED",
		"StopCode": stopCode, "StoppedReason": reason,
		"Containers": []map[string]any{{"Name": filepath.Base(run.cmd.Path), "ExitCode": code, "LastStatus": "STOPPED"}},
	})
	return out
}

// closeTasks stops the tasks still running (SIGTERM, then SIGKILL).
func (h *Harness) closeTasks() {
	h.mu.Lock()
	var runs []*taskRun
	for _, r := range h.runs {
		runs = append(runs, r)
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range runs {
		wg.Go(func() { r.kill(ecsStopTimeout / 3) })
	}
	wg.Wait()
}

// serveMetadata is the ECS task metadata endpoint (v4) of a task.
func (h *Harness) serveMetadata(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	run := h.runs[r.PathValue("task")]
	h.mu.Unlock()
	if run == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"TaskARN": run.arn, "Family": "shake-task", "DesiredStatus": "RUNNING", "KnownStatus": "RUNNING"})
}

// serveSFN is the Step Functions API's task token calls (JSON 1.0).
func (h *Harness) serveSFN(w http.ResponseWriter, r *http.Request) {
	action, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "AWSStepFunctions.")
	if !ok {
		h.t.Errorf("sfntest: unexpected request %s %s (X-Amz-Target %q)", r.Method, r.URL, r.Header.Get("X-Amz-Target"))
		http.Error(w, "not served by sfntest", http.StatusNotFound)
		return
	}
	var in struct {
		TaskToken string `json:"taskToken"`
		Output    string `json:"output"`
		Error     string `json:"error"`
		Cause     string `json:"cause"`
	}
	fail := func(status int, typ, msg string) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("X-Amzn-ErrorType", typ)
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		fail(http.StatusBadRequest, "ValidationException", err.Error())
		return
	}
	call := TokenCall{Action: action, Token: in.TaskToken, Output: in.Output, Error: in.Error, Cause: in.Cause}
	answer := func() (typ, msg string) {
		switch action {
		case "SendTaskHeartbeat", "SendTaskSuccess", "SendTaskFailure":
		default:
			h.t.Errorf("sfntest: Step Functions action %s is not served", action)
			return "UnknownOperationException", action
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		wait, ok := h.tokenWaits[in.TaskToken]
		switch {
		case !ok:
			return "TaskDoesNotExist", "Task does not exist"
		case wait.ended:
			return "TaskTimedOut", "Task Timed Out: 'Provided task does not exist anymore'"
		}
		switch action {
		case "SendTaskHeartbeat":
			select {
			case wait.heartbeat <- struct{}{}:
			default:
			}
		case "SendTaskSuccess":
			if !json.Valid([]byte(in.Output)) {
				return "InvalidOutput", "the output is not JSON"
			}
			wait.ended = true
			wait.result <- taskAnswer{Output: json.RawMessage(in.Output)}
		case "SendTaskFailure":
			wait.ended = true
			wait.result <- taskAnswer{Error: cmpOr(in.Error, "States.TaskFailed"), Cause: in.Cause}
		}
		return "", ""
	}
	typ, msg := answer()
	call.Answer = typ
	h.mu.Lock()
	h.tokenCalls = append(h.tokenCalls, call)
	h.mu.Unlock()
	if typ != "" {
		fail(http.StatusBadRequest, typ, msg)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	_, _ = w.Write([]byte("{}"))
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

var shakeTaskBuild struct {
	once sync.Once
	path string
	err  error
}

// BuildShakeTask builds ./shake-task once per test process (into a folder
// that RemoveBuilds removes) and returns the binary.
func BuildShakeTask(t testing.TB) string {
	t.Helper()
	b := &shakeTaskBuild
	b.once.Do(func() {
		root, err := repoRoot()
		if err != nil {
			b.err = err
			return
		}
		dir, err := os.MkdirTemp("", "kvmigrate-sfntest-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "shake-task")
		cmd := exec.Command("go", "build", "-o", b.path, "./shake-task")
		cmd.Dir = root
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			b.err = fmt.Errorf("go build ./shake-task: %w\n%s", err, out.String())
		}
	})
	if b.err != nil {
		t.Fatalf("sfntest: %v", b.err)
	}
	return b.path
}

// RemoveBuilds removes what BuildShakeTask built (call it from TestMain).
func RemoveBuilds() {
	if p := shakeTaskBuild.path; p != "" {
		_ = os.RemoveAll(filepath.Dir(p))
	}
}
