package sfntest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/awstest"
	"github.com/kvmigrate/kvmigrate/internal/phase"
	"github.com/kvmigrate/kvmigrate/internal/sam"
	"github.com/kvmigrate/kvmigrate/internal/sfntest"
)

// The harness itself, with stand-in functions and small definitions of
// its own: the engine sees Lambda's error names, both Lambda resource
// forms, deadlines, the local service integrations, and stops.

const waitLimit = 60 * time.Second

func wait(t *testing.T, e *sfntest.Execution) sfntest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	res, err := e.Wait(ctx)
	require.NoError(t, err, "history:\n%s", e.History())
	return res
}

type echoIn struct {
	N int `json:"n"`
}

type echoOut struct {
	N        int  `json:"n"`
	Deadline bool `json:"deadline"`
}

// flaky fails its first failures invocations with err, then echoes n+1.
func flaky(failures int32, err error) lambda.Handler {
	var calls atomic.Int32
	return lambda.NewHandler(func(ctx context.Context, in echoIn) (echoOut, error) {
		if calls.Add(1) <= failures {
			return echoOut{}, err
		}
		_, ok := ctx.Deadline()
		return echoOut{N: in.N + 1, Deadline: ok}, nil
	})
}

func TestLambdaTasksSeeTheFunctionsResultsAndErrorNames(t *testing.T) {
	t.Parallel()
	def := `{
	  "StartAt": "Plain",
	  "States": {
	    "Plain": {
	      "Type": "Task",
	      "Resource": "arn:aws:lambda:us-east-1:123456789012:function:Echo",
	      "Retry": [{"ErrorEquals": ["TransientError"], "MaxAttempts": 3}],
	      "ResultPath": "$.plain",
	      "Next": "Optimized"
	    },
	    "Optimized": {
	      "Type": "Task",
	      "Resource": "arn:aws:states:::lambda:invoke",
	      "Parameters": {"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:Echo2", "Payload": {"n.$": "$.plain.n"}},
	      "ResultSelector": {"n.$": "$.Payload.n", "deadline.$": "$.Payload.deadline", "status.$": "$.StatusCode"},
	      "ResultPath": "$.optimized",
	      "Next": "Fatal"
	    },
	    "Fatal": {
	      "Type": "Task",
	      "Resource": "arn:aws:states:::lambda:invoke",
	      "Parameters": {"FunctionName": "Broken", "Payload": {"n": 0}},
	      "Retry": [{"ErrorEquals": ["TransientError"], "MaxAttempts": 3}],
	      "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}],
	      "End": true
	    },
	    "Failed": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}
	  }
	}`
	h := sfntest.New(t, sfntest.Config{
		Definition: []byte(def),
		Functions: map[string]lambda.Handler{
			"Echo":   flaky(2, &phase.TransientError{Err: errors.New("connection reset")}),
			"Echo2":  flaky(0, nil),
			"Broken": flaky(100, &phase.AuthError{Err: errors.New("WRONGPASS")}),
		},
		FunctionTimeout: 5 * time.Second,
	})
	e, err := h.Start(t.Context(), "job-1", map[string]int{"n": 1})
	require.NoError(t, err)
	res := wait(t, e)

	assert.Equal(t, sfntest.StatusFailed, res.Status, e.History())
	assert.Equal(t, "AuthError", res.Error, "the Go type name of the error is the error name")
	assert.Contains(t, res.Cause, "WRONGPASS")
	assert.Equal(t, 1, e.Entered("Plain"), "a retry stays in the state")

	var retried []string
	for _, ev := range e.Events() {
		if ev.Type == "StateRetried" {
			retried = append(retried, ev.State.Name)
		}
	}
	assert.Equal(t, []string{"Plain", "Plain"}, retried, "only the transient error is retried")

	calls := h.Invocations()
	byFn := map[string][]sfntest.Invocation{}
	for _, c := range calls {
		byFn[c.Function] = append(byFn[c.Function], c)
	}
	require.Len(t, byFn["Echo"], 3)
	assert.Equal(t, "TransientError", byFn["Echo"][0].ErrorType)
	assert.JSONEq(t, `{"n":2}`, string(byFn["Echo2"][0].Payload), "the lambda:invoke Payload is the function's event")
	require.Len(t, byFn["Broken"], 1, "AuthError is not retried")

	// The execution's last state input holds both results.
	var last struct {
		Plain     echoOut `json:"plain"`
		Optimized struct {
			N        int  `json:"n"`
			Deadline bool `json:"deadline"`
			Status   int  `json:"status"`
		} `json:"optimized"`
		Error phase.StateError `json:"error"`
	}
	for _, ev := range e.Events() {
		if ev.Type == "StateEntered" && ev.State.Name == "Failed" {
			require.NoError(t, json.Unmarshal(ev.State.Input, &last))
		}
	}
	assert.Equal(t, echoOut{N: 2, Deadline: true}, last.Plain)
	assert.Equal(t, 3, last.Optimized.N, "the lambda:invoke result is under Payload")
	assert.True(t, last.Optimized.Deadline, "the handler's context has the function timeout as deadline")
	assert.Equal(t, 200, last.Optimized.Status)
	assert.Equal(t, "AuthError", last.Error.Error)
}

