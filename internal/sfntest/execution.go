package sfntest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/awstest"
)

// Status is an execution's status, as Step Functions names it.
type Status string

const (
	StatusRunning   Status = "RUNNING"
	StatusSucceeded Status = "SUCCEEDED"
	StatusFailed    Status = "FAILED"
	StatusAborted   Status = "ABORTED"
	StatusTimedOut  Status = "TIMED_OUT"
)

// ErrExecutionExists: an execution of that name was started already
// (Step Functions' ExecutionAlreadyExists).
var ErrExecutionExists = errors.New("execution already exists")

// ErrNoExecution: no execution has that name or ARN
// (Step Functions' ExecutionDoesNotExist).
var ErrNoExecution = errors.New("execution does not exist")

const (
	maxLine     = 64 << 20
	stopTimeout = 10 * time.Second
)

// Result is how an execution ended.
type Result struct {
	Status Status
	// Output is the execution's output (SUCCEEDED).
	Output json.RawMessage
	// Error and Cause are the failure's (FAILED, TIMED_OUT).
	Error string
	Cause string
}

// Event is one of the engine's execution events (ExecutionStarted,
// StateEntered, StateExited, StateFailed, StateRetried, StateCaught,
// MapIterationStarted, ..., ExecutionSucceeded/Failed/Aborted/Timeout).
type Event struct {
	Type      string `json:"type"`
	Timestamp int64  `json:"timestamp"`
	// State is the state of a State* event; ParentState the Map or Parallel
	// state of an event from an iteration or branch (Index is its index).
	State       *StateData `json:"state,omitempty"`
	ParentState *StateData `json:"parentState,omitempty"`
	Index       *int       `json:"index,omitempty"`
	// Error and Cause are a failure's (StateFailed, ExecutionFailed, ...).
	Error string          `json:"Error,omitempty"`
	Cause json.RawMessage `json:"Cause,omitempty"`
	// Retry is a StateRetried event's attempt.
	Retry *struct {
		Attempt int `json:"attempt"`
	} `json:"retry,omitempty"`
}

// StateData is a state in an event.
type StateData struct {
	Name   string          `json:"name"`
	Type   string          `json:"type"`
	Input  json.RawMessage `json:"input,omitempty"`
	Output json.RawMessage `json:"output,omitempty"`
}

// Execution is one running or finished execution.
type Execution struct {
	Name string
	ARN  string

	h      *Harness
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr awstest.TailBuffer
	done   chan struct{}

	input   json.RawMessage
	started time.Time

	mu        sync.Mutex
	events    []Event
	result    Result
	err       error // the runner failed (not the execution)
	stopped   bool
	stopCause string
}

type runSpec struct {
	Definition      json.RawMessage `json:"definition"`
	Input           json.RawMessage `json:"input"`
	Context         map[string]any  `json:"context"`
	Region          string          `json:"region"`
	TaskURL         string          `json:"taskURL"`
	RetryIntervalMs *int64          `json:"retryIntervalMs,omitempty"`
}

// StateMachineARN is the ARN the harness gives the state machine.
func StateMachineARN() string {
	return "arn:aws:states:" + Region + ":" + Account + ":stateMachine:" + StateMachineName
}

// ExecutionARN is the ARN of the execution with that name.
func ExecutionARN(name string) string {
	return "arn:aws:states:" + Region + ":" + Account + ":execution:" + StateMachineName + ":" + name
}

// Start starts an execution named name (unique per harness, like Step
// Functions' execution names) with input (JSON bytes, json.RawMessage, or
// a value to marshal). ctx bounds the start only.
func (h *Harness) Start(ctx context.Context, name string, input any) (*Execution, error) {
	raw, err := toJSON(input)
	if err != nil {
		return nil, fmt.Errorf("start execution %s: input: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start execution %s: %w", name, err)
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, fmt.Errorf("start execution %s: the harness is closed", name)
	}
	if _, ok := h.executions[name]; ok {
		h.mu.Unlock()
		return nil, fmt.Errorf("start execution %s: %w", name, ErrExecutionExists)
	}
	e := &Execution{Name: name, ARN: ExecutionARN(name), h: h, done: make(chan struct{}), input: raw, started: time.Now()}
	e.result.Status = StatusRunning
	h.executions[name] = e
	h.mu.Unlock()

	if err := e.start(raw); err != nil {
		h.mu.Lock()
		delete(h.executions, name)
		h.mu.Unlock()
		return nil, fmt.Errorf("start execution %s: %w", name, err)
	}
	return e, nil
}

