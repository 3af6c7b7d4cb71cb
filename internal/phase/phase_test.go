package phase

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/transfer"
)

// eventsDir holds one JSON file per Lambda payload (also usable with
// `sam local invoke -e`).
const eventsDir = "../../events"

type checker interface{ Check() error }

// TestFixturesRoundTrip decodes every payload fixture strictly into its
// struct, checks it, encodes it again and compares: a renamed tag, a field
// missing from the struct or from the fixture fails here.
func TestFixturesRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		file string
		new  func() checker
	}{
		{"analyze/input.json", func() checker { return new(AnalyzeInput) }},
		{"analyze/output.json", func() checker { return new(AnalyzeOutput) }},
		{"execute-chunk/plan-input.json", func() checker { return new(PlanInput) }},
		{"execute-chunk/plan-output.json", func() checker { return new(PlanOutput) }},
		{"execute-chunk/chunk-input.json", func() checker { return new(ChunkInput) }},
		{"execute-chunk/chunk-output.json", func() checker { return new(ChunkOutput) }},
		{"validate/input.json", func() checker { return new(ValidateInput) }},
		{"validate/output.json", func() checker { return new(ValidateOutput) }},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(eventsDir, tc.file))
			require.NoError(t, err)
			v := tc.new()
			require.NoError(t, Decode(data, v), "strict decode and Check")

			out, err := json.Marshal(v)
			require.NoError(t, err)
			assert.JSONEq(t, string(data), string(out))

			var doc any
			require.NoError(t, json.Unmarshal(data, &doc))
			assert.ElementsMatch(t, fieldPaths(reflect.TypeOf(v).Elem(), ""), jsonPaths(doc, ""),
				"the fixture sets every field of %T (and nothing else)", v)
		})
	}
}

// Every payload fixture of the phase functions is in the table above (the
// api function's events are decoded by its own tests).
func TestEveryFixtureIsTested(t *testing.T) {
	src, err := os.ReadFile("phase_test.go")
	require.NoError(t, err)
	n := 0
	for _, dir := range []string{"analyze", "execute-chunk", "validate"} {
		files, err := filepath.Glob(filepath.Join(eventsDir, dir, "*.json"))
		require.NoError(t, err)
		for _, f := range files {
			n++
			name := dir + "/" + filepath.Base(f)
			assert.Contains(t, string(src), `"`+name+`"`, "events/%s has no decoding test", name)
		}
	}
	assert.Equal(t, 8, n)
}

