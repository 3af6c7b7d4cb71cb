package statemachine

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/phase"
	"github.com/kvmigrate/kvmigrate/internal/sam"
)

// These tests hold the definition, the phase structs, the job model and the
// template together: every JSONPath names a json tag of the struct the
// state machine holds at that point, every error name is one the Lambdas
// can return, every ${...} is a DefinitionSubstitution.

const (
	templatePath   = "../template.yaml"
	stateMachineID = "MigrationStateMachine"
)

// Lambda service exceptions, retried with the transient error.
var lambdaServiceErrors = []string{
	"Lambda.ServiceException", "Lambda.AWSLambdaException",
	"Lambda.SdkClientException", "Lambda.TooManyRequestsException",
}

// States.* error names (Amazon States Language, "Error names").
var statesErrors = []string{
	"States.ALL", "States.DataLimitExceeded", "States.ExceedToleratedFailureThreshold",
	"States.HeartbeatTimeout", "States.Http.Socket", "States.IntrinsicFailure",
	"States.ItemReaderFailed", "States.NoChoiceMatched", "States.ParameterPathFailure",
	"States.Permissions", "States.QueryEvaluationError", "States.ResultPathMatchFailure",
	"States.ResultWriterFailed", "States.Runtime", "States.TaskFailed", "States.Timeout",
}

// function is what a Lambda task's payload and result are.
type function struct {
	in, out reflect.Type
}

// functions maps the template's function resources to their contracts; the
// execute-chunk function has two (plan and chunk), told apart by "action".
var functions = map[string]map[bool]function{ // logical id → has action → contract
	"AnalyzeFunction": {false: {reflect.TypeFor[phase.AnalyzeInput](), reflect.TypeFor[phase.AnalyzeOutput]()}},
	"ExecuteChunkFunction": {
		true:  {reflect.TypeFor[phase.PlanInput](), reflect.TypeFor[phase.PlanOutput]()},
		false: {reflect.TypeFor[phase.ChunkInput](), reflect.TypeFor[phase.ChunkOutput]()},
	},
	"ValidateFunction": {false: {reflect.TypeFor[phase.ValidateInput](), reflect.TypeFor[phase.ValidateOutput]()}},
}

// Scopes: the state the top level and the Map's item processor carry.
var (
	executionType = reflect.TypeFor[phase.Execution]()
	iterationType = reflect.TypeFor[phase.ChunkOutput]()
)

type fixture struct {
	tmpl   *sam.Template
	values map[string]string // resolved substitutions
	def    map[string]any    // rendered definition
}

func load(t *testing.T) fixture {
	t.Helper()
	tmpl, err := sam.Load(templatePath)
	require.NoError(t, err)
	values, err := tmpl.ResolveSubstitutions(stateMachineID, nil)
	require.NoError(t, err)
	out, err := sam.Render(Definition(), values)
	require.NoError(t, err)
	var def map[string]any
	require.NoError(t, json.Unmarshal(out, &def))
	return fixture{tmpl: tmpl, values: values, def: def}
}

// state is one state with its name, scope and path (for messages).
type state struct {
	name  string
	where string // "States.X" or "States.CopyShards.ItemProcessor.States.Y"
	scope reflect.Type
	body  map[string]any
}

// states lists every state, nested ones included, in a stable order.
func states(def map[string]any) []state {
	var out []state
	var walk func(sts map[string]any, prefix string, scope reflect.Type)
	walk = func(sts map[string]any, prefix string, scope reflect.Type) {
		for _, name := range slices.Sorted(maps.Keys(sts)) {
			body := sts[name].(map[string]any)
			where := prefix + "." + name
			out = append(out, state{name, where, scope, body})
			if proc, ok := body["ItemProcessor"].(map[string]any); ok {
				walk(proc["States"].(map[string]any), where+".ItemProcessor.States", iterationType)
			}
		}
	}
	walk(def["States"].(map[string]any), "States", executionType)
	return out
}

func TestEveryPlaceholderIsADefinitionSubstitution(t *testing.T) {
	tmpl, err := sam.Load(templatePath)
	require.NoError(t, err)
	subs, err := tmpl.Substitutions(stateMachineID)
	require.NoError(t, err)
	used := sam.Placeholders(Definition())
	require.NotEmpty(t, used)
	for _, name := range used {
		assert.Contains(t, subs, name, "the definition uses ${%s}, which the template does not substitute", name)
	}
	for name := range subs {
		assert.Contains(t, used, name, "the template substitutes %s, which the definition never uses", name)
	}
}

