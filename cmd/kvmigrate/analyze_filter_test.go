package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
)

// do runs one command and fails the test on an error reply.
func do(t *testing.T, c valkey.Client, cmd ...string) valkey.ValkeyResult {
	t.Helper()
	r := c.Do(context.Background(), c.B().Arbitrary(cmd[0]).Args(cmd[1:]...).Build())
	require.NoError(t, r.Error(), "%v", cmd)
	return r
}

func dbsize(t *testing.T, c valkey.Client) int64 {
	t.Helper()
	n, err := do(t, c, "DBSIZE").AsInt64()
	require.NoError(t, err)
	return n
}

// A target with room for the user:* hashes but not for the whole source:
// analyze and run with --match/--type gate on what the copy selects, and
// a refusal by the gate exits 3.
func TestFiltersShapeTheGateAndBlockedExitsThree(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	sc, dc := src.Client(t), dst.Client(t)
	var cmds valkey.Commands
	for i := range 200 {
		fv := sc.B().Hset().Key("user:" + strconv.Itoa(i)).FieldValue()
		for f := range 20 {
			fv = fv.FieldValue("f"+strconv.Itoa(f), strings.Repeat("v", 30))
		}
		cmds = append(cmds, fv.Build())
	}
	big := strings.Repeat("x", 2048)
	for i := range 5000 {
		cmds = append(cmds, sc.B().Set().Key("blob:"+strconv.Itoa(i)).Value(big).Build())
	}
	for _, r := range sc.DoMulti(ctx, cmds...) {
		require.NoError(t, r.Error())
	}
	// About 10 MiB of blobs; 4 MiB of room on the target.
	used, err := dc.Do(ctx, dc.B().Info().Section("memory").Build()).ToString()
	require.NoError(t, err)
	var usedBytes int64
	for line := range strings.SplitSeq(used, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			usedBytes, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	require.Positive(t, usedBytes)
	do(t, dc, "CONFIG", "SET", "maxmemory-policy", "noeviction")
	do(t, dc, "CONFIG", "SET", "maxmemory", strconv.FormatInt(usedBytes+4<<20, 10))
	c := newCLI(t)

	t.Run("analyze without a filter: memory_fit is blocking, exit 3", func(t *testing.T) {
		out, errOut, code := c.run("analyze", "--source", src.URL(), "--target", dst.URL(), "--json")
		require.Equal(t, exitBlocked, code, errOut)
		var r analysis.Report
		require.NoError(t, json.Unmarshal([]byte(out), &r), out)
		assert.Nil(t, r.Filter)
		require.NotEmpty(t, r.Find(analysis.CategoryMemoryFit))
		assert.Equal(t, analysis.Blocking, r.Find(analysis.CategoryMemoryFit)[0].Severity)
		assert.Contains(t, errOut, "blocking findings")
	})

	t.Run("analyze --match --type: only the hashes, which fit: exit 0", func(t *testing.T) {
		out, errOut, code := c.run("analyze", "--source", src.URL(), "--target", dst.URL(), "--match", "user:*", "--type", "hash", "--json")
		require.Equal(t, exitOK, code, errOut)
		var r analysis.Report
		require.NoError(t, json.Unmarshal([]byte(out), &r), out)
		require.NotNil(t, r.Filter)
		assert.Equal(t, "user:*", r.Filter.Match)
		assert.Equal(t, "hash", r.Filter.Type)
		assert.EqualValues(t, 5200, r.Filter.Keys)
		assert.EqualValues(t, 200, r.EstimatedKeys)
		assert.Equal(t, []analysis.TypeCount{{Type: "hash", Sampled: 200, Estimated: 200}}, r.Types)
		assert.Empty(t, r.Find(analysis.CategoryMemoryFit))

		out, errOut, code = c.run("analyze", "--source", src.URL(), "--target", dst.URL(), "--match", "user:*", "--type", "hash")
		require.Equal(t, exitOK, code, errOut)
		assert.Contains(t, out, `Filter: --match "user:*" --type hash selects 200 of 5,200 keys`)
	})

	t.Run("a bad --type is bad input: exit 2", func(t *testing.T) {
		_, errOut, code := c.run("analyze", "--source", src.URL(), "--target", dst.URL(), "--type", "document")
		assert.Equal(t, exitUsage, code)
		assert.Contains(t, errOut, "--type")
	})

	t.Run("run without a filter is refused by the gate: exit 3, nothing written", func(t *testing.T) {
		out, errOut, code := c.run("run", "--source", src.URL(), "--target", dst.URL(), "--json")
		require.Equal(t, exitBlocked, code, "%s\n%s", out, errOut)
		var r runResult
		require.NoError(t, json.Unmarshal([]byte(out), &r), out)
		assert.Equal(t, job.StatusBlocked, r.Job.Status)
		assert.Zero(t, dbsize(t, dc))

		out, errOut, code = c.run("run", "--source", src.URL(), "--target", dst.URL())
		require.Equal(t, exitBlocked, code, "%s\n%s", out, errOut)
		assert.Contains(t, out, "memory_fit")
		assert.Zero(t, dbsize(t, dc))
	})

	t.Run("run --match --type analyzes what it copies, passes the gate and copies the hashes", func(t *testing.T) {
		out, errOut, code := c.run("run", "--source", src.URL(), "--target", dst.URL(), "--match", "user:*", "--type", "hash", "--no-validate", "--json")
		require.Equal(t, exitOK, code, "%s\n%s", out, errOut)
		var r runResult
		require.NoError(t, json.Unmarshal([]byte(out), &r), out)
		assert.Equal(t, job.StatusSucceeded, r.Job.Status)
		require.NotNil(t, r.Analysis)
		require.NotNil(t, r.Analysis.Filter, "run passes its copy filters to the analysis")
		assert.Equal(t, "user:*", r.Analysis.Filter.Match)
		assert.Equal(t, "hash", r.Analysis.Filter.Type)
		assert.EqualValues(t, 200, r.Analysis.EstimatedKeys)
		assert.False(t, r.Analysis.Blocking)
		assert.EqualValues(t, 200, r.Job.Counters.Copied)
		assert.EqualValues(t, 200, dbsize(t, dc))
	})
}

// The exit codes are in run's and analyze's --help and in the README.
func TestExitCodesAreDocumented(t *testing.T) {
	c := newCLI(t)
	flat := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	for cmd, want := range map[string]string{
		"analyze": fmt.Sprintf("%d blocking findings", exitBlocked),
		"run":     fmt.Sprintf("%d refused by the analysis", exitBlocked),
	} {
		out, errOut, code := c.run(cmd, "--help")
		require.Equal(t, exitOK, code, errOut)
		assert.Contains(t, flat(out), "Exit codes:", cmd)
		assert.Contains(t, flat(out), want, cmd)
		assert.Contains(t, flat(out), fmt.Sprintf("%d bad input", exitUsage), cmd)
	}
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	assert.Contains(t, flat(string(readme)), fmt.Sprintf("| %d | refused by the analysis gate", exitBlocked))
}
