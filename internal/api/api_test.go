package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/phase"
)

const (
	sourceSecret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kvmigrate/source-AbCdEf"
	targetSecret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kvmigrate/target-GhIjKl"
	executionARN = "arn:aws:states:us-east-1:123456789012:execution:kvmigrate-migration:"
)

// fakeExecutions records what the API asks of the state machine.
type fakeExecutions struct {
	mu       sync.Mutex
	started  map[string]phase.Execution
	stopped  map[string]string // executionARN → cause
	startErr error
}

func newFake() *fakeExecutions {
	return &fakeExecutions{started: map[string]phase.Execution{}, stopped: map[string]string{}}
}

func (f *fakeExecutions) Start(_ context.Context, id string, in phase.Execution) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.startErr != nil {
		return "", f.startErr
	}
	f.started[id] = in
	return executionARN + id, nil
}

func (f *fakeExecutions) Stop(_ context.Context, arn, cause string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped[arn] = cause
	return nil
}

func (f *fakeExecutions) starts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.started)
}

// server is an API over a memory store, served by httptest.
type server struct {
	t     *testing.T
	url   string
	store job.Store
	api   *api.API
}

func newServer(t *testing.T, cfg api.Config) *server {
	t.Helper()
	if cfg.Store == nil {
		cfg.Store = job.NewMemory()
	}
	if cfg.SecretPrefix == "" {
		cfg.SecretPrefix = "kvmigrate/"
	}
	a, err := api.New(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return &server{t: t, url: srv.URL, store: cfg.Store, api: a}
}

// do sends a request (body: a string as is, anything else as JSON) and
// returns the status, the body and the headers.
func (s *server) do(method, path string, body any) (int, []byte, http.Header) {
	s.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		require.NoError(s.t, err)
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, s.url+path, r)
	require.NoError(s.t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	if len(data) > 0 {
		assert.Equal(s.t, "application/json", resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, data, resp.Header
}

// call is do for a JSON answer decoded into out.
func (s *server) call(method, path string, body any, wantStatus int, out any) {
	s.t.Helper()
	status, data, _ := s.do(method, path, body)
	require.Equal(s.t, wantStatus, status, "%s %s: %s", method, path, data)
	if out != nil {
		require.NoError(s.t, json.Unmarshal(data, out), "%s", data)
	}
}

type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field"`
}

// migration is a valid POST /migrations body; mut changes it.
func migration(mut func(m map[string]any)) map[string]any {
	m := map[string]any{
		"source":  map[string]any{"url": "redis://10.0.0.1:6379", "secretArn": sourceSecret},
		"target":  map[string]any{"url": "valkey://default@10.0.0.2:6379", "secretArn": targetSecret},
		"mode":    "command",
		"options": map[string]any{"chunkKeys": 1000},
	}
	if mut != nil {
		mut(m)
	}
	return m
}

func set(path string, v any) func(map[string]any) {
	return func(m map[string]any) {
		keys := strings.Split(path, ".")
		for _, k := range keys[:len(keys)-1] {
			m = m[k].(map[string]any)
		}
		m[keys[len(keys)-1]] = v
	}
}

func TestRefusesBadRequestsNamingTheField(t *testing.T) {
	fake := newFake()
	s := newServer(t, api.Config{Executions: fake})
	for _, tc := range []struct {
		name, path string
		body       any
		field      string
	}{
		{"a body that is not JSON", "/migrations", `{"source":`, ""},
		{"no body", "/migrations", "", ""},
		{"two JSON values", "/migrations", `{} {}`, ""},
		{"an unknown field", "/migrations", migration(set("sourceUrl", "redis://x")), "sourceUrl"},
		{"a field of the wrong type", "/migrations", migration(set("options.maxOps", "fast")), "options.maxOps"},
		{"no source URL", "/migrations", migration(set("source", map[string]any{})), "source.url"},
		{"a URL of another scheme", "/migrations", migration(set("target.url", "http://10.0.0.2")), "target.url"},
		{"a password in the URL", "/migrations", migration(set("source.url", "redis://default:hunter22@10.0.0.1:6379")), "source.url"},
		{"a password field", "/migrations", migration(set("target.password", "hunter22")), "target.password"},
		{"a malformed secret ARN", "/migrations", migration(set("target.secretArn", "kvmigrate/target")), "target.secretArn"},
		{"a secret outside the allowed prefix", "/migrations", migration(set("source.secretArn", "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf")), "source.secretArn"},
		{"an unknown mode", "/migrations", migration(set("mode", "rsync")), "mode"},
		{"an unknown strategy", "/migrations", migration(set("options.strategy", "fast")), "options.strategy"},
		{"too many keys in flight", "/migrations", migration(set("options.concurrency", phase.MaxKeyConcurrency+1)), "options.concurrency"},
		{"a negative chunk", "/migrations", migration(set("options.chunkKeys", -1)), "options.chunkKeys"},
		{"a sample too small", "/analyses", map[string]any{"source": map[string]any{"url": "redis://a"}, "target": map[string]any{"url": "redis://b"}, "options": map[string]any{"sampleSize": 10}}, "options.sampleSize"},
		{"migration options in an analysis", "/analyses", map[string]any{"source": map[string]any{"url": "redis://a"}, "target": map[string]any{"url": "redis://b"}, "mode": "command"}, "mode"},
	} {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			var e errorBody
			s.call(http.MethodPost, tc.path, tc.body, http.StatusBadRequest, &e)
			assert.Equal(t, tc.field, e.Field, "%s", e.Error)
			assert.NotEmpty(t, e.Error)
			assert.NotContains(t, e.Error, "hunter22", "an error never echoes a password")
		})
	}
	t.Run("refuses bad list parameters", func(t *testing.T) {
		for query, field := range map[string]string{"limit=0": "limit", "limit=x": "limit", "limit=1001": "limit", "status=lost": "status", "next=bm90LWEtdG9rZW4": "next"} {
			var e errorBody
			s.call(http.MethodGet, "/migrations?"+query, nil, http.StatusBadRequest, &e)
			assert.Equal(t, field, e.Field, query)
		}
	})
	jobs, _, err := s.store.List(context.Background(), job.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, jobs, "a refused request creates no job")
	assert.Zero(t, fake.starts())
}

