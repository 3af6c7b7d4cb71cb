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
	"github.com/kvmigrate/kvmigrate/internal/validation"
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
		out, errOut, code := c.run("run", "--source", src.URL(), "--target", dst.URL(), "--match", "user:*", "--type", "hash", "--json")
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
		require.NotNil(t, r.Validation, "the copy is validated")
		assert.True(t, r.Validation.Passed, "%+v", r.Validation.Issues)
		assert.Equal(t, &validation.Filter{Match: "user:*", Type: "hash"}, r.Validation.Filter, "on the keys the copy selects")
		assert.Empty(t, r.Validation.Issues)
		require.Len(t, r.Validation.KeyCounts, 1)
		assert.EqualValues(t, 200, r.Validation.KeyCounts[0].Source, "the source's keys that the filter selects")
		assert.EqualValues(t, 200, r.Validation.KeyCounts[0].Target)
	})
}

// run --match copies 50 of 100 keys of five types and validates those 50;
// validate takes the same filters.
func TestRunAndValidateWithAMatchFilter(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"))
	sc, dc := src.Client(t), dst.Client(t)
	var cmds valkey.Commands
	for _, prefix := range []string{"user:", "other:"} {
		for i := range 50 {
			n := strconv.Itoa(i)
			b := sc.B()
			switch i % 5 {
			case 0:
				cmds = append(cmds, b.Set().Key(prefix+"string:"+n).Value("v"+n).Build())
			case 1:
				cmds = append(cmds, b.Hset().Key(prefix+"hash:"+n).FieldValue().FieldValue("f", "v"+n).Build())
			case 2:
				cmds = append(cmds, b.Rpush().Key(prefix+"list:"+n).Element("v"+n, "x").Build())
			case 3:
				cmds = append(cmds, b.Sadd().Key(prefix+"set:"+n).Member("v"+n, "m").Build())
			case 4:
				cmds = append(cmds, b.Zadd().Key(prefix+"zset:"+n).ScoreMember().ScoreMember(1, "v"+n).Build())
			}
		}
	}
	for _, r := range sc.DoMulti(ctx, cmds...) {
		require.NoError(t, r.Error())
	}
	c := newCLI(t)
	validate := func(args ...string) (validation.Report, string, int) {
		t.Helper()
		out, errOut, code := c.run(append([]string{"validate", "--source", src.URL(), "--target", dst.URL(), "--json"}, args...)...)
		var rep validation.Report
		require.NoError(t, json.Unmarshal([]byte(out), &rep), "%s\n%s", out, errOut)
		return rep, errOut, code
	}

	out, errOut, code := c.run("run", "--source", src.URL(), "--target", dst.URL(), "--match", "user:*", "--sample", "1000")
	require.Equal(t, exitOK, code, "%s\n%s", out, errOut)
	assert.Contains(t, out, "validation PASSED")
	assert.Contains(t, out, `key counts of the keys the filter selects (--match "user:*"; SCAN of every master, not DBSIZE)`)
	assert.Contains(t, out, "sample (every key, matching keys only): 50 source keys")
	assert.EqualValues(t, 50, dbsize(t, dc), "the copy took the matching keys")

	t.Run("validate --match passes; without it the keys left out are missing", func(t *testing.T) {
		rep, errOut, code := validate("--match", "user:*")
		require.Equal(t, exitOK, code, errOut)
		assert.True(t, rep.Passed)
		assert.Equal(t, &validation.Filter{Match: "user:*"}, rep.Filter)
		assert.Equal(t, []int64{50, 50}, []int64{rep.KeyCounts[0].Source, rep.KeyCounts[0].Target})

		rep, _, code = validate()
		assert.Equal(t, exitFailed, code)
		assert.False(t, rep.Passed)
		assert.Nil(t, rep.Filter)
		assert.Equal(t, []int64{100, 50}, []int64{rep.KeyCounts[0].Source, rep.KeyCounts[0].Target})
	})

	t.Run("validate --match --type hash checks the hashes among them", func(t *testing.T) {
		rep, errOut, code := validate("--match", "user:*", "--type", "hash")
		require.Equal(t, exitOK, code, errOut)
		assert.Equal(t, []int64{10, 10}, []int64{rep.KeyCounts[0].Source, rep.KeyCounts[0].Target})
		assert.Equal(t, 10, rep.Sample.Sampled)
	})

	t.Run("a bad --type is bad input: exit 2", func(t *testing.T) {
		_, errOut, code := c.run("validate", "--source", src.URL(), "--target", dst.URL(), "--type", "document")
		assert.Equal(t, exitUsage, code)
		assert.Contains(t, errOut, "--type")
	})

	t.Run("a damaged matching key fails validate --match: exit 1", func(t *testing.T) {
		do(t, dc, "SADD", "user:set:3", "intruder")
		do(t, dc, "SET", "other:string:0", "not the source's") // left out by the filter: no issue
		rep, _, code := validate("--match", "user:*")
		assert.Equal(t, exitFailed, code)
		require.Len(t, rep.Issues, 1)
		assert.Equal(t, validation.IssueLength, rep.Issues[0].Kind)
		assert.Equal(t, "user:set:3", rep.Issues[0].Key)
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
