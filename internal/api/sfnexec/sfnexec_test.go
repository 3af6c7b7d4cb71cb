package sfnexec_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/api/sfnexec"
	"github.com/kvmigrate/kvmigrate/internal/awstest"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/phase"
)

func TestExecutionsOnStepFunctions(t *testing.T) {
	ctx := context.Background()
	client := sfn.NewFromConfig(awstest.Config(awstest.StartMoto(t)))
	sm, err := client.CreateStateMachine(ctx, &sfn.CreateStateMachineInput{
		Name:       aws.String("kvmigrate-migration"),
		Definition: aws.String(`{"StartAt":"Wait","States":{"Wait":{"Type":"Wait","Seconds":3600,"End":true}}}`),
		RoleArn:    aws.String("arn:aws:iam::123456789012:role/kvmigrate-states"),
	})
	require.NoError(t, err)
	execs, err := sfnexec.New(client, aws.ToString(sm.StateMachineArn))
	require.NoError(t, err)

	id := job.NewID()
	in := phase.Execution{AnalyzeInput: phase.AnalyzeInput{
		JobID:   id,
		Source:  phase.Endpoint{URL: "redis://10.0.0.1:6379"},
		Target:  phase.Endpoint{URL: "valkey://default@10.0.0.2:6379", SecretARN: "arn:aws:secretsmanager:us-east-1:123456789012:secret:kvmigrate/t-AbCdEf"},
		Options: phase.Options{Mode: phase.ModeCommand, ChunkKeys: 5000},
	}}

	arn, err := execs.Start(ctx, id, in)
	require.NoError(t, err)
	got, err := client.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
	require.NoError(t, err)
	assert.Equal(t, id, aws.ToString(got.Name), "the execution is named after the job")
	assert.Equal(t, types.ExecutionStatusRunning, got.Status)
	var input phase.AnalyzeInput
	require.NoError(t, phase.Decode([]byte(aws.ToString(got.Input)), &input), "the input is the analyze step's payload, strictly")
	assert.Equal(t, in.AnalyzeInput, input)

	t.Run("refuses a name in use", func(t *testing.T) {
		other := in
		other.Options.Force = true
		_, err := execs.Start(ctx, id, other)
		assert.ErrorIs(t, err, job.ErrConflict)
	})
	t.Run("refuses an input of another job", func(t *testing.T) {
		_, err := execs.Start(ctx, job.NewID(), in)
		assert.ErrorIs(t, err, job.ErrInvalid)
	})
	t.Run("stops the execution with its cause", func(t *testing.T) {
		require.NoError(t, execs.Stop(ctx, arn, "stopped by request: window closed"))
		got, err := client.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
		require.NoError(t, err)
		assert.Equal(t, types.ExecutionStatusAborted, got.Status)
	})
	t.Run("says when the state machine does not exist", func(t *testing.T) {
		gone, err := sfnexec.New(client, aws.ToString(sm.StateMachineArn)+"-gone")
		require.NoError(t, err)
		next := in
		next.JobID = job.NewID()
		_, err = gone.Start(ctx, next.JobID, next)
		assert.ErrorIs(t, err, job.ErrNotFound)
	})
	t.Run("says a service that does not answer is transient", func(t *testing.T) {
		down := sfn.NewFromConfig(awstest.Config("http://127.0.0.1:1"), func(o *sfn.Options) { o.RetryMaxAttempts = 1 })
		e, err := sfnexec.New(down, aws.ToString(sm.StateMachineArn))
		require.NoError(t, err)
		_, err = e.Start(ctx, id, in)
		assert.IsType(t, &phase.TransientError{}, phase.Classify(err))
	})
}