func TestStartsJobsThroughTheExecutions(t *testing.T) {
	fake := newFake()
	s := newServer(t, api.Config{Executions: fake})
	var v api.MigrationView
	status, data, header := s.do(http.MethodPost, "/migrations", migration(set("force", true)))
	require.Equal(t, http.StatusAccepted, status, "%s", data)
	require.NoError(t, json.Unmarshal(data, &v))
	assert.Equal(t, "/migrations/"+v.ID, header.Get("Location"))
	assert.Equal(t, job.StatusPending, v.Status)
	assert.Equal(t, executionARN+v.ID, v.ExecutionARN)
	assert.Equal(t, api.EndpointView{URL: "valkey://default@10.0.0.2:6379", SecretARN: targetSecret}, v.Target)
	assert.True(t, v.Options.Force)
	assert.Equal(t, 1000, v.Options.ChunkKeys)

	in := fake.started[v.ID]
	assert.Equal(t, phase.AnalyzeInput{
		JobID:   v.ID,
		Source:  phase.Endpoint{URL: "redis://10.0.0.1:6379", SecretARN: sourceSecret},
		Target:  phase.Endpoint{URL: "valkey://default@10.0.0.2:6379", SecretARN: targetSecret},
		Options: phase.Options{Mode: phase.ModeCommand, Force: true, ChunkKeys: 1000},
	}, in.AnalyzeInput, "the execution input is the payload of the analyze step")
	require.NoError(t, in.Check())

	var a api.AnalysisView
	s.call(http.MethodPost, "/analyses", map[string]any{
		"source":  map[string]any{"url": "redis://10.0.0.1:6379"},
		"target":  map[string]any{"url": "redis://10.0.0.2:6379"},
		"options": map[string]any{"sampleSize": 2000},
	}, http.StatusAccepted, &a)
	assert.Equal(t, job.KindAnalysis, a.Kind)
	assert.Equal(t, phase.Options{AnalysisOnly: true, SampleSize: 2000}, fake.started[a.ID].Options)

	var got api.MigrationView
	s.call(http.MethodGet, "/migrations/"+v.ID, nil, http.StatusOK, &got)
	assert.Equal(t, v.ID, got.ID)
	assert.Empty(t, got.Shards)
	assert.Nil(t, got.Analysis)
}

