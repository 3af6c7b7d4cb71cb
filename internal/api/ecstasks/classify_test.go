package ecstasks

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"

	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/phase"
)

// TestClassify covers the answers of ECS that moto does not give (see
// ecstasks_test.go), as the SDK decodes them: its error types, wrapped as
// the client returns them.
func TestClassify(t *testing.T) {
	op := func(err error) error {
		return &smithy.OperationError{ServiceID: "ECS", OperationName: "StopTask", Err: err}
	}
	type kind int
	const (
		gone kind = iota
		invalid
		transient
		other
	)
	for _, c := range []struct {
		name string
		err  error
		want kind
	}{
		{"a task ECS no longer knows is gone",
			op(&types.InvalidParameterException{Message: aws.String("The referenced task was not found.")}), gone},
		{"a cluster that does not exist is gone",
			op(&types.ClusterNotFoundException{Message: aws.String("Cluster not found.")}), gone},
		{"a malformed task identifier is invalid",
			op(&types.InvalidParameterException{Message: aws.String("Task Identifier is invalid")}), invalid},
		{"an ECS fault is transient",
			op(&types.ServerException{Message: aws.String("Service Unavailable")}), transient},
		{"throttling is transient",
			op(&smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}), transient},
		{"access denied is neither",
			op(&types.AccessDeniedException{Message: aws.String("not authorized to perform: ecs:StopTask")}), other},
		{"a cancelled request is neither",
			fmt.Errorf("stop: %w", context.Canceled), other},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := classify("stop task x", c.err)
			var tr *phase.TransientError
			assert.Equal(t, c.want == gone, errors.Is(err, api.ErrTaskGone), "gone: %v", err)
			assert.Equal(t, c.want == invalid, errors.Is(err, job.ErrInvalid), "invalid: %v", err)
			assert.Equal(t, c.want == transient, errors.As(err, &tr), "transient: %v", err)
			assert.ErrorIs(t, err, c.err, "the SDK's error is kept")
		})
	}
}