func TestDecodeRefusesBadPayloads(t *testing.T) {
	const id = "01jd8z3k4m5n6p7q8r9s0t1v2w"
	input := func(mut func(m map[string]any)) string {
		m := map[string]any{
			"jobId":   id,
			"source":  map[string]any{"url": "redis://10.0.0.1:6379"},
			"target":  map[string]any{"url": "valkey://default@10.0.0.2:6379", "secretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kvmigrate/t-AbC123"},
			"options": map[string]any{"mode": "command", "analysisOnly": false, "force": false},
		}
		mut(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	opt := func(k string, v any) func(map[string]any) {
		return func(m map[string]any) { m["options"].(map[string]any)[k] = v }
	}
	require.NoError(t, Decode([]byte(input(func(map[string]any) {})), new(AnalyzeInput)), "the base payload is valid")
	for _, tc := range []struct {
		name, payload string
	}{
		{"an unknown field", input(func(m map[string]any) { m["sourceUrl"] = "x" })},
		{"an inline password", input(func(m map[string]any) {
			m["source"] = map[string]any{"url": "redis://default:hunter22@10.0.0.1:6379"}
		})},
		{"a malformed secret ARN", input(func(m map[string]any) {
			m["target"] = map[string]any{"url": "redis://10.0.0.2", "secretArn": "kvmigrate/target"}
		})},
		{"a missing URL", input(func(m map[string]any) { m["target"] = map[string]any{} })},
		{"a URL of another scheme", input(func(m map[string]any) { m["target"] = map[string]any{"url": "http://10.0.0.2"} })},
		{"a bad job id", input(func(m map[string]any) { m["jobId"] = "job/1" })},
		{"an unknown mode", input(opt("mode", "rsync"))},
		{"no mode for a migration", input(opt("mode", ""))},
		{"too many keys in flight", input(opt("concurrency", MaxKeyConcurrency+1))},
		{"a negative rate limit", input(opt("maxOps", -1))},
		{"a sample too small", input(opt("sampleSize", MinSampleSize-1))},
		{"a sample too large", input(opt("sampleSize", MaxSampleSize+1))},
		{"an unknown strategy", input(opt("strategy", "fast"))},
		{"an unknown conflict policy", input(opt("onConflict", "merge"))},
		{"an unknown type", input(opt("type", "json"))},
		{"data after the value", input(func(map[string]any) {}) + "{}"},
		{"not JSON", "{"},
	} {
		t.Run("refuses "+tc.name, func(t *testing.T) {
			err := Decode([]byte(tc.payload), new(AnalyzeInput))
			var target *InvalidInputError
			require.ErrorAs(t, err, &target)
			assert.Equal(t, "InvalidInputError", lambdaErrorType(err))
			assert.NotContains(t, err.Error(), "hunter22", "the message never carries a password")
		})
	}
	t.Run("accepts an analysis-only job without a mode", func(t *testing.T) {
		var in AnalyzeInput
		require.NoError(t, Decode([]byte(input(func(m map[string]any) {
			m["options"] = map[string]any{"analysisOnly": true}
		})), &in))
		assert.True(t, in.Options.AnalysisOnly)
	})
}

func TestDecodeExecuteTellsPlanFromChunk(t *testing.T) {
	in, err := DecodeExecute([]byte(`{"jobId":"j1","action":"plan"}`))
	require.NoError(t, err)
	assert.Equal(t, &PlanInput{JobID: "j1", Action: ActionPlan}, in)

	in, err = DecodeExecute([]byte(`{"jobId":"j1","node":"10.0.0.1:6379","db":3,"cursor":"0"}`))
	require.NoError(t, err)
	assert.Equal(t, &ChunkInput{JobID: "j1", Node: "10.0.0.1:6379", DB: 3, Cursor: "0"}, in)

	for _, bad := range []string{
		`{"jobId":"j1","action":"copy"}`,
		`{"jobId":"j1","action":"plan","node":"10.0.0.1:6379"}`,
		`{"jobId":"j1","node":"10.0.0.1:6379","db":0}`,
		`{"jobId":"j1","node":"","db":0,"cursor":"0"}`,
		`{"jobId":"j1","node":"n","db":-1,"cursor":"0"}`,
		`[]`,
	} {
		_, err := DecodeExecute([]byte(bad))
		var target *InvalidInputError
		assert.ErrorAs(t, err, &target, bad)
	}
}

func TestAnalyzeOutputBoundsWhatTheStateCarries(t *testing.T) {
	out := AnalyzeOutput{JobID: "j1"}
	for range MaxFindings + 1 {
		out.Findings = append(out.Findings, Finding{Category: "acl", Severity: SeverityWarning, Message: "m"})
	}
	assert.ErrorIs(t, out.Check(), job.ErrInvalid)
	out.Findings = out.Findings[:MaxFindings]
	assert.NoError(t, out.Check())
	out.Findings[0].Message = strings.Repeat("x", MaxFindingMessage+1)
	assert.ErrorIs(t, out.Check(), job.ErrInvalid)
	out.Findings[0] = Finding{Category: "acl", Severity: "fatal"}
	assert.ErrorIs(t, out.Check(), job.ErrInvalid)
}

// lambdaErrorType is the error type aws-lambda-go reports for an error a
// handler returns (lambda/errors.go): the name of its type, without the
// pointer.
func lambdaErrorType(err error) string {
	t := reflect.TypeOf(err)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}

func TestClassifyNamesDomainErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{transfer.ErrTransient, "TransientError"},
		{endpoint.ErrUnreachable, "TransientError"},
		{job.ErrTransient, "TransientError"},
		{endpoint.ErrInvalidURL, "InvalidInputError"},
		{endpoint.ErrClusterDB, "InvalidInputError"},
		{endpoint.ErrClusterMode, "InvalidInputError"},
		{transfer.ErrInvalidOptions, "InvalidInputError"},
		{job.ErrInvalid, "InvalidInputError"},
		{endpoint.ErrAuth, "AuthError"},
		{endpoint.ErrNoPermission, "AuthError"},
		{endpoint.ErrTLS, "TLSError"},
		{transfer.ErrTopology, "UnsupportedError"},
		{job.ErrNotFound, "NotFoundError"},
		{job.ErrConflict, "ConflictError"},
		{&job.TransitionError{ID: "j1", From: job.StatusCancelled, To: job.StatusRunning}, "ConflictError"},
		{context.DeadlineExceeded, "TimeoutError"},
		{errors.New("something else"), "InternalError"},
	} {
		t.Run(fmt.Sprintf("%v is a %s", tc.err, tc.want), func(t *testing.T) {
			wrapped := fmt.Errorf("copy shard 10.0.0.1:6379/0: %w", tc.err)
			got := Classify(wrapped)
			assert.Equal(t, tc.want, lambdaErrorType(got))
			assert.Contains(t, ErrorNames(), tc.want)
			assert.Equal(t, wrapped.Error(), got.Error(), "the message is the domain error's")
			assert.ErrorIs(t, got, tc.err, "the domain error stays testable")
		})
	}
	t.Run("the most specific class wins", func(t *testing.T) {
		// An unreachable server after a timeout is transient, not a timeout.
		err := fmt.Errorf("dial: %w", errors.Join(endpoint.ErrUnreachable, context.DeadlineExceeded))
		assert.Equal(t, "TransientError", lambdaErrorType(Classify(err)))
	})
	t.Run("nil stays nil", func(t *testing.T) {
		assert.NoError(t, Classify(nil))
	})
	t.Run("an error of ours is returned as is", func(t *testing.T) {
		e := &BlockedError{Err: errors.New("2 blocking findings")}
		assert.Same(t, e, Classify(e))
	})
	t.Run("an error of ours inside another keeps its name and gets the whole message", func(t *testing.T) {
		inner := &ValidationFailedError{Err: errors.New("3 issues")}
		got := Classify(fmt.Errorf("validate job j1: %w", inner))
		assert.Equal(t, "ValidationFailedError", lambdaErrorType(got))
		assert.Equal(t, "validate job j1: 3 issues", got.Error())
		var target *ValidationFailedError
		assert.ErrorAs(t, got, &target)
	})
}