func TestTheDefinitionRendersWithTheTemplateDefaults(t *testing.T) {
	f := load(t)
	assert.Equal(t, "STANDARD", scalarAt(f.tmpl.Resources[stateMachineID].Properties, "Type"))
	assert.Equal(t, "statemachine/migration.asl.json", scalarAt(f.tmpl.Resources[stateMachineID].Properties, "DefinitionUri"))
	for name, v := range f.values {
		assert.NotContains(t, v, "${", "substitution %s", name)
	}
	assert.Regexp(t, `^arn:aws:lambda:`, f.values["AnalyzeFunctionArn"])
}

func TestTheDefinitionIsJSONPathOnly(t *testing.T) {
	f := load(t)
	// JSONata and variables: the local engine ignores them silently.
	rendered, err := json.Marshal(f.def)
	require.NoError(t, err)
	assert.NoError(t, CheckJSONPath(rendered))
	assert.NotContains(t, string(Definition()), "QueryLanguage")

	for _, bad := range []string{
		`{"States": {"A": {"Type": "Pass", "Assign": {"x": 1}, "End": true}}}`,
		`{"QueryLanguage": "JSONata", "States": {}}`,
		`{"States": {"A": {"Type": "Pass", "Parameters": {"x": "{% $states.input %}"}, "End": true}}}`,
	} {
		assert.Error(t, CheckJSONPath([]byte(bad)), bad)
	}
}

func TestEveryStateIsReachableAndEveryTransitionExists(t *testing.T) {
	f := load(t)
	var check func(sts map[string]any, start, where string)
	check = func(sts map[string]any, start, where string) {
		require.Contains(t, sts, start, "%s: StartAt", where)
		seen := map[string]bool{}
		queue := []string{start}
		for len(queue) > 0 {
			name := queue[0]
			queue = queue[1:]
			if seen[name] {
				continue
			}
			seen[name] = true
			body := sts[name].(map[string]any)
			var next []string
			if n, ok := body["Next"].(string); ok {
				next = append(next, n)
			}
			if n, ok := body["Default"].(string); ok {
				next = append(next, n)
			}
			for _, c := range list(body["Choices"]) {
				next = append(next, c.(map[string]any)["Next"].(string))
			}
			for _, c := range list(body["Catch"]) {
				next = append(next, c.(map[string]any)["Next"].(string))
			}
			for _, n := range next {
				if assert.Contains(t, sts, n, "%s.%s: transition to a state that does not exist", where, name) {
					queue = append(queue, n)
				}
			}
			if len(next) == 0 {
				typ := body["Type"]
				assert.True(t, typ == "Succeed" || typ == "Fail" || body["End"] == true, "%s.%s: a dead end", where, name)
			}
			if proc, ok := body["ItemProcessor"].(map[string]any); ok {
				check(proc["States"].(map[string]any), proc["StartAt"].(string), where+"."+name)
			}
		}
		for name := range sts {
			assert.True(t, seen[name], "%s.%s is unreachable", where, name)
		}
	}
	check(f.def["States"].(map[string]any), f.def["StartAt"].(string), "States")
}

func TestErrorNamesAreOnesTheFunctionsReturn(t *testing.T) {
	f := load(t)
	ours := phase.ErrorNames()
	for _, s := range states(f.def) {
		for _, key := range []string{"Retry", "Catch"} {
			for _, r := range list(s.body[key]) {
				for _, name := range list(r.(map[string]any)["ErrorEquals"]) {
					name := name.(string)
					ok := slices.Contains(statesErrors, name) || slices.Contains(lambdaServiceErrors, name) || slices.Contains(ours, name)
					assert.True(t, ok, "%s.%s: %q is neither a States.* error, a Lambda service exception nor a phase error type (%v)", s.where, key, name, ours)
				}
			}
		}
		switch s.body["Type"] {
		case "Fail":
			if e, ok := s.body["Error"].(string); ok {
				assert.Contains(t, ours, e, "%s: Fail error name", s.where)
			} else {
				assert.Equal(t, "$.error.Error", s.body["ErrorPath"], "%s: a Fail without Error fails with the error caught", s.where)
			}
		case "Pass":
			if s.body["ResultPath"] == "$.error" {
				params := s.body["Parameters"].(map[string]any)
				assert.Contains(t, ours, params["Error"], "%s: the error it sets", s.where)
				assert.True(t, params["Cause"] != nil || params["Cause.$"] != nil, "%s: sets a Cause", s.where)
			}
		}
	}
}

