package lambdafn_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
	"github.com/kvmigrate/kvmigrate/internal/phase"
	"github.com/kvmigrate/kvmigrate/internal/validation"
)

// A job whose options carry a copy filter is validated on the keys the
// filter selects, by the validate function and by a revalidation: the
// filter comes from the job record.
func TestValidateHonoursTheJobsFilter(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	sc, dc := src.Client(t), dst.Client(t)
	var cmds valkey.Commands
	for i := range 50 {
		n := strconv.Itoa(i)
		cmds = append(cmds,
			sc.B().Hset().Key("user:"+n).FieldValue().FieldValue("name", "u"+n).Build(),
			sc.B().Set().Key("cache:"+n).Value("c"+n).Build())
	}
	for _, r := range sc.DoMulti(ctx, cmds...) {
		require.NoError(t, r.Error())
	}
	d, id := copied(t, src, dst, phase.Options{Match: "user:*"})
	store := d.Store
	size, err := dc.Do(ctx, dc.B().Dbsize().Build()).AsInt64()
	require.NoError(t, err)
	require.EqualValues(t, 50, size, "the copy took the user:* keys only")

	report := func() validation.Report { return storedValidation(t, store, id) }

	out, err := lambdafn.Validate(d)(ctx, phase.ValidateInput{JobID: id})
	require.NoError(t, err)
	assert.Equal(t, phase.ValidateOutput{JobID: id, Passed: true}, out)
	rep := report()
	assert.Equal(t, &validation.Filter{Match: "user:*"}, rep.Filter)
	require.Len(t, rep.KeyCounts, 1)
	assert.Equal(t, []int64{50, 50}, []int64{rep.KeyCounts[0].Source, rep.KeyCounts[0].Target})

	_, err = store.Transition(ctx, id, job.StatusSucceeded, nil)
	require.NoError(t, err)
	require.NoError(t, dc.Do(ctx, dc.B().Set().Key("cache:7").Value("stale").Build()).Error())
	out, err = lambdafn.Revalidate(d)(ctx, id)
	require.NoError(t, err)
	assert.True(t, out.Passed, "a key the filter does not select is not the job's")

	require.NoError(t, dc.Do(ctx, dc.B().Hset().Key("user:7").FieldValue().FieldValue("name", "U7").Build()).Error())
	out, err = lambdafn.Revalidate(d)(ctx, id)
	require.NoError(t, err)
	assert.False(t, out.Passed)
	assert.Equal(t, 1, out.Issues)
	rep = report()
	require.Len(t, rep.Issues, 1)
	assert.Equal(t, validation.IssueValue, rep.Issues[0].Kind)
	assert.Equal(t, "user:7", rep.Issues[0].Key)
}
