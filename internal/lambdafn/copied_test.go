package lambdafn_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
	"github.com/kvmigrate/kvmigrate/internal/phase"
	"github.com/kvmigrate/kvmigrate/internal/validation"
)

// copied runs a command-mode job from src to dst through the handlers as
// the state machine does (analyze, plan, every chunk of every shard) and
// returns its deps and id, ready to validate.
func copied(t *testing.T, src, dst *kvtest.Server, opts phase.Options) (lambdafn.Deps, string) {
	t.Helper()
	ctx := context.Background()
	d := lambdafn.Deps{Store: job.NewMemory(), Secrets: lambdafn.StaticSecrets{}}
	id := job.NewID()
	opts.Mode = phase.ModeCommand
	_, err := lambdafn.Analyze(d)(ctx, phase.AnalyzeInput{
		JobID:   id,
		Source:  phase.Endpoint{URL: "redis://" + src.Addr()},
		Target:  phase.Endpoint{URL: "valkey://" + dst.Addr()},
		Options: opts,
	})
	require.NoError(t, err)
	plan, err := lambdafn.Plan(d)(ctx, phase.PlanInput{JobID: id, Action: phase.ActionPlan})
	require.NoError(t, err)
	for _, in := range plan.Shards {
		for done := false; !done; {
			out, err := lambdafn.Chunk(d)(ctx, in)
			require.NoError(t, err)
			in, done = out.ChunkInput, out.Done
		}
	}
	return d, id
}

// storedValidation reads the validation report stored with job id.
func storedValidation(t *testing.T, store job.Store, id string) validation.Report {
	t.Helper()
	body, err := store.Report(context.Background(), id, job.ReportValidation)
	require.NoError(t, err)
	var rep validation.Report
	require.NoError(t, json.Unmarshal(body, &rep))
	return rep
}
