package workflow_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/validation"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

func TestLargestKeys(t *testing.T) {
	key := func(db int, name string) analysis.KeyInfo { return analysis.KeyInfo{DB: db, Key: name} }
	t.Run("a job without an analysis report names no key", func(t *testing.T) {
		assert.Nil(t, workflow.LargestKeys(nil))
	})
	t.Run("both rankings alternately, each key once, with its database", func(t *testing.T) {
		rep := &analysis.Report{LargestKeys: analysis.LargestKeys{
			ByMemory:   []analysis.KeyInfo{key(0, "blob"), key(0, "h"), key(2, "h")},
			ByElements: []analysis.KeyInfo{key(0, "h"), key(0, "l")},
		}}
		assert.Equal(t, []validation.KeyRef{{Key: "blob"}, {Key: "h"}, {Key: "l"}, {DB: 2, Key: "h"}}, workflow.LargestKeys(rep))
	})
	t.Run("at most MaxLargestKeys, from both rankings", func(t *testing.T) {
		var rep analysis.Report
		for i := range 15 {
			rep.LargestKeys.ByMemory = append(rep.LargestKeys.ByMemory, key(0, "m"+strconv.Itoa(i)))
			rep.LargestKeys.ByElements = append(rep.LargestKeys.ByElements, key(0, "e"+strconv.Itoa(i)))
		}
		got := workflow.LargestKeys(&rep)
		require.Len(t, got, workflow.MaxLargestKeys)
		assert.Equal(t, validation.KeyRef{Key: "e9"}, got[len(got)-1])
	})
}

// kvmigrate run: the validation step compares the largest keys the
// analysis step found, besides its random sample of 500 of 20,004 keys
// (which draws a given big key about once in 40 runs).
func TestRunValidatesTheLargestKeysItsAnalysisFound(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	kvtest.SeedSmallAndBig(t, src.Client(t))
	store := openStore(t)
	l := &workflow.Local{Store: store}
	out, err := l.Run(ctx, workflow.RunRequest{
		Request:  workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL())},
		Analysis: analysis.Options{Sample: analysis.MaxSample}, // every key: the big ones among them
	})
	require.NoError(t, err)
	require.Equal(t, job.StatusSucceeded, out.Job.Status)

	body, err := store.Report(ctx, out.Job.ID, job.ReportValidation)
	require.NoError(t, err)
	var rep validation.Report
	require.NoError(t, json.Unmarshal(body, &rep))
	assert.True(t, rep.Passed)
	assert.Equal(t, 4, rep.Sample.Digest, "the four big keys by digest")
	assert.Empty(t, rep.CountOnly)
	assert.Equal(t, int64(2*(50_000+100_000+20_000+20_000)), rep.Sample.DigestElements, "every element of the big keys, on both sides")
	assert.Positive(t, rep.Sample.Always, "named keys the sample did not draw")
	assert.False(t, rep.Sample.Exhaustive)
}