func TestServiceIntegrationsWriteToDynamoDBAndRecordEvents(t *testing.T) {
	t.Parallel()
	cfg := awstest.Config(awstest.StartMoto(t))
	db := dynamodb.NewFromConfig(cfg)
	const table = "Jobs"
	_, err := db.CreateTable(t.Context(), &dynamodb.CreateTableInput{
		TableName:   aws.String(table),
		BillingMode: types.BillingModePayPerRequest,
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("PK"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("SK"), KeyType: types.KeyTypeRange},
		},
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("PK"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("SK"), AttributeType: types.ScalarAttributeTypeS},
		},
	})
	require.NoError(t, err)

	update := `{
	  "Type": "Task",
	  "Resource": "arn:aws:states:::dynamodb:updateItem",
	  "Parameters": {
	    "TableName": "Jobs",
	    "Key": {"PK": {"S.$": "States.Format('job#{}', $.jobId)"}, "SK": {"S": "meta"}},
	    "UpdateExpression": "SET #status = :to, #updatedAt = :now ADD #n :one",
	    "ConditionExpression": "#status = :from",
	    "ExpressionAttributeNames": {"#status": "status", "#updatedAt": "updatedAt", "#n": "n"},
	    "ExpressionAttributeValues": {":to": {"S": "succeeded"}, ":from": {"S": "running"}, ":now": {"S.$": "$$.State.EnteredTime"}, ":one": {"N": "1"}},
	    "ReturnValues": "ALL_NEW"
	  },
	  "ResultSelector": {"status.$": "$.Attributes.status.S"},
	  "ResultPath": "$.updated",
	  "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Emit"}],
	  "Next": "%s"
	}`
	def := fmt.Sprintf(`{
	  "StartAt": "Put",
	  "States": {
	    "Put": {
	      "Type": "Task",
	      "Resource": "arn:aws:states:::dynamodb:putItem",
	      "Parameters": {
	        "TableName": "Jobs",
	        "Item": {"PK": {"S.$": "States.Format('job#{}', $.jobId)"}, "SK": {"S": "meta"}, "status": {"S": "running"}, "tags": {"SS": ["a", "b"]}, "on": {"BOOL": true}},
	        "ConditionExpression": "attribute_not_exists(PK)"
	      },
	      "ResultPath": null,
	      "Next": "Update"
	    },
	    "Update": %s,
	    "UpdateAgain": %s,
	    "Emit": {
	      "Type": "Task",
	      "Resource": "arn:aws:states:::events:putEvents",
	      "Parameters": {"Entries": [{"EventBusName": "default", "Source": "kvmigrate", "DetailType": "Migration Failed", "Detail": {"jobId.$": "$.jobId", "error.$": "$.error"}}]},
	      "ResultPath": "$.sent",
	      "End": true
	    },
	    "Unreachable": {"Type": "Succeed"}
	  }
	}`, fmt.Sprintf(update, "UpdateAgain"), fmt.Sprintf(update, "Unreachable"))

	h := sfntest.New(t, sfntest.Config{Definition: []byte(def), DynamoDB: db})
	before := time.Now().Add(-time.Second)
	e, err := h.Start(t.Context(), "job-7", map[string]string{"jobId": "7"})
	require.NoError(t, err)
	res := wait(t, e)
	require.Equal(t, sfntest.StatusSucceeded, res.Status, e.History())

	var out struct {
		Updated struct{ Status string } `json:"updated"`
		Error   phase.StateError        `json:"error"`
		Sent    struct {
			FailedEntryCount int
			Entries          []struct {
				EventID string `json:"EventId"`
			}
		} `json:"sent"`
	}
	require.NoError(t, json.Unmarshal(res.Output, &out))
	assert.Equal(t, "succeeded", out.Updated.Status, "ReturnValues come back in DynamoDB JSON")
	assert.Equal(t, "DynamoDB.ConditionalCheckFailedException", out.Error.Error, "the second update's condition fails with the service's error name")
	require.Len(t, out.Sent.Entries, 1)
	assert.NotEmpty(t, out.Sent.Entries[0].EventID)

	item, err := db.GetItem(t.Context(), &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]types.AttributeValue{"PK": &types.AttributeValueMemberS{Value: "job#7"}, "SK": &types.AttributeValueMemberS{Value: "meta"}},
		ConsistentRead: aws.Bool(true),
	})
	require.NoError(t, err)
	assert.Equal(t, &types.AttributeValueMemberS{Value: "succeeded"}, item.Item["status"])
	assert.Equal(t, &types.AttributeValueMemberN{Value: "1"}, item.Item["n"], "the failed update wrote nothing")
	assert.ElementsMatch(t, []string{"a", "b"}, item.Item["tags"].(*types.AttributeValueMemberSS).Value)
	updatedAt, err := time.Parse(time.RFC3339Nano, item.Item["updatedAt"].(*types.AttributeValueMemberS).Value)
	require.NoError(t, err)
	assert.WithinRange(t, updatedAt, before, time.Now().Add(time.Second), "$$.State.EnteredTime is the state's time")

	events := h.Events()
	require.Len(t, events, 1)
	assert.Equal(t, sfntest.SentEvent{
		State: "Emit", EventBusName: "default", Source: "kvmigrate", DetailType: "Migration Failed", Detail: events[0].Detail,
	}, events[0])
	var detail struct {
		JobID string           `json:"jobId"`
		Error phase.StateError `json:"error"`
	}
	require.NoError(t, json.Unmarshal(events[0].Detail, &detail))
	assert.Equal(t, "7", detail.JobID)
	assert.Equal(t, "DynamoDB.ConditionalCheckFailedException", detail.Error.Error)

	var failed []string
	for _, c := range h.TaskCalls() {
		if c.Error != "" {
			failed = append(failed, c.State+": "+c.Error)
		}
	}
	assert.Equal(t, []string{"UpdateAgain: DynamoDB.ConditionalCheckFailedException"}, failed)
}

