package dynamo_test

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/job/dynamo"
	"github.com/kvmigrate/kvmigrate/internal/phase"
)

// failingClient answers every call with err, as the SDK returns it once
// its own retries are spent.
type failingClient struct {
	dynamo.Client // nil: only the methods below are called
	err           error
}

func (c *failingClient) GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return nil, c.err
}

func (c *failingClient) UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	return nil, c.err
}

func (c *failingClient) TransactWriteItems(context.Context, *dynamodb.TransactWriteItemsInput, ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	return nil, c.err
}

func TestStoreClassifiesDynamoDBErrors(t *testing.T) {
	netErr := &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}
	tests := []struct {
		name      string
		err       error
		transient bool
	}{
		{"provisioned throughput exceeded is transient", &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")}, true},
		{"throttling is transient", &types.ThrottlingException{Message: aws.String("rate exceeded")}, true},
		{"the account's request limit is transient", &types.RequestLimitExceeded{Message: aws.String("too many")}, true},
		{"an internal server error is transient", &types.InternalServerError{Message: aws.String("oops")}, true},
		{"a network failure is transient", netErr, true},
		{"throttling after the SDK gave up retrying is transient",
			&retry.MaxAttemptsError{Attempt: 3, Err: &types.ThrottlingException{Message: aws.String("rate exceeded")}}, true},
		{"a transaction cancelled by throttling is transient", &types.TransactionCanceledException{
			CancellationReasons: []types.CancellationReason{{Code: aws.String("None")}, {Code: aws.String("ThrottlingError")}},
		}, true},
		{"a refused request is not transient", &types.ItemCollectionSizeLimitExceededException{Message: aws.String("too big")}, false},
		{"a transaction cancelled by a validation error is not transient", &types.TransactionCanceledException{
			CancellationReasons: []types.CancellationReason{{Code: aws.String("ValidationError")}},
		}, false},
	}
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := dynamo.New(&failingClient{err: tc.err}, "jobs")
			require.NoError(t, err)
			calls := map[string]error{}
			_, calls["Get"] = s.Get(ctx, "job-1")
			_, calls["Transition"] = s.Transition(ctx, "job-1", job.StatusFailed, nil)
			calls["AddCounters"] = s.AddCounters(ctx, "job-1", job.Counters{Copied: 1})
			calls["Acquire"] = s.Acquire(ctx, "job-1", job.KindMigration, 10)
			for name, err := range calls {
				require.Error(t, err, name)
				assert.ErrorIs(t, err, tc.err, "%s keeps the SDK error", name)
				if tc.transient {
					assert.ErrorIs(t, err, job.ErrTransient, name)
					assert.IsType(t, &phase.TransientError{}, phase.Classify(err), name)
				} else {
					assert.NotErrorIs(t, err, job.ErrTransient, name)
					assert.IsType(t, &phase.InternalError{}, phase.Classify(err), name)
				}
			}
		})
	}
}
