// Package ecstasks stops the ECS tasks that run redis-shake jobs
// (shake-task on Fargate) with ecs:StopTask: the production api.Tasks.
// ECS sends the task's container a SIGTERM; shake-task then stops
// redis-shake and reports the cutover or the stop.
package ecstasks

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"

	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/phase"
)

// Client is what Tasks needs of an *ecs.Client.
type Client interface {
	StopTask(context.Context, *ecs.StopTaskInput, ...func(*ecs.Options)) (*ecs.StopTaskOutput, error)
}

var _ Client = (*ecs.Client)(nil)

// MaxReason is ECS's bound on StopTask's reason (255 characters); a
// longer reason is cut, on a UTF-8 boundary, to at most this many bytes.
const MaxReason = 255

// clusterName is ECS's rule for a cluster name.
var clusterName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)

// Tasks stops the tasks of one ECS cluster.
type Tasks struct {
	client Client
	// cluster is the configured cluster's name ("" when none).
	cluster string
}

var _ api.Tasks = (*Tasks)(nil)

// New returns Tasks over client. cluster (a name or an ARN) is the
// cluster of the tasks it stops: a task ARN in the current long format
// names its cluster, which must then be this one; an ARN in the old
// format (task/ID) is stopped in this cluster. "" accepts a task of any
// cluster that its ARN names (IAM decides which it may stop).
func New(client Client, cluster string) (*Tasks, error) {
	if client == nil {
		return nil, errors.New("ecstasks: no ECS client")
	}
	name, err := ClusterName(cluster)
	if err != nil {
		return nil, fmt.Errorf("ecstasks: %w", err)
	}
	return &Tasks{client: client, cluster: name}, nil
}

// ClusterName returns the name of cluster, given as a name or an ARN
// ("" for ""); job.ErrInvalid when it is neither.
func ClusterName(cluster string) (string, error) {
	if cluster == "" {
		return "", nil
	}
	name := cluster
	if arn.IsARN(cluster) {
		a, err := arn.Parse(cluster)
		if err != nil || a.Service != "ecs" || !strings.HasPrefix(a.Resource, "cluster/") {
			return "", fmt.Errorf("cluster %q is not an ECS cluster ARN (arn:aws:ecs:REGION:ACCOUNT:cluster/NAME): %w", cluster, job.ErrInvalid)
		}
		name = strings.TrimPrefix(a.Resource, "cluster/")
	}
	if !clusterName.MatchString(name) {
		return "", fmt.Errorf("cluster %q: a cluster name has 1 to 255 letters, digits, hyphens and underscores: %w", cluster, job.ErrInvalid)
	}
	return name, nil
}

// Stop stops the task taskARN with reason (cut to MaxReason). A task
// that is already stopped is stopped again, which ECS accepts: nil. A task
// or cluster that ECS does not know is api.ErrTaskGone; an ARN that is not
// a task's of this cluster is job.ErrInvalid; throttling and ECS's faults
// are phase.TransientError.
func (t *Tasks) Stop(ctx context.Context, taskARN, reason string) error {
	what := "stop task " + taskARN
	cluster, err := t.clusterOf(taskARN)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	_, err = t.client.StopTask(ctx, &ecs.StopTaskInput{
		Cluster: aws.String(cluster),
		Task:    aws.String(taskARN),
		Reason:  aws.String(Truncate(reason, MaxReason)),
	})
	if err != nil {
		return classify(what, err)
	}
	return nil
}

// clusterOf returns the cluster to stop taskARN in.
func (t *Tasks) clusterOf(taskARN string) (string, error) {
	a, err := arn.Parse(taskARN)
	if err != nil {
		return "", fmt.Errorf("not an ARN: %w", job.ErrInvalid)
	}
	rest, ok := strings.CutPrefix(a.Resource, "task/")
	if a.Service != "ecs" || !ok || rest == "" {
		return "", fmt.Errorf("not an ECS task ARN (arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID): %w", job.ErrInvalid)
	}
	cluster, id, long := strings.Cut(rest, "/")
	switch {
	case !long:
		// The old format, task/ID: no cluster in the ARN.
		if t.cluster == "" {
			return "", fmt.Errorf("the ARN names no cluster (old format) and none is configured: %w", job.ErrInvalid)
		}
		return t.cluster, nil
	case id == "" || strings.Contains(id, "/") || !clusterName.MatchString(cluster):
		return "", fmt.Errorf("not an ECS task ARN (arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID): %w", job.ErrInvalid)
	case t.cluster != "" && cluster != t.cluster:
		return "", fmt.Errorf("a task of cluster %s, not of %s: %w", cluster, t.cluster, job.ErrInvalid)
	}
	return cluster, nil
}

// Truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n-- // s[n] continues the rune before it: cut before that rune
	}
	return s[:n]
}

// classify wraps StopTask's errors: a task or cluster that does not exist
// (api.ErrTaskGone: nothing to stop), a request ECS refuses
// (job.ErrInvalid), throttling and faults (phase.TransientError, worth
// another try).
func classify(what string, err error) error {
	var (
		noCluster *types.ClusterNotFoundException
		invalid   *types.InvalidParameterException
		server    *types.ServerException
		apiErr    smithy.APIError
	)
	switch {
	case errors.As(err, &noCluster):
		return fmt.Errorf("%s: its cluster does not exist: %w: %w", what, api.ErrTaskGone, err)
	case errors.As(err, &invalid):
		// ECS answers "The referenced task was not found." for a task it
		// no longer knows (a stopped task is kept about an hour), and the
		// same exception for a malformed request.
		if strings.Contains(strings.ToLower(invalid.ErrorMessage()), "not found") {
			return fmt.Errorf("%s: %w: %w", what, api.ErrTaskGone, err)
		}
		return fmt.Errorf("%s: %w: %w", what, job.ErrInvalid, err)
	case errors.As(err, &server):
		return &phase.TransientError{Err: fmt.Errorf("%s: %w", what, err)}
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
