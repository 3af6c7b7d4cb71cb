package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/kvmigrate/kvmigrate/functions/internal/setup"
	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/api/ecstasks"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/phase"
	"github.com/kvmigrate/kvmigrate/internal/sam"
)

const (
	migrationID = "01jd8z3k4m5n6p7q8r9s0t1v2w"
	analysisID  = "01jd8z3k4m5n6p7q8r9s0t1v2x"
)

type executions struct{ started, stopped []string }

func (e *executions) Start(_ context.Context, id string, _ phase.Execution) (string, error) {
	e.started = append(e.started, id)
	return "arn:aws:states:us-east-1:123456789012:execution:kvmigrate-migration:" + id, nil
}

func (e *executions) Stop(_ context.Context, arn, _ string) error {
	e.stopped = append(e.stopped, arn)
	return nil
}

// strict decodes a fixture into v, refusing fields v does not have.
func strict(t *testing.T, data []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(v))
}

// TestRoutesEveryFixture sends each events/api fixture through the
// function's handler, as Lambda would: the HTTP API v2 events reach their
// routes through the API Gateway proxy, the EventBridge events HandleEvent.
func TestRoutesEveryFixture(t *testing.T) {
	ctx := context.Background()
	store := job.NewMemory()
	require.NoError(t, store.Create(ctx, job.Job{ID: migrationID, Kind: job.KindMigration, Mode: job.ModeCommand,
		Source: "redis://10.0.0.1:6379", Target: "valkey://10.0.0.2:6379",
		ExecutionARN: "arn:aws:states:us-east-1:123456789012:execution:kvmigrate-migration:" + migrationID}))
	require.NoError(t, store.Create(ctx, job.Job{ID: analysisID, Kind: job.KindAnalysis, Source: "redis://10.0.0.1:6379", Target: "valkey://10.0.0.2:6379"}))
	execs := &executions{}
	var revalidated []string
	a, err := api.New(api.Config{
		Store: store, Executions: execs, SecretPrefix: "kvmigrate/",
		StateMachineARN: "arn:aws:states:us-east-1:123456789012:stateMachine:kvmigrate-migration",
		Revalidate: func(_ context.Context, id string) (phase.ValidateOutput, error) {
			revalidated = append(revalidated, id)
			return phase.ValidateOutput{JobID: id, Passed: true}, nil
		},
	})
	require.NoError(t, err)
	h := handler(a)

	httpCases := map[string]int{
		"post-analyses.json":              http.StatusAccepted,
		"get-analysis.json":               http.StatusOK,
		"post-migrations.json":            http.StatusAccepted,
		"get-migrations.json":             http.StatusOK,
		"get-migration.json":              http.StatusOK,
		"post-migration-validations.json": http.StatusOK,
		"post-migration-cutover.json":     http.StatusConflict, // the job is not a redis_shake_sync one
		"post-migration-stop.json":        http.StatusOK,       // last: it ends the job
	}
	files, err := filepath.Glob(filepath.Join("..", "..", "events", "api", "*.json"))
	require.NoError(t, err)
	require.Len(t, files, len(httpCases)+2, "every fixture has a case")
	order := []string{"post-analyses.json", "get-analysis.json", "post-migrations.json", "get-migrations.json",
		"get-migration.json", "post-migration-validations.json", "post-migration-cutover.json", "post-migration-stop.json",
		"migration-requested.json", "execution-status-change.json"}
	for _, name := range order {
		data, err := os.ReadFile(filepath.Join("..", "..", "events", "api", name))
		require.NoError(t, err, "events/api/%s", name)
		t.Run(name, func(t *testing.T) {
			if want, ok := httpCases[name]; ok {
				var req events.APIGatewayV2HTTPRequest
				strict(t, data, &req)
				assert.Equal(t, req.RequestContext.HTTP.Method+" "+pattern(req), req.RouteKey, "the route key matches the template's route")
				out, err := h(ctx, data)
				require.NoError(t, err)
				resp := out.(events.APIGatewayV2HTTPResponse)
				assert.Equal(t, want, resp.StatusCode, resp.Body)
				assert.Equal(t, "application/json", resp.Headers["Content-Type"])
				assert.True(t, json.Valid([]byte(resp.Body)))
				return
			}
			var ev events.CloudWatchEvent
			strict(t, data, &ev)
			out, err := h(ctx, data)
			require.NoError(t, err)
			assert.Nil(t, out)
		})
	}
	assert.Equal(t, []string{migrationID}, revalidated)
	require.Len(t, execs.started, 3, "POST /analyses, POST /migrations, MigrationRequested")
	assert.Equal(t, "6a7e8feb-b491-4cf7-a9f1-bf3703467718", execs.started[2], "the event's job is named after it")
	assert.Equal(t, []string{"arn:aws:states:us-east-1:123456789012:execution:kvmigrate-migration:" + migrationID}, execs.stopped)
	j, err := store.Get(ctx, migrationID)
	require.NoError(t, err)
	assert.Equal(t, job.StatusCancelled, j.Status, "stopped by the stop request; the TIMED_OUT event leaves it so")
	assert.False(t, j.ExpireAt.IsZero())

	t.Run("refuses an event it does not know", func(t *testing.T) {
		_, err := h(ctx, json.RawMessage(`{"Records":[]}`))
		assert.IsType(t, &phase.InvalidInputError{}, err)
	})
}

