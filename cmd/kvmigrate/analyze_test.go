package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/sample"
	"github.com/kvmigrate/kvmigrate/internal/validation"
)

func TestAnalyzeExitCodeFollowsBlockingFindings(t *testing.T) {
	ctx := context.Background()
	valkey := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	redis := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	_, err := sample.Seed(ctx, valkey.Client(t), sample.Options{PerType: 5})
	require.NoError(t, err)
	_, err = sample.Seed(ctx, redis.Client(t), sample.Options{PerType: 1, Prefix: "r:"})
	require.NoError(t, err)
	c := newCLI(t)

	t.Run("Valkey to Redis is blocking: exit 3, the report as JSON", func(t *testing.T) {
		out, errOut, code := c.run("analyze", "--source", valkey.URL(), "--target", redis.URL(), "--json")
		require.Equal(t, exitBlocked, code, errOut)
		var r analysis.Report
		require.NoError(t, json.Unmarshal([]byte(out), &r), out)
		assert.True(t, r.Blocking)
		require.NotEmpty(t, r.Findings)
		assert.Equal(t, analysis.CategoryTypeDirection, r.Findings[0].Category)
		assert.EqualValues(t, 70, r.EstimatedKeys)
		assert.Contains(t, errOut, "blocking findings")
	})

	t.Run("Redis to Valkey is not: exit 0, a readable report", func(t *testing.T) {
		out, errOut, code := c.run("analyze", "--source", redis.URL(), "--target", valkey.URL())
		require.Equal(t, exitOK, code, errOut)
		for _, s := range []string{"Findings", "target_not_empty", "Sample:", "Memory:", "TTLs", "Shards", "DUMP/RESTORE fast path"} {
			assert.Contains(t, out, s)
		}
	})

	t.Run("the analysis jobs are listed", func(t *testing.T) {
		out, _, code := c.run("jobs", "--json")
		require.Equal(t, exitOK, code)
		var jobs []job.Job
		require.NoError(t, json.Unmarshal([]byte(out), &jobs))
		require.Len(t, jobs, 2)
		for _, j := range jobs {
			assert.Equal(t, job.KindAnalysis, j.Kind)
			assert.Equal(t, job.StatusAnalyzed, j.Status)
		}
	})

	t.Run("a sample size out of range is bad input", func(t *testing.T) {
		_, errOut, code := c.run("analyze", "--source", redis.URL(), "--target", valkey.URL(), "--sample", "10")
		assert.Equal(t, exitUsage, code)
		assert.Contains(t, errOut, "--sample")
	})
}

type runResult struct {
	result
	Analysis   *analysis.Report   `json:"analysis"`
	Validation *validation.Report `json:"validation"`
}

func TestRunRefusesBlockedMigrationsUnlessForced(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	n, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 10})
	require.NoError(t, err)
	c := newCLI(t)

	out, errOut, code := c.run("run", "--source", src.URL(), "--target", dst.URL())
	require.Equal(t, exitBlocked, code, "%s\n%s", out, errOut)
	assert.Contains(t, out, "type_direction")
	assert.Contains(t, out, "refused")
	assert.Contains(t, errOut, "--force")
	keys, err := dst.Client(t).Do(ctx, dst.Client(t).B().Dbsize().Build()).AsInt64()
	require.NoError(t, err)
	assert.Zero(t, keys, "nothing was written")

	out, _, code = c.run("jobs", "--json")
	require.Equal(t, exitOK, code)
	var jobs []job.Job
	require.NoError(t, json.Unmarshal([]byte(out), &jobs))
	require.Len(t, jobs, 1)
	assert.Equal(t, job.StatusBlocked, jobs[0].Status)
	assert.Equal(t, job.KindMigration, jobs[0].Kind)

	started := time.Now()
	before := kvtest.Snapshot(ctx, t, src.Client(t))
	out, errOut, code = c.run("run", "--source", src.URL(), "--target", dst.URL(), "--force", "--json")
	require.Equal(t, exitOK, code, "%s\n%s", out, errOut)
	var r runResult
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	assert.Equal(t, job.StatusSucceeded, r.Job.Status)
	assert.EqualValues(t, n, r.Job.Counters.Copied)
	require.NotNil(t, r.Analysis)
	assert.True(t, r.Analysis.Blocking)
	assert.Equal(t, r.Job.ID, r.Analysis.JobID)
	require.NotNil(t, r.Validation, "run validates after the copy")
	assert.True(t, r.Validation.Passed)
	assert.Zero(t, r.Validation.KeyCountDiscrepancyPct)
	assert.EqualValues(t, n, r.Validation.Sample.Sampled, "a dataset smaller than the sample is compared whole")
	assert.Equal(t, "validated", r.Job.Stage)
	kvtest.AssertSameData(t, before, kvtest.Snapshot(ctx, t, dst.Client(t)), time.Since(started))

	// Text output shows the validation; --no-validate says it was skipped.
	out, errOut, code = c.run("run", "--source", src.URL(), "--target", dst.URL(), "--force")
	require.Equal(t, exitOK, code, "%s\n%s", out, errOut)
	assert.Contains(t, out, "overridden by --force")
	assert.Contains(t, out, "validation PASSED")
	out, errOut, code = c.run("run", "--source", src.URL(), "--target", dst.URL(), "--force", "--no-validate")
	require.Equal(t, exitOK, code, "%s\n%s", out, errOut)
	assert.Contains(t, out, "validation was not run")
}

func TestRunFailsWhenTheValidationFindsADifference(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	_, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 10})
	require.NoError(t, err)
	// A key the source does not have, in a database the source does not
	// use: the copy leaves it alone and the validation must notice it.
	require.NoError(t, dst.ClientDB(t, 4).Do(ctx, dst.ClientDB(t, 4).B().Set().Key("stray").Value("x").Build()).Error())
	c := newCLI(t)
	out, errOut, code := c.run("run", "--source", src.URL(), "--target", dst.URL(), "--json")
	require.Equal(t, exitFailed, code, "%s\n%s", out, errOut)
	var r runResult
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	assert.Equal(t, job.StatusFailed, r.Job.Status)
	assert.Contains(t, r.Job.Error, "validation failed")
	require.NotNil(t, r.Validation)
	assert.False(t, r.Validation.Passed)
	var found bool
	for _, is := range r.Validation.Issues {
		found = found || is.Key == "stray"
	}
	assert.True(t, found, "the stray key is named: %+v", r.Validation.Issues)

	// Both reports are kept with the job and shown by kvmigrate jobs JOB.
	out, errOut, code = c.run("jobs", r.Job.ID, "--json")
	require.Equal(t, exitOK, code, errOut)
	var shown struct {
		Job        job.Job            `json:"job"`
		Analysis   *analysis.Report   `json:"analysis"`
		Validation *validation.Report `json:"validation"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &shown), out)
	require.NotNil(t, shown.Analysis)
	assert.Equal(t, r.Job.ID, shown.Analysis.JobID)
	require.NotNil(t, shown.Validation)
	assert.False(t, shown.Validation.Passed)
	out, _, code = c.run("jobs", r.Job.ID)
	require.Equal(t, exitOK, code)
	assert.Contains(t, out, "validation passed=false")
}