func TestRetriesAreForTransientErrorsOnlyWithBackoffAndJitter(t *testing.T) {
	f := load(t)
	retryable := append([]string{"TransientError"}, lambdaServiceErrors...)
	lambdaTasks := 0
	for _, s := range states(f.def) {
		var covered []string
		for _, r := range list(s.body["Retry"]) {
			r := r.(map[string]any)
			for _, name := range list(r["ErrorEquals"]) {
				assert.Contains(t, retryable, name, "%s: retries %v", s.where, name)
				covered = append(covered, name.(string))
			}
			assert.Equal(t, "FULL", r["JitterStrategy"], "%s: jitter", s.where)
			assert.GreaterOrEqual(t, number(r["BackoffRate"]), 1.5, "%s: backoff", s.where)
			assert.Greater(t, number(r["MaxAttempts"]), 0.0, "%s: attempts", s.where)
			assert.Greater(t, number(r["IntervalSeconds"]), 0.0, "%s: interval", s.where)
			assert.Greater(t, number(r["MaxDelaySeconds"]), number(r["IntervalSeconds"]), "%s: the backoff is capped", s.where)
		}
		if s.body["Resource"] == "arn:aws:states:::lambda:invoke" {
			lambdaTasks++
			assert.ElementsMatch(t, retryable, covered, "%s: a Lambda task retries the transient error and the Lambda service exceptions", s.where)
		}
	}
	assert.Equal(t, 4, lambdaTasks, "Analyze, Plan, CopyChunk, Validate")
}

func TestFailuresAreCaughtIntoTheFailurePath(t *testing.T) {
	f := load(t)
	for _, s := range states(f.def) {
		typ := s.body["Type"]
		lambda := s.body["Resource"] == "arn:aws:states:::lambda:invoke"
		ecs := s.body["Resource"] == resourceRunTaskSync || s.body["Resource"] == resourceRunTaskCallback
		if s.scope != executionType || !(lambda || ecs || typ == "Map" || strings.HasPrefix(s.name, "Record") && s.name != "RecordFailure") {
			continue
		}
		catches := list(s.body["Catch"])
		if !assert.NotEmpty(t, catches, "%s: no Catch", s.where) {
			continue
		}
		last := catches[len(catches)-1].(map[string]any)
		assert.Equal(t, []any{"States.ALL"}, last["ErrorEquals"], "%s", s.where)
		assert.Equal(t, "RecordFailure", last["Next"], "%s", s.where)
		assert.Equal(t, "$.error", last["ResultPath"], "%s", s.where)
	}
	// The failure path: record, emit, fail; each step goes on if the one
	// before could not do its job.
	sts := f.def["States"].(map[string]any)
	rf := sts["RecordFailure"].(map[string]any)
	assert.Equal(t, "EmitFailed", rf["Next"])
	assert.Equal(t, "EmitFailed", list(rf["Catch"])[0].(map[string]any)["Next"])
	ef := sts["EmitFailed"].(map[string]any)
	assert.Equal(t, "MigrationFailed", ef["Next"])
	assert.Equal(t, "Fail", sts["MigrationFailed"].(map[string]any)["Type"])
	assert.Equal(t, "Fail", sts["Blocked"].(map[string]any)["Type"])
	assert.Equal(t, "BlockedError", sts["Blocked"].(map[string]any)["Error"])
}

func TestTaskTimeoutsOutlastTheFunctions(t *testing.T) {
	f := load(t)
	ft, ok := f.tmpl.Parameters["FunctionTimeoutSeconds"]
	require.True(t, ok)
	require.NotEmpty(t, ft.AllowedValues)
	assert.Equal(t, "!Ref", globalsFunction(t, f.tmpl, "Timeout").Tag, "Globals Timeout comes from FunctionTimeoutSeconds")
	for _, v := range ft.AllowedValues {
		task, ok := f.tmpl.Mappings["TaskTimeouts"][v]["Seconds"]
		if assert.True(t, ok, "TaskTimeouts has no entry for a function timeout of %s", v) {
			assert.Greater(t, atoi(t, task), atoi(t, v), "task timeout for a %ss function", v)
		}
	}
	for _, s := range states(f.def) {
		if s.body["Type"] != "Task" {
			continue
		}
		if !assert.Contains(t, s.body, "TimeoutSeconds", "%s", s.where) {
			continue
		}
		if s.body["Resource"] == "arn:aws:states:::lambda:invoke" {
			assert.Equal(t, f.values["TaskTimeoutSeconds"], fmt.Sprint(s.body["TimeoutSeconds"]), "%s", s.where)
		}
	}
}