// pattern is the template's path of a request: its path with the id
// replaced by {id}.
func pattern(req events.APIGatewayV2HTTPRequest) string {
	p := req.RawPath
	if id := req.PathParameters["id"]; id != "" {
		p = strings.Replace(p, id, "{id}", 1)
	}
	return p
}

// The HTTP API fixtures cover exactly the template's routes of the
// function (and so, with TestRoutesEveryFixture, the API serves them all).
func TestFixturesCoverTheTemplatesRoutes(t *testing.T) {
	tmpl, err := sam.Load(filepath.Join("..", "..", "template.yaml"))
	require.NoError(t, err)
	fn, ok := tmpl.Resources["ApiFunction"]
	require.True(t, ok)
	var routes []string
	evs := sam.Get(fn.Properties, "Events")
	require.NotNil(t, evs)
	for i := 1; i < len(evs.Content); i += 2 {
		ev := evs.Content[i]
		if sam.Get(ev, "Type").Value != "HttpApi" {
			continue
		}
		routes = append(routes, sam.Get(ev, "Properties", "Method").Value+" "+sam.Get(ev, "Properties", "Path").Value)
	}
	files, err := filepath.Glob(filepath.Join("..", "..", "events", "api", "*.json"))
	require.NoError(t, err)
	var keys []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		var probe struct {
			RouteKey string `json:"routeKey"`
		}
		require.NoError(t, json.Unmarshal(data, &probe))
		if probe.RouteKey != "" {
			keys = append(keys, probe.RouteKey)
		}
	}
	assert.ElementsMatch(t, routes, keys)
}

// The template gives the function what api/ecstasks needs to stop the
// redis-shake tasks, with the shake resources only: the cluster in
// ECS_CLUSTER, and ecs:StopTask on that cluster's tasks and nothing else
// of ECS.
func TestTheTemplateLetsTheFunctionStopItsShakeTasksOnly(t *testing.T) {
	path := filepath.Join("..", "..", "template.yaml")
	tmpl, err := sam.Load(path)
	require.NoError(t, err)
	fn := tmpl.Resources["ApiFunction"]

	// The cluster, under the condition of the shake resources.
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var conditions struct {
		Resources map[string]struct {
			Condition string `yaml:"Condition"`
		} `yaml:"Resources"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &conditions))
	const cond = "HasShakeImage"
	for _, id := range []string{"ShakeCluster", "ShakeTaskDefinition"} {
		require.Equal(t, cond, conditions.Resources[id].Condition, id)
	}
	env := sam.Get(fn.Properties, "Environment", "Variables", setup.EnvECSCluster)
	require.NotNil(t, env, "the function's %s", setup.EnvECSCluster)
	f, arg := sam.Intrinsic(env)
	require.Equal(t, "If", f, "%s depends on the shake resources", setup.EnvECSCluster)
	assert.Equal(t, cond, arg.Content[0].Value)
	assert.Empty(t, arg.Content[2].Value, "no cluster without them")
	cluster, err := tmpl.Resolve(env)
	require.NoError(t, err)
	name, err := ecstasks.ClusterName(cluster)
	require.NoError(t, err, "ecstasks takes the template's value")

	// The function's ECS permissions.
	var stops []*yaml.Node
	var visit func(n *yaml.Node, conditional bool)
	visit = func(n *yaml.Node, conditional bool) {
		if n == nil {
			return
		}
		if f, arg := sam.Intrinsic(n); f == "If" {
			for _, branch := range arg.Content[1:] {
				visit(branch, conditional || arg.Content[0].Value == cond)
			}
			return
		}
		if n.Kind == yaml.SequenceNode {
			for _, c := range n.Content {
				visit(c, conditional)
			}
			return
		}
		if st := sam.Get(n, "Statement"); st != nil {
			visit(st, conditional)
			return
		}
		action := sam.Get(n, "Action")
		if action == nil {
			return
		}
		actions := []string{action.Value}
		if action.Kind == yaml.SequenceNode {
			actions = nil
			for _, a := range action.Content {
				actions = append(actions, a.Value)
			}
		}
		ecs := false
		for _, a := range actions {
			if strings.HasPrefix(a, "ecs:") {
				ecs = true
				assert.Equal(t, "ecs:StopTask", a, "the function needs no other ECS action")
			}
		}
		if ecs {
			assert.True(t, conditional, "ECS permissions only with the shake resources")
			stops = append(stops, n)
		}
	}
	visit(sam.Get(fn.Properties, "Policies"), false)
	require.Len(t, stops, 1, "one statement allows ecs:StopTask")
	resource, err := tmpl.Resolve(sam.Get(stops[0], "Resource"))
	require.NoError(t, err)
	allowed := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(resource), `\*`, ".*") + "$")
	const id = "0123456789abcdef0123456789abcdef"
	assert.Regexp(t, allowed, "arn:aws:ecs:us-east-1:123456789012:task/"+name+"/"+id, "a task of the stack's cluster")
	assert.NotRegexp(t, allowed, "arn:aws:ecs:us-east-1:123456789012:task/other-cluster/"+id, "a task of another cluster")
	assert.NotRegexp(t, allowed, "arn:aws:ecs:us-east-1:123456789012:task/"+id, "a task whose cluster is unknown")
}