func TestErrorNamesAreTheTypeNames(t *testing.T) {
	names := ErrorNames()
	assert.Len(t, names, len(errorTypes))
	assert.Equal(t, len(names), len(slices.Compact(slices.Sorted(slices.Values(names)))), "unique")
	for i, e := range errorTypes {
		assert.Equal(t, names[i], lambdaErrorType(e))
		assert.True(t, strings.HasSuffix(names[i], "Error"), names[i])
		// wrap keeps the type, so Classify never changes a name.
		assert.Equal(t, names[i], lambdaErrorType(e.wrap(errors.New("x"))))
		assert.Equal(t, "unknown error", e.Error(), "an empty error still has a message")
	}
	for _, want := range []string{"TransientError", "InvalidInputError", "BlockedError"} {
		assert.Contains(t, names, want, "DESIGN names it")
	}
}

// fieldPaths lists the dotted json paths of a type's leaf fields; slices
// contribute their element's paths under "name[]".
func fieldPaths(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		var out []string
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if f.Anonymous && name == "" {
				out = append(out, fieldPaths(f.Type, prefix)...)
				continue
			}
			out = append(out, fieldPaths(f.Type, join(prefix, name))...)
		}
		return out
	case reflect.Slice:
		return fieldPaths(t.Elem(), prefix+"[]")
	}
	return []string{prefix}
}