func TestLambdaTasksMatchThePhaseStructs(t *testing.T) {
	f := load(t)
	arns := map[string]string{} // rendered ARN → logical id
	for id := range functions {
		arn, _ := sam.SampleARN("AWS::Serverless::Function", id)
		arns[arn] = id
	}
	for _, s := range states(f.def) {
		if s.body["Resource"] != "arn:aws:states:::lambda:invoke" {
			continue
		}
		params := s.body["Parameters"].(map[string]any)
		id, ok := arns[fmt.Sprint(params["FunctionName"])]
		if !assert.True(t, ok, "%s: FunctionName %v is none of the phase functions", s.where, params["FunctionName"]) {
			continue
		}
		payload := params["Payload"].(map[string]any)
		_, hasAction := payload["action"]
		fn, ok := functions[id][hasAction]
		require.True(t, ok, "%s: no contract for %s (action: %v)", s.where, id, hasAction)

		t.Run(s.name+" sends a "+fn.in.Name(), func(t *testing.T) {
			assert.ElementsMatch(t, tags(fn.in), payloadKeys(payload), "the payload's fields are exactly the json tags of %s", fn.in)
			for key, v := range payload {
				name, isPath := strings.CutSuffix(key, ".$")
				field, err := fieldType(fn.in, name)
				if !assert.NoError(t, err) {
					continue
				}
				if !isPath {
					if name == "action" {
						assert.Equal(t, phase.ActionPlan, v)
					}
					continue
				}
				got, err := resolve(s.scope, v.(string))
				if assert.NoError(t, err, "payload %s", key) {
					assert.Equal(t, field, got, "payload %s = %s: the state's field has another type", key, v)
				}
			}
		})
		t.Run(s.name+" keeps parts of a "+fn.out.Name(), func(t *testing.T) {
			sel, ok := s.body["ResultSelector"].(map[string]any)
			require.True(t, ok, "a ResultSelector keeps the state small")
			target := resultTarget(t, s)
			for key, v := range sel {
				name, isPath := strings.CutSuffix(key, ".$")
				require.True(t, isPath, "ResultSelector %s", key)
				path, ok := strings.CutPrefix(v.(string), "$.Payload.")
				require.True(t, ok, "ResultSelector %s = %s: read the function's result under $.Payload", key, v)
				src, err := resolve(fn.out, "$."+path)
				require.NoError(t, err, "ResultSelector %s", key)
				dst, err := fieldType(target, name)
				require.NoError(t, err, "ResultSelector %s: ResultPath %v", key, s.body["ResultPath"])
				assert.Equal(t, dst, src, "ResultSelector %s", key)
			}
		})
	}
}

func TestTheMapIteratesOverPlannedChunks(t *testing.T) {
	f := load(t)
	m := f.def["States"].(map[string]any)["CopyShards"].(map[string]any)
	require.Equal(t, "Map", m["Type"])
	assert.Equal(t, f.values["MapMaxConcurrency"], fmt.Sprint(m["MaxConcurrency"]))
	assert.Nil(t, m["ResultPath"], "the shards' results stay in the job store")

	items, err := resolve(executionType, m["ItemsPath"].(string))
	require.NoError(t, err)
	require.Equal(t, reflect.Slice, items.Kind())
	item := items.Elem()
	chunkIn := reflect.TypeFor[phase.ChunkInput]()

	sel := m["ItemSelector"].(map[string]any)
	assert.ElementsMatch(t, tags(chunkIn), payloadKeys(sel), "an iteration starts from a ChunkInput")
	for key, v := range sel {
		name, _ := strings.CutSuffix(key, ".$")
		path, ok := strings.CutPrefix(v.(string), "$$.Map.Item.Value.")
		require.True(t, ok, "ItemSelector %s = %s", key, v)
		src, err := resolve(item, "$."+path)
		require.NoError(t, err, "ItemSelector %s", key)
		dst, err := fieldType(chunkIn, name)
		require.NoError(t, err)
		assert.Equal(t, dst, src, "ItemSelector %s", key)
	}
	// The iteration's state is a ChunkOutput, whose ChunkInput part feeds
	// the next CopyChunk.
	for _, tag := range tags(chunkIn) {
		a, err := fieldType(chunkIn, tag)
		require.NoError(t, err)
		b, err := fieldType(iterationType, tag)
		require.NoError(t, err, "ChunkOutput lacks %s", tag)
		assert.Equal(t, a, b, tag)
	}
	proc := m["ItemProcessor"].(map[string]any)
	assert.Equal(t, "INLINE", proc["ProcessorConfig"].(map[string]any)["Mode"])
	loop := proc["States"].(map[string]any)["ShardDone?"].(map[string]any)
	assert.Equal(t, "CopyChunk", loop["Default"], "a shard that is not done gets another chunk")
}

