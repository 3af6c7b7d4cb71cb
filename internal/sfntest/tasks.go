package sfntest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go"
)

// Service integrations the harness runs itself (the engine runs Lambda
// tasks only).
const (
	ResourceDynamoDBGetItem    = "arn:aws:states:::dynamodb:getItem"
	ResourceDynamoDBPutItem    = "arn:aws:states:::dynamodb:putItem"
	ResourceDynamoDBUpdateItem = "arn:aws:states:::dynamodb:updateItem"
	ResourceDynamoDBDeleteItem = "arn:aws:states:::dynamodb:deleteItem"
	ResourceEventsPutEvents    = "arn:aws:states:::events:putEvents"

	taskCallTimeout = 30 * time.Second
)

// TaskHandler runs a Task state's service integration: input is the
// state's effective input (its Parameters, evaluated), the result is the
// task result. Return a *TaskError to fail the state with an error name.
type TaskHandler func(ctx context.Context, input json.RawMessage) (json.RawMessage, error)

// TaskError fails a Task state with an error name (what Retry and Catch
// match) and a cause.
type TaskError struct {
	Name  string
	Cause string
}

func (e *TaskError) Error() string { return e.Name + ": " + e.Cause }

// TaskCall is one service integration call the harness served.
type TaskCall struct {
	State    string
	Resource string
	Input    json.RawMessage
	Output   json.RawMessage
	// Error is the error name the state failed with, "" on success.
	Error string
}

// TaskCalls returns the service integration calls served so far.
func (h *Harness) TaskCalls() []TaskCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]TaskCall(nil), h.tasks...)
}

// SentEvent is one entry an events:putEvents task sent.
type SentEvent struct {
	// State is the Task state that sent it.
	State        string
	EventBusName string
	Source       string
	DetailType   string
	// Detail is the event's detail (a JSON object).
	Detail    json.RawMessage
	Resources []string
}

// Events returns the events sent so far, in order.
func (h *Harness) Events() []SentEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]SentEvent(nil), h.events...)
}

// DynamoDB is what the dynamodb:* integrations call (a *dynamodb.Client).
type DynamoDB interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

type taskRequest struct {
	State    string          `json:"state"`
	Resource string          `json:"resource"`
	Input    json.RawMessage `json:"input"`
	// TaskTokens are the emulated $$.Task.Token values in Input, and
	// HeartbeatSeconds the state's (0: none); see ecs.go.
	TaskTokens       []string `json:"taskTokens"`
	HeartbeatSeconds int      `json:"heartbeatSeconds"`
}

type taskAnswer struct {
	Output json.RawMessage `json:"output,omitempty"`
	Error  string          `json:"error,omitempty"`
	Cause  string          `json:"cause,omitempty"`
}

