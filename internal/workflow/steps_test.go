package workflow

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/sample"
)

// The validation step's place in a job, which internal/validation will
// fill (Run's validate): after a clean copy the job goes running →
// validating → succeeded, or failed when validation fails.
func TestTheValidationStepEndsTheJob(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	n, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 3})
	require.NoError(t, err)
	se, err := endpoint.Parse(src.URL())
	require.NoError(t, err)
	de, err := endpoint.Parse(dst.URL())
	require.NoError(t, err)
	req := Request{Source: se, Target: de}

	for _, tc := range []struct {
		name   string
		fail   error
		status job.Status
	}{
		{"a passing validation succeeds the job", nil, job.StatusSucceeded},
		{"a failing validation fails the job", errors.New("12 keys differ"), job.StatusFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := job.NewMemory()
			l := &Local{Store: store}
			var during job.Status
			var keys int64
			out, err := l.migrate(ctx, req, steps{validate: func(ctx context.Context, id string, s *session) error {
				j, err := store.Get(ctx, id)
				require.NoError(t, err)
				during = j.Status
				c, err := s.dst.Client(0)
				require.NoError(t, err)
				keys, err = c.Do(ctx, c.B().Dbsize().Build()).AsInt64()
				require.NoError(t, err)
				return tc.fail
			}})
			assert.Equal(t, job.StatusValidating, during)
			assert.EqualValues(t, n, keys, "validation runs after the copy")
			assert.Equal(t, tc.status, out.Job.Status)
			if tc.fail != nil {
				require.ErrorIs(t, err, tc.fail)
				assert.Contains(t, out.Job.Error, "validation: 12 keys differ")
			} else {
				require.NoError(t, err)
				assert.Equal(t, "validated", out.Job.Stage)
			}
		})
	}
}