// TestEveryPathNamesAField checks every JSONPath of the definition that
// the struct tests above do not: choice variables, Pass and service task
// parameters, intrinsic function arguments, ResultPaths and ItemsPaths.
func TestEveryPathNamesAField(t *testing.T) {
	f := load(t)
	for _, s := range states(f.def) {
		for _, key := range []string{"InputPath", "OutputPath", "ItemsPath", "ErrorPath", "CausePath"} {
			if p, ok := s.body[key].(string); ok {
				_, err := resolve(s.scope, p)
				assert.NoError(t, err, "%s.%s", s.where, key)
			}
		}
		if p, ok := s.body["ResultPath"].(string); ok && p != "$" {
			_, err := resolve(s.scope, p)
			assert.NoError(t, err, "%s.ResultPath", s.where)
		}
		for _, c := range list(s.body["Catch"]) {
			if p, ok := c.(map[string]any)["ResultPath"].(string); ok {
				typ, err := resolve(s.scope, p)
				if assert.NoError(t, err, "%s.Catch", s.where) {
					assert.Equal(t, reflect.TypeFor[*phase.StateError](), typ, "%s: a Catch writes a StateError", s.where)
				}
			}
		}
		for _, c := range list(s.body["Choices"]) {
			checkChoice(t, s, c.(map[string]any))
		}
		if s.body["Type"] == "Pass" || s.body["Resource"] != "arn:aws:states:::lambda:invoke" && s.body["Type"] == "Task" {
			walkJSON(s.body["Parameters"], s.where+".Parameters", func(path, key string, v any) {
				if !strings.HasSuffix(key, ".$") {
					return
				}
				for _, p := range paths(v.(string)) {
					_, err := resolve(s.scope, p)
					assert.NoError(t, err, "%s: %s", path, p)
				}
			})
		}
	}
}

func checkChoice(t *testing.T, s state, rule map[string]any) {
	t.Helper()
	for _, key := range []string{"And", "Or"} {
		for _, r := range list(rule[key]) {
			checkChoice(t, s, r.(map[string]any))
		}
	}
	if not, ok := rule["Not"].(map[string]any); ok {
		checkChoice(t, s, not)
	}
	v, ok := rule["Variable"].(string)
	if !ok {
		return
	}
	typ, err := resolve(s.scope, v)
	if !assert.NoError(t, err, "%s: Variable", s.where) {
		return
	}
	for op := range rule {
		want := map[string]reflect.Kind{"BooleanEquals": reflect.Bool, "StringEquals": reflect.String}[op]
		if strings.HasPrefix(op, "Numeric") {
			assert.Contains(t, []reflect.Kind{reflect.Int, reflect.Int64, reflect.Float64}, typ.Kind(), "%s: %s on %s", s.where, op, v)
		} else if want != 0 {
			assert.Equal(t, want, typ.Kind(), "%s: %s on %s", s.where, op, v)
		}
		if op == "StringEquals" && v == "$.options.mode" {
			assert.Contains(t, []string{phase.ModeCommand, phase.ModeRedisShake, phase.ModeRedisShakeSync}, rule[op], "%s", s.where)
		}
	}
}

