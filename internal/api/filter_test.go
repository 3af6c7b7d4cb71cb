package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/validation"
)

// seedUsers writes 50 user:i hashes and 50 cache:i strings.
func seedUsers(t *testing.T, c valkey.Client) {
	t.Helper()
	var cmds valkey.Commands
	for i := range 50 {
		n := strconv.Itoa(i)
		cmds = append(cmds,
			c.B().Hset().Key("user:"+n).FieldValue().FieldValue("name", "u"+n).Build(),
			c.B().Set().Key("cache:"+n).Value("c"+n).Build())
	}
	for _, r := range c.DoMulti(context.Background(), cmds...) {
		require.NoError(t, r.Error())
	}
}

// A migration with a match filter copies the keys it selects and is
// validated on them, and so is its revalidation.
func TestAFilteredMigrationIsValidatedOnItsKeys(t *testing.T) {
	l := newLocal(t)
	ctx := context.Background()
	seedUsers(t, l.src.Client(t))

	var v api.MigrationView
	l.call(http.MethodPost, "/migrations", l.body(map[string]any{"match": "user:*"}), http.StatusAccepted, &v)
	v = wait(t, l.server, "/migrations/"+v.ID, func(v api.MigrationView) bool { return !v.FinishedAt.IsZero() })
	require.Equal(t, job.StatusSucceeded, v.Status, "error: %s", v.Error)
	assert.EqualValues(t, 50, v.Counters.Copied)
	require.NotNil(t, v.Validation)
	assert.True(t, v.Validation.Passed, "%+v", v.Validation.Issues)
	assert.Equal(t, &validation.Filter{Match: "user:*"}, v.Validation.Filter)

	dst := l.dst.Client(t)
	require.NoError(t, dst.Do(ctx, dst.B().Set().Key("cache:3").Value("not the source's").Build()).Error())
	var again api.MigrationView
	l.call(http.MethodPost, "/migrations/"+v.ID+"/validations", nil, http.StatusOK, &again)
	require.NotNil(t, again.Validation)
	assert.True(t, again.Validation.Passed, "a key the filter does not select is not the migration's: %+v", again.Validation.Issues)
	assert.Equal(t, &validation.Filter{Match: "user:*"}, again.Validation.Filter)

	require.NoError(t, dst.Do(ctx, dst.B().Del().Key("user:3").Build()).Error())
	l.call(http.MethodPost, "/migrations/"+v.ID+"/validations", nil, http.StatusOK, &again)
	require.NotNil(t, again.Validation)
	assert.False(t, again.Validation.Passed)
	var missing []string
	for _, is := range again.Validation.Issues {
		if is.Kind == validation.IssueMissing {
			missing = append(missing, is.Key)
		}
	}
	assert.Equal(t, []string{"user:3"}, missing)
}

// An analysis-only job analyzes what a migration with its filters would copy.
func TestAFilteredAnalysisDescribesTheKeysItSelects(t *testing.T) {
	l := newLocal(t)
	seedUsers(t, l.src.Client(t))

	var a api.AnalysisView
	body := l.body(map[string]any{"match": "user:*", "type": "hash"})
	delete(body, "mode")
	l.call(http.MethodPost, "/analyses", body, http.StatusAccepted, &a)
	a = wait(t, l.server, "/analyses/"+a.ID, func(v api.AnalysisView) bool { return v.Status == job.StatusAnalyzed || v.Status == job.StatusFailed })
	require.Equal(t, job.StatusAnalyzed, a.Status, a.Error)
	var rep struct {
		EstimatedKeys int64 `json:"estimatedKeys"`
		Filter        *struct {
			Match string `json:"match"`
			Type  string `json:"type"`
			Keys  int64  `json:"keys"`
		} `json:"filter"`
	}
	require.NoError(t, json.Unmarshal(a.Report, &rep))
	require.NotNil(t, rep.Filter, "the analysis honours the job's filters")
	assert.Equal(t, "user:*", rep.Filter.Match)
	assert.Equal(t, "hash", rep.Filter.Type)
	assert.EqualValues(t, 100, rep.Filter.Keys)
	assert.EqualValues(t, 50, rep.EstimatedKeys)
}
