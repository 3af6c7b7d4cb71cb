package lambdafn_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
	"github.com/kvmigrate/kvmigrate/internal/phase"
	"github.com/kvmigrate/kvmigrate/internal/validation"
)

// The validate function and a revalidation (the API's) compare the
// largest keys of the job's stored analysis report besides their random
// sample: with 20,000 small strings and four big keys, the sample of 500
// alone draws a given big key about once in 40 runs.
func TestValidateComparesTheLargestKeysOfTheAnalysis(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	sc, dc := src.Client(t), dst.Client(t)
	kvtest.SeedSmallAndBig(t, sc)

	d, id := copied(t, src, dst, phase.Options{SampleSize: phase.MaxSampleSize})
	store := d.Store
	report := func() validation.Report { return storedValidation(t, store, id) }

	out, err := lambdafn.Validate(d)(ctx, phase.ValidateInput{JobID: id})
	require.NoError(t, err)
	assert.True(t, out.Passed)
	rep := report()
	assert.Equal(t, len(kvtest.BigKeys), rep.Sample.Digest, "every big key by digest")
	assert.Positive(t, rep.Sample.Always)
	assert.Empty(t, rep.CountOnly)

	_, err = store.Transition(ctx, id, job.StatusSucceeded, nil)
	require.NoError(t, err)
	require.NoError(t, dc.Do(ctx, dc.B().Hset().Key("big:hash").FieldValue().FieldValue("field:38117", "changed").Build()).Error())
	out, err = lambdafn.Revalidate(d)(ctx, id)
	require.NoError(t, err)
	assert.False(t, out.Passed)
	rep = report()
	require.Len(t, rep.Issues, 1)
	assert.Equal(t, validation.IssueDigest, rep.Issues[0].Kind)
	assert.Equal(t, "big:hash", rep.Issues[0].Key)
}
