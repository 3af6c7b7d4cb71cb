package dynamo_test

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/awstest"
	"github.com/kvmigrate/kvmigrate/internal/job"
)

// loseFirstAnswer lets the first request of one DynamoDB operation reach
// the server, then drops the answer as a reset connection would: the SDK
// retries a write that did happen.
type loseFirstAnswer struct {
	op   string // e.g. "PutItem"
	lost atomic.Bool
}

func (l *loseFirstAnswer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && req.Header.Get("X-Amz-Target") == "DynamoDB_20120810."+l.op && l.lost.CompareAndSwap(false, true) {
		resp.Body.Close()
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	}
	return resp, err
}

// A create whose answer was lost is retried by the SDK and finds its own
// item: the create happened, it is not a conflict. A different job with
// that id still is.
func TestACreateRetriedAfterItsAnswerWasLostSucceeds(t *testing.T) {
	ctx := context.Background()
	endpoint := awstest.StartMoto(t)
	lose := &loseFirstAnswer{op: "PutItem"}
	cfg := awstest.Config(endpoint)
	cfg.HTTPClient = &http.Client{Transport: lose}
	s := newStore(t, dynamodb.NewFromConfig(cfg))

	j := job.Job{ID: job.NewID(), Kind: job.KindMigration, Mode: job.ModeCommand, Source: "redis://a:1", Target: "redis://b:2"}
	require.NoError(t, s.Create(ctx, j))
	require.True(t, lose.lost.Load(), "the first answer was dropped and the SDK retried")
	got, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	assert.Equal(t, j.Source, got.Source)

	other := j
	other.Kind, other.Mode = job.KindAnalysis, ""
	assert.ErrorIs(t, s.Create(ctx, other), job.ErrConflict)
}

// A status change whose answer was lost is retried by the SDK, fails its
// condition (the status already moved), and finds its own write token:
// the transition happened, it is not a conflict.
func TestATransitionRetriedAfterItsAnswerWasLostSucceeds(t *testing.T) {
	ctx := context.Background()
	endpoint := awstest.StartMoto(t)
	lose := &loseFirstAnswer{op: "UpdateItem"}
	cfg := awstest.Config(endpoint)
	cfg.HTTPClient = &http.Client{Transport: lose}
	s := newStore(t, dynamodb.NewFromConfig(cfg))

	j := job.Job{ID: job.NewID(), Kind: job.KindMigration, Mode: job.ModeCommand, Source: "redis://a:1", Target: "redis://b:2"}
	require.NoError(t, s.Create(ctx, j))
	got, err := s.Transition(ctx, j.ID, job.StatusAnalyzing, func(j *job.Job) { j.Stage = "sampling" })
	require.NoError(t, err)
	require.True(t, lose.lost.Load(), "the first answer was dropped and the SDK retried")
	assert.Equal(t, job.StatusAnalyzing, got.Status)
	assert.Equal(t, "sampling", got.Stage)
	stored, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	assert.Equal(t, job.StatusAnalyzing, stored.Status)

	// A real conflict is still one: the status moved under another writer.
	_, err = s.Transition(ctx, j.ID, job.StatusAnalyzing, nil)
	assert.ErrorIs(t, err, job.ErrConflict)
}