func TestAnswers404And405InJSON(t *testing.T) {
	fake := newFake()
	s := newServer(t, api.Config{Executions: fake})
	var m, a api.JobView
	s.call(http.MethodPost, "/migrations", migration(nil), http.StatusAccepted, &m)
	s.call(http.MethodPost, "/analyses", map[string]any{"source": map[string]any{"url": "redis://a"}, "target": map[string]any{"url": "redis://b"}}, http.StatusAccepted, &a)
	for _, path := range []string{
		"/migrations/01jd8z3k4m5n6p7q8r9s0t1v2w", "/migrations/" + a.ID, "/analyses/" + m.ID,
		"/migrations/bad%2Fid", "/nothing", "/migrations/" + m.ID + "/nothing",
	} {
		var e errorBody
		s.call(http.MethodGet, path, nil, http.StatusNotFound, &e)
		assert.NotEmpty(t, e.Error, path)
	}
	var e errorBody
	s.call(http.MethodPost, "/migrations/01jd8z3k4m5n6p7q8r9s0t1v2w/stop", nil, http.StatusNotFound, &e)
	status, _, header := s.do(http.MethodDelete, "/migrations/"+m.ID, nil)
	assert.Equal(t, http.StatusMethodNotAllowed, status)
	assert.Equal(t, "GET", header.Get("Allow"))
	status, _, header = s.do(http.MethodPut, "/migrations", nil)
	assert.Equal(t, http.StatusMethodNotAllowed, status)
	assert.Equal(t, "POST, GET", header.Get("Allow"))
}

func TestRefusesAJobWhenEverySlotIsTaken(t *testing.T) {
	fake := newFake()
	s := newServer(t, api.Config{Executions: fake})
	var running []string
	for range api.MaxExecutions {
		var v api.JobView
		s.call(http.MethodPost, "/migrations", migration(nil), http.StatusAccepted, &v)
		running = append(running, v.ID)
	}
	var e errorBody
	s.call(http.MethodPost, "/migrations", migration(nil), http.StatusConflict, &e)
	assert.Contains(t, e.Error, "10 migration jobs are running")
	assert.Equal(t, api.MaxExecutions, fake.starts(), "the 11th never started")

	// Analyses have slots of their own.
	for range api.MaxAnalyses {
		s.call(http.MethodPost, "/analyses", map[string]any{"source": map[string]any{"url": "redis://a"}, "target": map[string]any{"url": "redis://b"}}, http.StatusAccepted, nil)
	}
	s.call(http.MethodPost, "/analyses", map[string]any{"source": map[string]any{"url": "redis://a"}, "target": map[string]any{"url": "redis://b"}}, http.StatusConflict, nil)

	// Stopping one frees its slot.
	s.call(http.MethodPost, "/migrations/"+running[3]+"/stop", nil, http.StatusOK, nil)
	s.call(http.MethodPost, "/migrations", migration(nil), http.StatusAccepted, nil)
	s.call(http.MethodPost, "/migrations", migration(nil), http.StatusConflict, nil)

	jobs, _, err := s.store.List(context.Background(), job.ListOptions{Kind: job.KindMigration})
	require.NoError(t, err)
	assert.Len(t, jobs, api.MaxExecutions+1, "refused requests leave no job behind")
}

func TestStopsAMigration(t *testing.T) {
	fake := newFake()
	s := newServer(t, api.Config{Executions: fake, MaxExecutions: 1})
	var v api.JobView
	s.call(http.MethodPost, "/migrations", migration(nil), http.StatusAccepted, &v)

	var e errorBody
	s.call(http.MethodPost, "/migrations/"+v.ID+"/stop", map[string]any{"reason": strings.Repeat("x", 501)}, http.StatusBadRequest, &e)
	assert.Equal(t, "reason", e.Field)

	var stopped api.MigrationView
	s.call(http.MethodPost, "/migrations/"+v.ID+"/stop", map[string]any{"reason": "window closed"}, http.StatusOK, &stopped)
	assert.Equal(t, job.StatusCancelled, stopped.Status)
	assert.Equal(t, "stopped by request: window closed", stopped.Error)
	assert.False(t, stopped.ExpireAt.IsZero(), "a finished job expires")
	assert.Equal(t, map[string]string{executionARN + v.ID: "stopped by request: window closed"}, fake.stopped)

	s.call(http.MethodPost, "/migrations/"+v.ID+"/stop", nil, http.StatusConflict, &e)
	assert.Contains(t, e.Error, "already ended")
	s.call(http.MethodPost, "/migrations", migration(nil), http.StatusAccepted, nil) // the one slot is free
}