func TestEventsMatchThePhaseEvent(t *testing.T) {
	f := load(t)
	detailTypes := map[string]job.Status{
		phase.EventMigrationSucceeded: job.StatusSucceeded,
		phase.EventMigrationFailed:    job.StatusFailed,
		phase.EventMigrationBlocked:   job.StatusBlocked,
	}
	seen := map[string]bool{}
	eventType := reflect.TypeFor[phase.Event]()
	for _, s := range states(f.def) {
		if s.body["Resource"] != "arn:aws:states:::events:putEvents" {
			continue
		}
		for _, e := range list(s.body["Parameters"].(map[string]any)["Entries"]) {
			e := e.(map[string]any)
			dt := e["DetailType"].(string)
			seen[dt] = true
			require.Contains(t, detailTypes, dt, "%s", s.where)
			assert.Equal(t, phase.EventSource, e["Source"], "%s", s.where)
			assert.Equal(t, f.values["EventBusName"], e["EventBusName"], "%s", s.where)
			detail := e["Detail"].(map[string]any)
			assert.Equal(t, string(detailTypes[dt]), detail["status"], "%s: status", s.where)
			for key, v := range detail {
				name, isPath := strings.CutSuffix(key, ".$")
				dst, err := fieldType(eventType, name)
				if !assert.NoError(t, err, "%s: Detail %s", s.where, key) || !isPath {
					continue
				}
				src, err := resolve(s.scope, v.(string))
				if assert.NoError(t, err, "%s: Detail %s", s.where, key) {
					assert.Equal(t, dst, src, "%s: Detail %s", s.where, key)
				}
			}
		}
	}
	assert.Len(t, seen, len(detailTypes), "every event is emitted: %v", seen)
}

// TestRecordsFollowTheJobModel checks the state machine's own writes to
// the job table: the meta item of the job, attributes named as the job's
// json tags (the dynamo store's attribute names), and status changes the
// job package allows.
func TestRecordsFollowTheJobModel(t *testing.T) {
	f := load(t)
	jobTags := tags(reflect.TypeFor[job.Job]())
	set := regexp.MustCompile(`#(\w+) = (:\w+)`)
	records := 0
	for _, s := range states(f.def) {
		if s.body["Resource"] != "arn:aws:states:::dynamodb:updateItem" {
			continue
		}
		records++
		t.Run(s.name, func(t *testing.T) {
			p := s.body["Parameters"].(map[string]any)
			assert.Equal(t, f.values["TableName"], p["TableName"])
			key := p["Key"].(map[string]any)
			assert.Equal(t, map[string]any{"S.$": "States.Format('job#{}', $.jobId)"}, key["PK"])
			assert.Equal(t, map[string]any{"S": "meta"}, key["SK"])
			assert.Nil(t, s.body["ResultPath"])

			names := p["ExpressionAttributeNames"].(map[string]any)
			for alias, name := range names {
				assert.Equal(t, "#"+name.(string), alias)
				assert.Contains(t, jobTags, name, "%s is not a job attribute", name)
			}
			values := p["ExpressionAttributeValues"].(map[string]any)
			str := func(k string) string {
				v, _ := values[k].(map[string]any)["S"].(string)
				return v
			}
			update := p["UpdateExpression"].(string)
			require.True(t, strings.HasPrefix(update, "SET "), update)
			sets := map[string]string{}
			for _, m := range set.FindAllStringSubmatch(update, -1) {
				sets[m[1]] = m[2]
			}
			require.Equal(t, ":to", sets["status"], "SET #status = :to")
			to := job.Status(str(":to"))
			require.True(t, to.Valid(), "%q", to)
			assert.True(t, to.Terminal(), "the state machine only ends jobs")
			assert.Equal(t, ":now", sets["updatedAt"])
			assert.Equal(t, ":now", sets["finishedAt"])
			assert.Equal(t, map[string]any{"S.$": "$$.State.EnteredTime"}, values[":now"])

			cond := p["ConditionExpression"].(string)
			var from, terminal []job.Status
			for k := range values {
				switch {
				case strings.HasPrefix(k, ":from"):
					from = append(from, job.Status(str(k)))
				case strings.HasPrefix(k, ":terminal"):
					terminal = append(terminal, job.Status(str(k)))
				}
				assert.Contains(t, update+" "+cond, k, "%s is never used", k)
			}
			require.True(t, len(from) > 0 || len(terminal) > 0, "a status change needs a condition on the current status: %s", cond)
			for _, s := range from {
				assert.True(t, job.ValidTransition(s, to), "%s -> %s", s, to)
			}
			if len(terminal) > 0 {
				assert.Contains(t, cond, "NOT (#status IN (")
				var want []job.Status
				for _, s := range job.Statuses() {
					if s.Terminal() {
						want = append(want, s)
					}
				}
				assert.ElementsMatch(t, want, terminal, "every terminal status is excluded")
				for _, s := range job.Statuses() {
					if !s.Terminal() && s != to {
						assert.True(t, job.ValidTransition(s, to), "a job %s may become %s", s, to)
					}
				}
			}
		})
	}
	assert.Equal(t, 3, records, "RecordBlocked, RecordSuccess, RecordFailure")
}

