package sfntest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/awstest"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/job/dynamo"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
	"github.com/kvmigrate/kvmigrate/internal/phase"
	"github.com/kvmigrate/kvmigrate/internal/sfntest"
)

// Through the HTTP API (internal/api, as functions/api serves it): the API
// starts and stops executions in the harness (its Executions), and the
// harness sends each ended execution's status-change event to the API's
// event handler, as template.yaml's EventBridge rule does.

const (
	secretPrefix = "kvmigrate/"
	sourceSecret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kvmigrate/source-AbCdEf"
	targetSecret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kvmigrate/target-AbCdEf"
)

type apiWorld struct {
	*world
	api *httptest.Server
}

// gate blocks the invocations of a function (those that match, if match is
// set) until it is opened, counting those that arrived.
type gate struct {
	match   func(payload []byte) bool
	mu      sync.Mutex
	arrived int
	cond    chan struct{} // signalled on each arrival
	open    chan struct{}
}

func newGate() *gate { return &gate{cond: make(chan struct{}, 100), open: make(chan struct{})} }

func (g *gate) wrap(next lambda.Handler) lambda.Handler {
	return sfntest.InvokeFunc(func(ctx context.Context, payload []byte) ([]byte, error) {
		if g.match != nil && !g.match(payload) {
			return next.Invoke(ctx, payload)
		}
		g.mu.Lock()
		g.arrived++
		g.mu.Unlock()
		g.cond <- struct{}{}
		select {
		case <-g.open:
		case <-ctx.Done():
		}
		return next.Invoke(ctx, payload)
	})
}

// await waits until n invocations have arrived.
func (g *gate) await(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		g.mu.Lock()
		got := g.arrived
		g.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-g.cond:
		case <-deadline:
			t.Fatalf("%d of %d invocations arrived", got, n)
		}
	}
}

func (g *gate) release() { close(g.open) }

// newAPIWorld is newWorld with the API in front, the servers' passwords in
// secrets, and the functions in gates (nil: none) by function name.
func newAPIWorld(t *testing.T, gates map[string]*gate) *apiWorld {
	t.Helper()
	db := dynamodb.NewFromConfig(awstest.Config(awstest.StartMoto(t)))
	const table = "kvmigrate-jobs"
	store, err := dynamo.New(db, table)
	require.NoError(t, err)
	require.NoError(t, store.CreateTable(t.Context()))
	log := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	secrets := lambdafn.StaticSecrets{
		sourceSecret: {Password: "source-pw"},
		targetSecret: {Password: "target-pw"},
	}
	fns := sfntest.MigrationFunctions(lambdafn.Deps{Store: store, Secrets: secrets, Log: log, SafetyMargin: 5 * time.Second})
	for name, g := range gates {
		fns[name] = g.wrap(fns[name])
	}
	var a *api.API
	h := sfntest.New(t, sfntest.Config{
		Definition:      sfntest.MigrationDefinition(t, map[string]string{"TableName": table}),
		Functions:       fns,
		FunctionTimeout: 60 * time.Second,
		DynamoDB:        db,
		OnStatusChange: func(ctx context.Context, ev events.CloudWatchEvent) error {
			return a.HandleEvent(ctx, ev)
		},
	})
	a, err = api.New(api.Config{
		Store: store, Executions: h.Executions(), SecretPrefix: secretPrefix,
		StateMachineARN: sfntest.StateMachineARN(), Log: log,
	})
	require.NoError(t, err)
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return &apiWorld{world: &world{h: h, store: store, db: db}, api: srv}
}

// call sends a request to the API and decodes the answer into out (if not
// nil); it returns the status code.
func (w *apiWorld) call(t *testing.T, method, path string, body, out any) int {
	t.Helper()
	var r *bytes.Reader
	if body != nil {
		data, err := json.Marshal(body)
		require.NoError(t, err)
		r = bytes.NewReader(data)
	} else {
		r = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, w.api.URL+path, r)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	if out != nil {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(out))
	}
	return resp.StatusCode
}

func (w *apiWorld) start(t *testing.T, req api.MigrationRequest) api.MigrationView {
	t.Helper()
	var v api.MigrationView
	require.Equal(t, http.StatusAccepted, w.call(t, http.MethodPost, "/migrations", req, &v))
	require.NotEmpty(t, v.ExecutionARN)
	return v
}

func protectedServers(t *testing.T) (src, dst *kvtest.Server) {
	src = kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"), kvtest.WithPassword("source-pw"))
	dst = kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"), kvtest.WithPassword("target-pw"))
	return src, dst
}

func request(src, dst *kvtest.Server) api.MigrationRequest {
	return api.MigrationRequest{
		Source:  api.EndpointRequest{URL: "redis://" + src.Addr(), SecretARN: sourceSecret},
		Target:  api.EndpointRequest{URL: "valkey://" + dst.Addr(), SecretARN: targetSecret},
		Mode:    phase.ModeCommand,
		Options: api.MigrationOptions{ChunkKeys: chunkKeys},
	}
}