func TestMarksAJobThatCannotStartFailed(t *testing.T) {
	fake := newFake()
	fake.startErr = &phase.TransientError{Err: errors.New("ThrottlingException: rate exceeded")}
	s := newServer(t, api.Config{Executions: fake, MaxExecutions: 1})
	var e errorBody
	s.call(http.MethodPost, "/migrations", migration(nil), http.StatusServiceUnavailable, &e)
	assert.Contains(t, e.Error, "rate exceeded")

	jobs, _, err := s.store.List(context.Background(), job.ListOptions{})
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	assert.Equal(t, job.StatusFailed, jobs[0].Status)
	assert.Contains(t, jobs[0].Error, "the execution could not start")

	fake.startErr = nil
	s.call(http.MethodPost, "/migrations", migration(nil), http.StatusAccepted, nil) // the slot was freed
}

func TestListsMigrationsByPage(t *testing.T) {
	fake := newFake()
	s := newServer(t, api.Config{Executions: fake})
	var ids []string
	for range 5 {
		var v api.JobView
		s.call(http.MethodPost, "/migrations", migration(nil), http.StatusAccepted, &v)
		ids = append([]string{v.ID}, ids...) // newest first
		time.Sleep(2 * time.Millisecond)
	}
	s.call(http.MethodPost, "/analyses", map[string]any{"source": map[string]any{"url": "redis://a"}, "target": map[string]any{"url": "redis://b"}}, http.StatusAccepted, nil)

	var got []string
	next, pages := "", 0
	for {
		var page api.MigrationList
		s.call(http.MethodGet, "/migrations?limit=2&next="+next, nil, http.StatusOK, &page)
		pages++
		assert.LessOrEqual(t, len(page.Migrations), 2)
		for _, m := range page.Migrations {
			got = append(got, m.ID)
			assert.Equal(t, job.KindMigration, m.Kind)
		}
		if next = page.Next; next == "" {
			break
		}
	}
	assert.Equal(t, ids, got)
	assert.GreaterOrEqual(t, pages, 3)

	var page api.MigrationList
	s.call(http.MethodGet, "/migrations?status=succeeded", nil, http.StatusOK, &page)
	assert.Empty(t, page.Migrations)
	assert.NotNil(t, page.Migrations, "an empty list is [], not null")
}