func TestStopAbortsTheExecutionAndLetsTheRunningInvocationFinish(t *testing.T) {
	t.Parallel()
	def := `{
	  "StartAt": "Slow",
	  "States": {
	    "Slow": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "Slow", "Payload": {}}, "Next": "After"},
	    "After": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "Slow", "Payload": {}}, "End": true}
	  }
	}`
	started, release := make(chan struct{}, 1), make(chan struct{})
	var finishedCleanly atomic.Bool
	h := sfntest.New(t, sfntest.Config{
		Definition: []byte(def),
		Functions: map[string]lambda.Handler{"Slow": sfntest.InvokeFunc(func(ctx context.Context, _ []byte) ([]byte, error) {
			started <- struct{}{}
			select {
			case <-release:
				finishedCleanly.Store(ctx.Err() == nil)
			case <-ctx.Done():
			}
			return []byte(`{}`), nil
		})},
	})
	e, err := h.Start(t.Context(), "job-stop", nil)
	require.NoError(t, err)
	select {
	case <-started:
	case <-time.After(waitLimit):
		t.Fatalf("the function was never invoked:\n%s", e.History())
	}
	require.NoError(t, e.Stop())
	res := wait(t, e)
	assert.Equal(t, sfntest.StatusAborted, res.Status)
	close(release)
	require.Eventually(t, finishedCleanly.Load, 10*time.Second, 10*time.Millisecond, "an abort does not cancel a running invocation")
	assert.Zero(t, e.Entered("After"), "no state starts after the stop")
	assert.NoError(t, e.Stop(), "stopping a finished execution does nothing")

	_, err = h.Start(t.Context(), "job-stop", nil)
	assert.ErrorIs(t, err, sfntest.ErrExecutionExists)
}