// jsonPaths lists the same paths for a decoded JSON document (once each).
func jsonPaths(v any, prefix string) []string {
	switch v := v.(type) {
	case map[string]any:
		var out []string
		for _, k := range slices.Sorted(maps.Keys(v)) {
			out = append(out, jsonPaths(v[k], join(prefix, k))...)
		}
		return out
	case []any:
		seen := map[string]bool{}
		var out []string
		for _, e := range v {
			for _, p := range jsonPaths(e, prefix+"[]") {
				if !seen[p] {
					seen[p] = true
					out = append(out, p)
				}
			}
		}
		return out
	}
	return []string{prefix}
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func TestCheckNamesTheFieldAtFault(t *testing.T) {
	base := func() AnalyzeInput {
		return AnalyzeInput{
			JobID:   "j1",
			Source:  Endpoint{URL: "redis://10.0.0.1:6379"},
			Target:  Endpoint{URL: "valkey://10.0.0.2:6379"},
			Options: Options{Mode: ModeCommand},
		}
	}
	for _, tc := range []struct {
		field string
		mut   func(*AnalyzeInput)
	}{
		{"jobId", func(in *AnalyzeInput) { in.JobID = "a/b" }},
		{"source.url", func(in *AnalyzeInput) { in.Source.URL = "" }},
		{"source.url", func(in *AnalyzeInput) { in.Source.URL = "http://x" }},
		{"target.url", func(in *AnalyzeInput) { in.Target.URL = "redis://u:hunter22@10.0.0.2" }},
		{"target.secretArn", func(in *AnalyzeInput) { in.Target.SecretARN = "kvmigrate/t" }},
		{"options.mode", func(in *AnalyzeInput) { in.Options.Mode = "" }},
		{"options.mode", func(in *AnalyzeInput) { in.Options.Mode = "rsync" }},
		{"options.strategy", func(in *AnalyzeInput) { in.Options.Strategy = "fast" }},
		{"options.onConflict", func(in *AnalyzeInput) { in.Options.OnConflict = "merge" }},
		{"options.type", func(in *AnalyzeInput) { in.Options.Type = "json" }},
		{"options.maxOps", func(in *AnalyzeInput) { in.Options.MaxOps = -1 }},
		{"options.concurrency", func(in *AnalyzeInput) { in.Options.Concurrency = MaxKeyConcurrency + 1 }},
		{"options.chunkKeys", func(in *AnalyzeInput) { in.Options.ChunkKeys = -1 }},
		{"options.sampleSize", func(in *AnalyzeInput) { in.Options.SampleSize = 1 }},
	} {
		in := base()
		tc.mut(&in)
		err := in.Check()
		fe, ok := errors.AsType[*FieldError](err)
		require.True(t, ok, "%s: %v is not a *FieldError", tc.field, err)
		assert.Equal(t, tc.field, fe.Field)
		assert.IsType(t, &InvalidInputError{}, Classify(err), "still an InvalidInputError for Step Functions")
		assert.NotContains(t, err.Error(), "hunter22")
	}
	in := base()
	require.NoError(t, in.Check())
}

func TestJobIsTheRecordAnExecutionRuns(t *testing.T) {
	in := AnalyzeInput{
		JobID:   "01jd8z3k4m5n6p7q8r9s0t1v2w",
		Source:  Endpoint{URL: "redis://10.0.0.1"},
		Target:  Endpoint{URL: "valkeys://app@10.0.0.2:6380?cluster=true", SecretARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:kvmigrate/t-AbC123"},
		Options: Options{Mode: ModeCommand, Force: true, Strategy: "dump", MaxOps: 10, Concurrency: 8, SampleSize: 2000, ChunkKeys: 500},
	}
	j, err := in.Job()
	require.NoError(t, err)
	assert.Equal(t, job.Job{
		ID: in.JobID, Kind: job.KindMigration, Mode: job.ModeCommand,
		Source: "redis://10.0.0.1:6379", Target: "valkeys://app@10.0.0.2:6380?cluster=true",
		TargetSecretRef: in.Target.SecretARN,
		Options:         job.Options{Force: true, Strategy: "dump", MaxOps: 10, Concurrency: 8, SampleSize: 2000, ChunkKeys: 500},
	}, j)
	src, dst := JobEndpoints(j)
	assert.Equal(t, Endpoint{URL: "redis://10.0.0.1:6379"}, src)
	assert.Equal(t, in.Target, dst)

	in.Options = Options{AnalysisOnly: true}
	j, err = in.Job()
	require.NoError(t, err)
	assert.Equal(t, job.KindAnalysis, j.Kind)
	assert.Empty(t, j.Mode)

	assert.False(t, ValidJobID("job_1"), "'_' separates the parts of temporary key names")
	assert.False(t, ValidJobID(strings.Repeat("a", 65)))
	assert.True(t, ValidJobID(job.NewID()))
	assert.True(t, ValidJobID("6a7e8feb-b491-4cf7-a9f1-bf3703467718"), "an EventBridge event id")
}
