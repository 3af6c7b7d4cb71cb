package sfntest

import (
	"context"
	"encoding/json"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/kvmigrate/kvmigrate/internal/phase"
)

// Executions starts and stops executions in the harness the way the API's
// production implementation does in Step Functions (the api.Executions
// interface): the execution is named after the job id.
type Executions struct{ h *Harness }

// Executions returns the harness's api.Executions.
func (h *Harness) Executions() *Executions { return &Executions{h: h} }

// Start starts an execution named jobID with input and returns its ARN.
func (x *Executions) Start(ctx context.Context, jobID string, input phase.Execution) (string, error) {
	e, err := x.h.Start(ctx, jobID, input)
	if err != nil {
		return "", err
	}
	return e.ARN, nil
}

// Stop aborts the execution (StopExecution); cause is kept on it.
func (x *Executions) Stop(ctx context.Context, executionARN, cause string) error {
	e, err := x.h.Execution(executionARN)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.stopCause = cause
	e.mu.Unlock()
	return e.Stop()
}

// StatusChangeDetail is the detail of the EventBridge event Step Functions
// sends when an execution changes status (detail type "Step Functions
// Execution Status Change", source aws.states). The harness sends one when
// an execution ends (SUCCEEDED, FAILED, TIMED_OUT, ABORTED: the statuses
// template.yaml's rule delivers to the api function).
type StatusChangeDetail struct {
	ExecutionARN    string  `json:"executionArn"`
	StateMachineARN string  `json:"stateMachineArn"`
	Name            string  `json:"name"`
	Status          Status  `json:"status"`
	StartDate       int64   `json:"startDate"`
	StopDate        int64   `json:"stopDate"`
	Input           string  `json:"input"`
	Output          *string `json:"output"`
	Error           *string `json:"error"`
	Cause           *string `json:"cause"`
}

// DetailTypeStatusChange is the detail type of a status-change event.
const DetailTypeStatusChange = "Step Functions Execution Status Change"

// statusChange builds the event for an ended execution.
func (e *Execution) statusChange(input json.RawMessage, started, stopped time.Time) events.CloudWatchEvent {
	r := e.Result()
	d := StatusChangeDetail{
		ExecutionARN: e.ARN, StateMachineARN: StateMachineARN(), Name: e.Name, Status: r.Status,
		StartDate: started.UnixMilli(), StopDate: stopped.UnixMilli(), Input: string(input),
	}
	switch r.Status {
	case StatusSucceeded:
		out := string(r.Output)
		d.Output = &out
	case StatusFailed, StatusTimedOut:
		d.Error, d.Cause = &r.Error, &r.Cause
	case StatusAborted:
		e.mu.Lock()
		if e.stopCause != "" {
			cause := e.stopCause
			d.Cause = &cause
		}
		e.mu.Unlock()
	}
	detail, _ := json.Marshal(d)
	return events.CloudWatchEvent{
		Version: "0", ID: newID(), DetailType: DetailTypeStatusChange, Source: "aws.states",
		AccountID: Account, Time: stopped.UTC().Truncate(time.Second), Region: Region, Resources: []string{e.ARN}, Detail: detail,
	}
}

// StatusChanges returns the status-change events of the executions that
// have ended, in order.
func (h *Harness) StatusChanges() []events.CloudWatchEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]events.CloudWatchEvent(nil), h.changes...)
}

// deliver records an ended execution's status change and hands it to
// Config.OnStatusChange.
func (h *Harness) deliver(c events.CloudWatchEvent) {
	h.mu.Lock()
	h.changes = append(h.changes, c)
	h.mu.Unlock()
	if h.cfg.OnStatusChange == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), taskCallTimeout)
	defer cancel()
	if err := h.cfg.OnStatusChange(ctx, c); err != nil {
		h.t.Errorf("sfntest: the status-change handler failed for %s: %v", c.Resources[0], err)
	}
}