func TestAFunctionPastItsTimeoutFailsLikeLambda(t *testing.T) {
	t.Parallel()
	def := `{
	  "StartAt": "Stuck",
	  "States": {
	    "Stuck": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "Stuck", "Payload": {}}, "Next": "Missing"},
	    "Missing": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "Missing", "Payload": {}}, "End": true}
	  }
	}`
	var sawDeadline atomic.Bool
	h := sfntest.New(t, sfntest.Config{
		Definition:      []byte(def),
		FunctionTimeout: 200 * time.Millisecond,
		Functions: map[string]lambda.Handler{"Stuck": sfntest.InvokeFunc(func(ctx context.Context, _ []byte) ([]byte, error) {
			<-ctx.Done()
			sawDeadline.Store(errors.Is(ctx.Err(), context.DeadlineExceeded))
			time.Sleep(100 * time.Millisecond) // ignores its deadline
			return []byte(`{}`), nil
		})},
	})
	e, err := h.Start(t.Context(), "job-timeout", nil)
	require.NoError(t, err)
	res := wait(t, e)
	assert.Equal(t, sfntest.StatusFailed, res.Status)
	assert.Equal(t, "Sandbox.Timedout", res.Error)
	assert.True(t, sawDeadline.Load())

	// A function the harness does not have.
	h2 := sfntest.New(t, sfntest.Config{Definition: []byte(`{"StartAt": "Missing", "States": {"Missing": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "Missing", "Payload": {}}, "End": true}}}`)})
	e, err = h2.Start(t.Context(), "job-missing", nil)
	require.NoError(t, err)
	res = wait(t, e)
	assert.Equal(t, sfntest.StatusFailed, res.Status)
	assert.Equal(t, "Lambda.ResourceNotFoundException", res.Error)
}

func TestTheMigrationDefinitionIsRenderedFromTheTemplate(t *testing.T) {
	t.Parallel()
	def := sfntest.MigrationDefinition(t, map[string]string{"TableName": "jobs-table", "MapMaxConcurrency": "3"})
	var d struct {
		States map[string]struct {
			Parameters     map[string]any
			MaxConcurrency int
		}
	}
	require.NoError(t, json.Unmarshal(def, &d))
	assert.Equal(t, "jobs-table", d.States["RecordSuccess"].Parameters["TableName"])
	assert.Equal(t, 3, d.States["CopyShards"].MaxConcurrency)
	assert.Equal(t, "arn:aws:lambda:us-east-1:123456789012:function:AnalyzeFunction", d.States["Analyze"].Parameters["FunctionName"])
	assert.Equal(t, "AnalyzeFunction", sfntest.FunctionName(d.States["Analyze"].Parameters["FunctionName"].(string)))
	assert.Equal(t, sam.Pseudo["AWS::Region"], sfntest.Region)
	assert.Equal(t, sam.Pseudo["AWS::AccountId"], sfntest.Account)
}

// recorder is a testing.TB that records a Fatal instead of failing.
type recorder struct {
	testing.TB
	fatal string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatal(args ...any) {
	r.fatal = fmt.Sprint(args...)
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestADefinitionWithJSONataOrAssignIsRefused(t *testing.T) {
	t.Parallel()
	if _, _, err := sfntest.Locate(); err != nil {
		t.Skip(err)
	}
	for name, def := range map[string]string{
		"Assign":               `{"StartAt": "A", "States": {"A": {"Type": "Pass", "Assign": {"x": 1}, "End": true}}}`,
		"QueryLanguage":        `{"QueryLanguage": "JSONata", "StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}}`,
		"a JSONata expression": `{"StartAt": "A", "States": {"A": {"Type": "Pass", "Parameters": {"x": "{% $states.input %}"}, "End": true}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			r := &recorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				sfntest.New(r, sfntest.Config{Definition: []byte(def)})
			}()
			<-done
			assert.Contains(t, r.fatal, "not JSONPath only")
		})
	}
}