// serveTask runs a Task state the runner handed back.
func (h *Harness) serveTask(w http.ResponseWriter, r *http.Request) {
	var req taskRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var handler TaskHandler
	if _, custom := h.cfg.Tasks[req.Resource]; !custom {
		handler = h.ecsHandler(req.State, req.Resource, req.TaskTokens, req.HeartbeatSeconds)
	}
	var (
		ctx    context.Context
		cancel context.CancelFunc
	)
	if handler != nil {
		// An ECS task lasts as long as the execution waits for it: the
		// runner's request ends when the execution is aborted.
		ctx, cancel = context.WithTimeout(r.Context(), ecsTaskLimit)
	} else {
		handler = h.taskHandler(req.State, req.Resource)
		// Like a Lambda invocation, a service call outlives an abort.
		ctx, cancel = context.WithTimeout(context.Background(), taskCallTimeout)
	}
	defer cancel()
	h.invocations.Add(1)
	out, err := handler(ctx, req.Input)
	h.invocations.Done()

	call := TaskCall{State: req.State, Resource: req.Resource, Input: req.Input}
	var answer taskAnswer
	if err != nil {
		var te *TaskError
		if !errors.As(err, &te) {
			te = &TaskError{Name: "States.TaskFailed", Cause: err.Error()}
		}
		answer.Error, answer.Cause = te.Name, te.Cause
		call.Error = te.Name
	} else {
		if out == nil {
			out = json.RawMessage("{}")
		}
		answer.Output, call.Output = out, out
	}
	h.mu.Lock()
	h.tasks = append(h.tasks, call)
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

func (h *Harness) taskHandler(state, resource string) TaskHandler {
	if th, ok := h.cfg.Tasks[resource]; ok {
		return th
	}
	switch resource {
	case ResourceEventsPutEvents:
		return func(_ context.Context, input json.RawMessage) (json.RawMessage, error) {
			return h.putEvents(state, input)
		}
	case ResourceDynamoDBGetItem, ResourceDynamoDBPutItem, ResourceDynamoDBUpdateItem, ResourceDynamoDBDeleteItem:
		if h.cfg.DynamoDB == nil {
			h.t.Errorf("sfntest: state %s calls %s but the harness has no DynamoDB (Config.DynamoDB)", state, resource)
			return failTask("sfntest.NoDynamoDB", "no DynamoDB configured")
		}
		return func(ctx context.Context, input json.RawMessage) (json.RawMessage, error) {
			out, err := dynamoCall(ctx, h.cfg.DynamoDB, resource, input)
			var unsupported *unsupportedError
			if errors.As(err, &unsupported) {
				h.t.Errorf("sfntest: state %s: %v", state, err)
			}
			return out, err
		}
	}
	h.t.Errorf("sfntest: state %s calls %s, which the harness does not run (add Config.Tasks[%q])", state, resource, resource)
	return failTask("sfntest.NoHandler", "no local handler for "+resource)
}

func failTask(name, cause string) TaskHandler {
	return func(context.Context, json.RawMessage) (json.RawMessage, error) {
		return nil, &TaskError{Name: name, Cause: cause}
	}
}

// putEvents checks and records the entries of an events:putEvents task, as
// EventBridge would accept them.
func (h *Harness) putEvents(state string, input json.RawMessage) (json.RawMessage, error) {
	var in struct {
		Entries []struct {
			EventBusName string
			Source       string
			DetailType   string
			Detail       json.RawMessage
			Resources    []string
			Time         string
			TraceHeader  string
		}
	}
	dec := json.NewDecoder(bytesReader(input))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, &TaskError{Name: "EventBridge.ValidationException", Cause: err.Error()}
	}
	if n := len(in.Entries); n < 1 || n > 10 {
		return nil, &TaskError{Name: "EventBridge.ValidationException", Cause: fmt.Sprintf("%d entries: PutEvents takes 1 to 10", n)}
	}
	var sent []SentEvent
	type resultEntry struct {
		EventID string `json:"EventId"`
	}
	var results []resultEntry
	for i, e := range in.Entries {
		detail := e.Detail
		// Step Functions serializes an object Detail; a string must hold JSON.
		var s string
		if json.Unmarshal(detail, &s) == nil {
			detail = json.RawMessage(s)
		}
		var obj map[string]any
		if e.Source == "" || e.DetailType == "" || json.Unmarshal(detail, &obj) != nil {
			return nil, &TaskError{Name: "EventBridge.ValidationException", Cause: fmt.Sprintf("entry %d: Source, DetailType and a JSON object Detail are required", i)}
		}
		bus := e.EventBusName
		if bus == "" {
			bus = "default"
		}
		sent = append(sent, SentEvent{State: state, EventBusName: bus, Source: e.Source, DetailType: e.DetailType, Detail: detail, Resources: e.Resources})
		results = append(results, resultEntry{EventID: newID()})
	}
	h.mu.Lock()
	h.events = append(h.events, sent...)
	h.mu.Unlock()
	return json.Marshal(map[string]any{"Entries": results, "FailedEntryCount": 0})
}

// serviceError names an AWS SDK error as Step Functions does for an
// optimized integration: "<Service>.<ErrorCode>".
func serviceError(service string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return &TaskError{Name: service + "." + ae.ErrorCode(), Cause: ae.ErrorMessage()}
	}
	return &TaskError{Name: "States.TaskFailed", Cause: err.Error()}
}