// Execution returns the execution with that name or ARN.
func (h *Harness) Execution(nameOrARN string) (*Execution, error) {
	name := nameOrARN
	if strings.HasPrefix(name, "arn:") {
		name = name[strings.LastIndexByte(name, ':')+1:]
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.executions[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", nameOrARN, ErrNoExecution)
	}
	return e, nil
}

func (e *Execution) start(input json.RawMessage) error {
	h := e.h
	spec := runSpec{
		Definition: h.definition,
		Input:      input,
		Context: map[string]any{
			"Execution": map[string]any{
				"Id":      e.ARN,
				"Name":    e.Name,
				"RoleArn": "arn:aws:iam::" + Account + ":role/" + StateMachineName + "Role",
			},
			"StateMachine": map[string]any{"Id": StateMachineARN(), "Name": StateMachineName},
		},
		Region:  Region,
		TaskURL: h.server.URL + "/tasks",
	}
	if !h.cfg.RealRetryIntervals {
		ms := h.cfg.RetryInterval.Milliseconds()
		spec.RetryIntervalMs = &ms
	}
	data, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	specFile := filepath.Join(h.dir, "execution-"+safeName(e.Name)+".json")
	if err := os.WriteFile(specFile, data, 0o600); err != nil {
		return err
	}

	cmd := exec.Command(h.node, h.runner, specFile)
	cmd.Dir = filepath.Dir(h.runner)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + h.dir,
		// The runner's AWS SDK reaches the harness only, with dummy keys.
		"AWS_ACCESS_KEY_ID=" + accessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + secretAccessKey,
		"AWS_REGION=" + Region,
		"AWS_ENDPOINT_URL=" + h.server.URL,
		"AWS_ENDPOINT_URL_LAMBDA=" + h.server.URL,
		"AWS_CONFIG_FILE=" + filepath.Join(h.dir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(h.dir, "no-aws-credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_MAX_ATTEMPTS=1",
	}
	cmd.Stderr = &e.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if e.stdin, err = cmd.StdinPipe(); err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s %s: %w", h.node, h.runner, err)
	}
	e.cmd = cmd
	go e.read(stdout)
	return nil
}

// read collects the runner's events and result, then reaps it.
func (e *Execution) read(stdout io.Reader) {
	defer close(e.done)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	var got bool
	for sc.Scan() {
		var line struct {
			Event  *Event `json:"event"`
			Result *struct {
				Status Status          `json:"status"`
				Output json.RawMessage `json:"output"`
				Error  string          `json:"error"`
				Cause  string          `json:"cause"`
			} `json:"result"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			e.setErr(fmt.Errorf("runner wrote %q: %w", sc.Text(), err))
			continue
		}
		e.mu.Lock()
		if line.Event != nil {
			e.events = append(e.events, *line.Event)
		}
		if r := line.Result; r != nil {
			e.result = Result{Status: r.Status, Output: r.Output, Error: r.Error, Cause: r.Cause}
			got = true
		}
		e.mu.Unlock()
	}
	if err := sc.Err(); err != nil {
		e.setErr(fmt.Errorf("read the runner's output: %w", err))
	}
	err := e.cmd.Wait()
	if !got {
		e.setErr(fmt.Errorf("the runner ended without a result (%v); its stderr:\n%s", err, e.stderr.String()))
		return
	}
	if r := e.Result(); r.Status != StatusRunning {
		e.h.deliver(e.statusChange(e.input, e.started, time.Now()))
	}
}

func (e *Execution) setErr(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.err = errors.Join(e.err, err)
}

// Stop aborts the execution, as StopExecution does: it ends ABORTED, no
// further state starts, and invocations already running finish on their
// own. Stopping a finished execution does nothing.
func (e *Execution) Stop() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return nil
	}
	select {
	case <-e.done:
		return nil
	default:
	}
	e.stopped = true
	if _, err := io.WriteString(e.stdin, `{"cmd":"abort"}`+"\n"); err != nil {
		return fmt.Errorf("stop execution %s: %w", e.Name, err)
	}
	return nil
}

// kill stops the execution and, if the runner does not end, kills it.
func (e *Execution) kill() {
	_ = e.Stop()
	select {
	case <-e.done:
	case <-time.After(stopTimeout):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
}

// Done is closed when the execution has ended.
func (e *Execution) Done() <-chan struct{} { return e.done }

// Wait waits for the execution to end and returns its result; the error
// is ctx's, or the runner's failure (with its stderr).
func (e *Execution) Wait(ctx context.Context) (Result, error) {
	select {
	case <-e.done:
	case <-ctx.Done():
		return e.Result(), fmt.Errorf("execution %s: %w", e.Name, ctx.Err())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return e.result, fmt.Errorf("execution %s: %w", e.Name, e.err)
	}
	return e.result, nil
}

// Result is the result so far (Status RUNNING until the end).
func (e *Execution) Result() Result {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.result
}

// Events returns the events so far.
func (e *Execution) Events() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.events...)
}

// Entered returns how many times a state (by name, nested ones included)
// was entered.
func (e *Execution) Entered(state string) int {
	n := 0
	for _, ev := range e.Events() {
		if ev.Type == "StateEntered" && ev.State != nil && ev.State.Name == state {
			n++
		}
	}
	return n
}

// Path returns the names of the states entered, in order (nested states
// of concurrent iterations interleave).
func (e *Execution) Path() []string {
	var names []string
	for _, ev := range e.Events() {
		if ev.Type == "StateEntered" && ev.State != nil {
			names = append(names, ev.State.Name)
		}
	}
	return names
}

// History renders the events one a line, for failure messages.
func (e *Execution) History() string {
	var b strings.Builder
	for _, ev := range e.Events() {
		b.WriteString(ev.Type)
		if ev.ParentState != nil && ev.Index != nil {
			fmt.Fprintf(&b, " [%s #%d]", ev.ParentState.Name, *ev.Index)
		}
		if ev.State != nil {
			b.WriteString(" " + ev.State.Name)
		}
		if ev.Error != "" {
			fmt.Fprintf(&b, " %s: %s", ev.Error, ev.Cause)
		}
		if ev.Retry != nil {
			fmt.Fprintf(&b, " (attempt %d)", ev.Retry.Attempt)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func toJSON(v any) (json.RawMessage, error) {
	switch v := v.(type) {
	case json.RawMessage:
		if !json.Valid(v) {
			return nil, errors.New("not JSON")
		}
		return v, nil
	case []byte:
		if !json.Valid(v) {
			return nil, errors.New("not JSON")
		}
		return v, nil
	case nil:
		return json.RawMessage("{}"), nil
	}
	return json.Marshal(v)
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}