// ---- helpers ----------------------------------------------------------------

// resultTarget is the type a task's ResultPath writes.
func resultTarget(t *testing.T, s state) reflect.Type {
	t.Helper()
	p, ok := s.body["ResultPath"].(string)
	require.True(t, ok, "%s: ResultPath", s.where)
	if p == "$" {
		return s.scope
	}
	typ, err := resolve(s.scope, p)
	require.NoError(t, err, "%s: ResultPath", s.where)
	return typ
}

// contextPaths are the context object paths the definition may read.
var contextPaths = regexp.MustCompile(`^\$\$\.(State\.EnteredTime|Task\.Token|Execution\.(Id|Name|StartTime)|Map\.Item\.(Index|Value(\.[A-Za-z]\w*)*))$`)

// resolve returns the Go type that a JSONPath ($, $.a.b) names in typ:
// each step is a json tag of a struct field (embedded structs flattened).
// Context object paths ($$.) are checked against contextPaths and have no
// type (nil).
func resolve(typ reflect.Type, path string) (reflect.Type, error) {
	if strings.HasPrefix(path, "$$") {
		if !contextPaths.MatchString(path) {
			return nil, fmt.Errorf("context path %s is not one the definition may use", path)
		}
		return nil, nil
	}
	if path == "$" {
		return typ, nil
	}
	rest, ok := strings.CutPrefix(path, "$.")
	if !ok || !regexp.MustCompile(`^[A-Za-z]\w*(\.[A-Za-z]\w*)*$`).MatchString(rest) {
		return nil, fmt.Errorf("path %q: only $.name.name... paths are allowed", path)
	}
	for _, name := range strings.Split(rest, ".") {
		ft, err := fieldType(typ, name)
		if err != nil {
			return nil, fmt.Errorf("path %s: %w", path, err)
		}
		typ = ft
	}
	return typ, nil
}

// fieldType returns the type of the field with json name name.
func fieldType(typ reflect.Type, name string) (reflect.Type, error) {
	st := typ
	for st.Kind() == reflect.Pointer {
		st = st.Elem()
	}
	if st.Kind() != reflect.Struct {
		return nil, fmt.Errorf("%s has no fields (looking for %q)", typ, name)
	}
	for i := range st.NumField() {
		f := st.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && tag == "" {
			if ft, err := fieldType(f.Type, name); err == nil {
				return ft, nil
			}
			continue
		}
		if tag == name && f.IsExported() {
			return f.Type, nil
		}
	}
	return nil, fmt.Errorf("%s has no field with json tag %q", typ, name)
}

// tags lists the json names of a struct's fields (embedded structs
// flattened).
func tags(typ reflect.Type) []string {
	var out []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && tag == "" {
			out = append(out, tags(f.Type)...)
			continue
		}
		if tag != "-" && f.IsExported() {
			out = append(out, tag)
		}
	}
	return out
}

func payloadKeys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, strings.TrimSuffix(k, ".$"))
	}
	return out
}

var (
	quoted   = regexp.MustCompile(`'(\\.|[^'\\])*'`)
	pathLike = regexp.MustCompile(`\$\$?[^,\s)]*`)
)

// paths returns the JSONPaths in a ".$" value: the value itself, or the
// arguments of an intrinsic function (string literals skipped).
func paths(v string) []string {
	if !strings.HasPrefix(v, "States.") {
		return []string{v}
	}
	return pathLike.FindAllString(quoted.ReplaceAllString(v, "''"), -1)
}

func walkJSON(v any, path string, fn func(path, key string, v any)) {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			fn(path+"."+k, k, v[k])
			walkJSON(v[k], path+"."+k, fn)
		}
	case []any:
		for i, e := range v {
			walkJSON(e, fmt.Sprintf("%s[%d]", path, i), fn)
		}
	}
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func number(v any) float64 {
	n, _ := v.(float64)
	return n
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}
