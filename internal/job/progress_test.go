package job

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestShakeJobJSONMatchesGolden(t *testing.T) {
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	j := Job{
		ID: "01jxa9k2c4e6g8j0m2p4r6t8v1", Kind: KindMigration, Status: StatusRunning, Stage: "replicating",
		Mode:   ModeRedisShakeSync,
		Source: "redis://source.example:6379", Target: "valkey://target.example:6379",
		Options:   Options{OnConflict: "replace", Match: "user:*", MaxOps: 5000},
		CreatedAt: at, UpdatedAt: at.Add(time.Minute), StartedAt: at.Add(time.Second),
		Progress: Progress{Phase: "syncing_aof", Keys: 1050387, OpsPerSec: 20.01, RDBBytesDone: 30 << 20,
			RDBBytesTotal: 30 << 20, AOFDiff: 0, ReadyForCutover: true},
		Request: RequestCutover,
	}
	got, err := json.MarshalIndent(j, "", "  ")
	require.NoError(t, err)
	got = append(got, '\n')
	path := filepath.Join("testdata", "job_shake.json")
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create %s", path)
	assert.Equal(t, string(want), string(got))

	var back Job
	require.NoError(t, json.Unmarshal(want, &back))
	assert.Equal(t, j, back, "the golden file decodes to the same value")

	// A command-mode job has neither field in its JSON.
	plain, err := json.Marshal(Job{ID: "j", Kind: KindMigration, Mode: ModeCommand})
	require.NoError(t, err)
	assert.NotContains(t, string(plain), `"progress"`)
	assert.NotContains(t, string(plain), `"request"`)
}

func TestRequestIsChecked(t *testing.T) {
	now := time.Now()
	for _, r := range []string{"", RequestCutover, RequestStop} {
		_, err := Prepare(Job{ID: "j", Kind: KindMigration, Mode: ModeRedisShakeSync, Request: r}, now)
		assert.NoError(t, err, "request %q", r)
	}
	_, err := Prepare(Job{ID: "j", Kind: KindMigration, Request: "pause"}, now)
	assert.ErrorIs(t, err, ErrInvalid)
}