// slotFree reports whether no migration slot is held (one can be taken
// with a limit of 1); it gives it back.
func slotFree(t *testing.T, store job.Store) bool {
	t.Helper()
	if err := store.Acquire(t.Context(), "probe", job.KindMigration, 1); err != nil {
		return false
	}
	require.NoError(t, store.Release(t.Context(), "probe", job.KindMigration))
	return true
}

func TestAStopRequestEndsTheExecutionAndTheJob(t *testing.T) {
	t.Parallel()
	src, dst := protectedServers(t)
	seed(t, src.Client(t), 10, 2000)
	chunks := newGate()
	chunks.match = func(payload []byte) bool {
		var in phase.ChunkInput
		return json.Unmarshal(payload, &in) == nil && in.Node != ""
	}
	w := newAPIWorld(t, map[string]*gate{sfntest.ExecuteChunkFunction: chunks})

	v := w.start(t, request(src, dst))
	chunks.await(t, 1) // the first chunk
	e, err := w.h.Execution(v.ExecutionARN)
	require.NoError(t, err)

	var stopped api.MigrationView
	require.Equal(t, http.StatusOK, w.call(t, http.MethodPost, "/migrations/"+v.ID+"/stop", api.StopRequest{Reason: "maintenance window over"}, &stopped))
	assert.Equal(t, job.StatusCancelled, stopped.Status)

	res := wait(t, e)
	chunks.release()
	assert.Equal(t, sfntest.StatusAborted, res.Status, e.History())
	assert.Zero(t, e.Entered("Validate"))
	assert.Zero(t, e.Entered("RecordSuccess"))
	assert.Empty(t, w.h.Events(), "an aborted execution sends no event of its own")

	changes := w.h.StatusChanges()
	require.Len(t, changes, 1)
	var detail sfntest.StatusChangeDetail
	require.NoError(t, json.Unmarshal(changes[0].Detail, &detail))
	assert.Equal(t, sfntest.StatusAborted, detail.Status)
	require.NotNil(t, detail.Cause)
	assert.Contains(t, *detail.Cause, "maintenance window over", "StopExecution's cause")

	var got api.MigrationView
	require.Equal(t, http.StatusOK, w.call(t, http.MethodGet, "/migrations/"+v.ID, nil, &got))
	assert.Equal(t, job.StatusCancelled, got.Status)
	assert.Contains(t, got.Error, "maintenance window over")
	assert.False(t, got.FinishedAt.IsZero())
	assert.True(t, slotFree(t, w.store), "the stopped job's slot is released")

	assert.Equal(t, http.StatusConflict, w.call(t, http.MethodPost, "/migrations/"+v.ID+"/stop", nil, nil), "it has ended")
}

func TestTheEleventhConcurrentExecutionIsRefused(t *testing.T) {
	t.Parallel()
	src, dst := protectedServers(t)
	keys := seed(t, src.Client(t), 5, 0)
	analyses := newGate()
	w := newAPIWorld(t, map[string]*gate{sfntest.AnalyzeFunction: analyses})

	var running []api.MigrationView
	for range api.MaxExecutions {
		running = append(running, w.start(t, request(src, dst)))
	}
	analyses.await(t, api.MaxExecutions)

	var refused struct {
		Error string `json:"error"`
	}
	assert.Equal(t, http.StatusConflict, w.call(t, http.MethodPost, "/migrations", request(src, dst), &refused))
	assert.Contains(t, refused.Error, "10 migration jobs are running")
	list, _, err := w.store.List(t.Context(), job.ListOptions{Kind: job.KindMigration})
	require.NoError(t, err)
	assert.Len(t, list, api.MaxExecutions, "the refused request left no job")

	// Stopping one frees its slot: the next request is accepted and runs
	// to the end.
	require.Equal(t, http.StatusOK, w.call(t, http.MethodPost, "/migrations/"+running[0].ID+"/stop", nil, nil))
	last := w.start(t, request(src, dst))
	analyses.release()
	for _, v := range append(running, last) {
		e, err := w.h.Execution(v.ExecutionARN)
		require.NoError(t, err)
		res := wait(t, e)
		if v.ID == running[0].ID {
			assert.Equal(t, sfntest.StatusAborted, res.Status)
			continue
		}
		assert.Equal(t, sfntest.StatusSucceeded, res.Status, "%s: %s: %s\n%s", v.ID, res.Error, res.Cause, e.History())
		var got api.MigrationView
		require.Equal(t, http.StatusOK, w.call(t, http.MethodGet, "/migrations/"+v.ID, nil, &got))
		assert.Equal(t, job.StatusSucceeded, got.Status)
		require.NotNil(t, got.Validation)
		assert.True(t, got.Validation.Passed)
	}
	assert.True(t, slotFree(t, w.store), "every ended execution released its slot")
	kvtest.AssertSameData(t, kvtest.Snapshot(t.Context(), t, src.Client(t)), kvtest.Snapshot(t.Context(), t, dst.Client(t)), ttlTolerance)
	assert.Len(t, kvtest.Snapshot(t.Context(), t, dst.Client(t)), keys)
}