func TestShowsAMigrationsProgressFindingsAndValidation(t *testing.T) {
	ctx := context.Background()
	store := job.NewMemory()
	s := newServer(t, api.Config{Executions: newFake(), Store: store})
	id := "01jd8z3k4m5n6p7q8r9s0t1v2w"
	require.NoError(t, store.Create(ctx, job.Job{ID: id, Kind: job.KindMigration, Mode: job.ModeCommand, Source: "redis://10.0.0.1:6379", Target: "valkey://10.0.0.2:6379"}))
	require.NoError(t, store.PutReport(ctx, id, job.ReportAnalysis, []byte(`{"version":1,"jobId":"`+id+`","blocking":false,
		"findings":[{"category":"rdb_version","severity":"info","message":"type commands are used","data":{"sourceRDBVersion":12}}],
		"shards":[{"node":"10.0.0.1:6379","db":0,"keys":700},{"node":"10.0.0.1:6379","db":3,"keys":300}],"estimatedKeys":1000}`)))
	require.NoError(t, store.PutShard(ctx, id, job.Shard{Node: "10.0.0.1:6379", DB: 0, Cursor: "0", Done: true, Counters: job.Counters{Copied: 690, Expired: 10}}))
	require.NoError(t, store.PutShard(ctx, id, job.Shard{Node: "10.0.0.1:6379", DB: 3, Cursor: "448", Counters: job.Counters{Copied: 100, Failed: 1}}))
	require.NoError(t, store.AddCounters(ctx, id, job.Counters{Copied: 790, Expired: 10, Failed: 1}))
	require.NoError(t, store.PutReport(ctx, id, job.ReportValidation, []byte(`{"passed":false,"keyCountDiscrepancyPct":0.1,
		"issues":[{"kind":"missing","db":3,"key":"k1","detail":"not on the target"}],"issuesOmitted":4,"countOnly":[],
		"sample":{"sampled":500},"startedAt":"2026-11-26T15:40:19Z"}`)))

	var v api.MigrationView
	s.call(http.MethodGet, "/migrations/"+id, nil, http.StatusOK, &v)
	assert.Equal(t, job.Counters{Copied: 790, Expired: 10, Failed: 1}, v.Counters)
	assert.Equal(t, &api.Progress{Shards: 2, ShardsDone: 1, EstimatedKeys: 1000, KeysDone: 801}, v.Progress)
	require.Len(t, v.Shards, 2)
	assert.Equal(t, api.ShardView{Node: "10.0.0.1:6379", DB: 3, Cursor: "448", Keys: 300, Counters: job.Counters{Copied: 100, Failed: 1}, UpdatedAt: v.Shards[1].UpdatedAt}, v.Shards[1])
	require.NotNil(t, v.Analysis)
	require.Len(t, v.Analysis.Findings, 1)
	assert.EqualValues(t, "rdb_version", v.Analysis.Findings[0].Category)
	assert.EqualValues(t, 12, v.Analysis.Findings[0].Data["sourceRDBVersion"])
	require.NotNil(t, v.Validation)
	assert.False(t, v.Validation.Passed)
	assert.Equal(t, 5, v.Validation.IssueCount)
	assert.Len(t, v.Validation.Issues, 1)
	assert.Equal(t, 500, v.Validation.Sampled)
}

func TestValidatesAMigrationAgainOnRequest(t *testing.T) {
	ctx := context.Background()
	store := job.NewMemory()
	id := "01jd8z3k4m5n6p7q8r9s0t1v2w"
	require.NoError(t, store.Create(ctx, job.Job{ID: id, Kind: job.KindMigration, Mode: job.ModeCommand, Source: "redis://a:1", Target: "redis://b:1"}))

	s := newServer(t, api.Config{Executions: newFake(), Store: store})
	var e errorBody
	s.call(http.MethodPost, "/migrations/"+id+"/validations", nil, http.StatusNotImplemented, &e)

	var calls []string
	s = newServer(t, api.Config{Executions: newFake(), Store: store, Revalidate: func(_ context.Context, jobID string) (phase.ValidateOutput, error) {
		calls = append(calls, jobID)
		if len(calls) == 1 {
			return phase.ValidateOutput{}, &phase.ConflictError{Err: errors.New("job is running")}
		}
		return phase.ValidateOutput{JobID: jobID, Passed: true}, store.PutReport(ctx, jobID, job.ReportValidation, []byte(`{"passed":true,"issues":[]}`))
	}})
	s.call(http.MethodPost, "/migrations/"+id+"/validations", nil, http.StatusConflict, &e)
	var v api.MigrationView
	s.call(http.MethodPost, "/migrations/"+id+"/validations", nil, http.StatusOK, &v)
	require.NotNil(t, v.Validation)
	assert.True(t, v.Validation.Passed)
	assert.Equal(t, []string{id, id}, calls)
	s.call(http.MethodPost, "/migrations/01jd8z3k4m5n6p7q8r9s0t1v2x/validations", nil, http.StatusNotFound, &e)
}

func TestAMigrationWithoutAModeCopiesInCommandMode(t *testing.T) {
	fake := newFake()
	s := newServer(t, api.Config{Executions: fake})
	body := migration(nil)
	delete(body, "mode")
	var v api.MigrationView
	s.call(http.MethodPost, "/migrations", body, http.StatusAccepted, &v)
	assert.Equal(t, job.ModeCommand, v.Mode)
	j, err := s.store.Get(context.Background(), v.ID)
	require.NoError(t, err)
	assert.Equal(t, job.ModeCommand, j.Mode)
}
