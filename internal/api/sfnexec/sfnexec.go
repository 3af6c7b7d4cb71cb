// Package sfnexec starts and stops the migration state machine's
// executions with AWS Step Functions: the production api.Executions.
package sfnexec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"

	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/phase"
)

// Client is what Executions needs of a *sfn.Client.
type Client interface {
	StartExecution(context.Context, *sfn.StartExecutionInput, ...func(*sfn.Options)) (*sfn.StartExecutionOutput, error)
	StopExecution(context.Context, *sfn.StopExecutionInput, ...func(*sfn.Options)) (*sfn.StopExecutionOutput, error)
}

var _ Client = (*sfn.Client)(nil)

// maxCause is Step Functions' bound on StopExecution's cause.
const maxCause = 32768

// StopError is the error name a stopped execution records.
const StopError = "StoppedByRequest"

// Executions runs jobs as executions of one state machine; the execution
// name is the job id.
type Executions struct {
	client          Client
	stateMachineARN string
}

var _ api.Executions = (*Executions)(nil)

// New returns Executions of the state machine stateMachineARN.
func New(client Client, stateMachineARN string) (*Executions, error) {
	if client == nil {
		return nil, errors.New("sfnexec: no Step Functions client")
	}
	if stateMachineARN == "" {
		return nil, errors.New("sfnexec: no state machine ARN")
	}
	return &Executions{client: client, stateMachineARN: stateMachineARN}, nil
}

// Start starts the execution named jobID with input. Starting it again
// with the same input while it runs returns its ARN (Step Functions is
// idempotent there); a name used by another execution is job.ErrConflict.
func (e *Executions) Start(ctx context.Context, jobID string, input phase.Execution) (string, error) {
	if input.JobID != jobID {
		return "", fmt.Errorf("start execution %s: the input is job %s's: %w", jobID, input.JobID, job.ErrInvalid)
	}
	body, err := json.Marshal(input)
	if err != nil {
		return "", fmt.Errorf("start execution %s: encode its input: %w", jobID, err)
	}
	out, err := e.client.StartExecution(ctx, &sfn.StartExecutionInput{
		StateMachineArn: aws.String(e.stateMachineARN),
		Name:            aws.String(jobID),
		Input:           aws.String(string(body)),
	})
	if err != nil {
		return "", classify("start execution "+jobID, err)
	}
	return aws.ToString(out.ExecutionArn), nil
}

// Stop stops an execution.
func (e *Executions) Stop(ctx context.Context, executionARN, cause string) error {
	if len(cause) > maxCause {
		cause = cause[:maxCause]
	}
	_, err := e.client.StopExecution(ctx, &sfn.StopExecutionInput{
		ExecutionArn: aws.String(executionARN),
		Error:        aws.String(StopError),
		Cause:        aws.String(cause),
	})
	if err != nil {
		return classify("stop execution "+executionARN, err)
	}
	return nil
}

// classify wraps the errors the API answers on: a name in use (409), a
// state machine or execution that does not exist (404), throttling and
// service faults (503, worth retrying).
func classify(what string, err error) error {
	var (
		exists      *types.ExecutionAlreadyExists
		noExecution *types.ExecutionDoesNotExist
		noMachine   *types.StateMachineDoesNotExist
		limit       *types.ExecutionLimitExceeded
		invalid     *types.InvalidName
		invalidArn  *types.InvalidArn
		badInput    *types.InvalidExecutionInput
		apiErr      smithy.APIError
	)
	switch {
	case errors.As(err, &exists):
		return fmt.Errorf("%s: an execution of that name exists: %w: %w", what, job.ErrConflict, err)
	case errors.As(err, &noExecution), errors.As(err, &noMachine):
		return fmt.Errorf("%s: %w: %w", what, job.ErrNotFound, err)
	case errors.As(err, &limit):
		return &phase.TransientError{Err: fmt.Errorf("%s: too many executions are open: %w", what, err)}
	case errors.As(err, &invalid), errors.As(err, &invalidArn), errors.As(err, &badInput):
		return fmt.Errorf("%s: %w: %w", what, job.ErrInvalid, err)
	case errors.As(err, &apiErr):
		if apiErr.ErrorCode() == "ThrottlingException" || apiErr.ErrorFault() == smithy.FaultServer {
			return &phase.TransientError{Err: fmt.Errorf("%s: %w", what, err)}
		}
		return fmt.Errorf("%s: %w", what, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", what, err)
	}
	return &phase.TransientError{Err: fmt.Errorf("%s: %w", what, err)}
}
