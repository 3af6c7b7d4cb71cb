package analysis_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/sample"
)

// commandCalls reads INFO commandstats: command → calls.
func commandCalls(t *testing.T, c valkey.Client) map[string]int64 {
	t.Helper()
	s, err := c.Do(context.Background(), c.B().Info().Section("commandstats").Build()).ToString()
	require.NoError(t, err)
	out := map[string]int64{}
	for line := range strings.SplitSeq(s, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isStat := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isStat {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		out[name], _ = strconv.ParseInt(calls, 10, 64)
	}
	return out
}

// flags reads a command's flags with COMMAND INFO ("config|get" for a
// subcommand).
func flags(t *testing.T, c valkey.Client, name string) []string {
	t.Helper()
	rows, err := c.Do(context.Background(), c.B().CommandInfo().CommandName(name).Build()).ToArray()
	require.NoError(t, err)
	require.NotEmpty(t, rows)
	info, err := rows[0].ToArray()
	require.NoError(t, err, "COMMAND INFO %s", name)
	f, err := info[2].AsStrSlice()
	require.NoError(t, err)
	return f
}

// dirty reads rdb_changes_since_last_save: every write adds to it.
func dirty(t *testing.T, c valkey.Client) string {
	t.Helper()
	s, err := c.Do(context.Background(), c.B().Info().Section("persistence").Build()).ToString()
	require.NoError(t, err)
	for line := range strings.SplitSeq(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "rdb_changes_since_last_save:"); ok {
			return v
		}
	}
	t.Fatal("no rdb_changes_since_last_save")
	return ""
}

func TestAnalysisWritesNothingAndScansLightly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Every command goes to the slow log, so its arguments can be checked.
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-8.0"),
		kvtest.WithConfig("slowlog-log-slower-than", "0"), kvtest.WithConfig("slowlog-max-len", "100000"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"))
	sc, dc := src.Client(t), dst.Client(t)
	_, err := sample.Seed(ctx, sc, sample.Options{PerType: 20, Big: true, BigScale: 40})
	require.NoError(t, err)
	do(t, sc, "HSET", "fieldttl", "a", "1", "b", "2")
	do(t, sc, "HPEXPIRE", "fieldttl", "600000", "FIELDS", "1", "a")
	seedStrings(t, dc, "k", 10, 10, noTTL)     // the target is not empty: overlap is looked up
	seedStrings(t, sc, "pad", 3000, 10, noTTL) // more keys than the sample: the big-key sweep runs

	beforeSrc, beforeDst := commandCalls(t, sc), commandCalls(t, dc)
	dirtySrc, dirtyDst := dirty(t, sc), dirty(t, dc)
	newest, err := sc.Do(ctx, sc.B().SlowlogGet().Count(1).Build()).ToArray()
	require.NoError(t, err)
	entry, _ := newest[0].ToArray()
	lastID, _ := entry[0].AsInt64()

	r := analyze(t, src.URL(), dst.URL(), analysis.Options{Sample: 2*analysis.MinSample + 3000})
	require.Positive(t, r.Sample.Sampled)
	require.Positive(t, r.HashFieldTTL.HashesWithTTL, "the field TTL check ran")
	require.Positive(t, r.Overlap.Checked, "the overlap check ran")
	// A sample of part of the keys: the big-key sweep runs.
	sw := analyze(t, src.URL(), dst.URL(), analysis.Options{Sample: analysis.MinSample})
	require.False(t, sw.Sample.Complete)
	require.NotNil(t, sw.LargestKeys.Sweep)
	require.True(t, sw.LargestKeys.Sweep.Complete, "the big-key sweep ran")
	require.Positive(t, sw.LargestKeys.Sweep.Shards[0].Found)
	// A filtered analysis SCANs twice per page (the census): also no write.
	fr := analyze(t, src.URL(), dst.URL(), analysis.Options{Sample: analysis.MinSample, Match: "hash:*", Type: "hash"})
	require.NotNil(t, fr.Filter)
	require.Positive(t, fr.Filter.Scanned, "the census ran")
	require.Positive(t, fr.HashFieldTTL.HashesSampled)

	for _, side := range []struct {
		name   string
		c      valkey.Client
		before map[string]int64
		dirty  string
	}{{"source", sc, beforeSrc, dirtySrc}, {"target", dc, beforeDst, dirtyDst}} {
		assert.Equal(t, side.dirty, dirty(t, side.c), "%s: no write happened", side.name)
		var ran []string
		for name, calls := range commandCalls(t, side.c) {
			if calls > side.before[name] {
				ran = append(ran, name)
			}
		}
		require.NotEmpty(t, ran)
		for _, name := range ran {
			assert.NotContains(t, flags(t, side.c, name), "write", "%s ran %s", side.name, name)
			assert.NotContains(t, []string{"keys", "debug"}, name, "%s ran %s", side.name, name)
		}
	}
	// Every SCAN of the source has a COUNT.
	log, err := sc.Do(ctx, sc.B().SlowlogGet().Count(-1).Build()).ToArray()
	require.NoError(t, err)
	scans, typed := 0, 0
	for _, e := range log {
		f, err := e.ToArray()
		require.NoError(t, err)
		if id, _ := f[0].AsInt64(); id <= lastID {
			continue
		}
		args, err := f[3].AsStrSlice()
		require.NoError(t, err)
		if strings.EqualFold(args[0], "SCAN") {
			scans++
			assert.Contains(t, strings.ToUpper(strings.Join(args, " ")), " COUNT ", "%v", args)
			if strings.Contains(strings.ToUpper(strings.Join(args, " ")), " TYPE ") {
				typed++
			}
		}
	}
	assert.Positive(t, scans)
	assert.Positive(t, typed, "the sweep's SCANs filter by type on the server")
}

func TestCommandDistributionComesFromTheServersLogs(t *testing.T) {
	t.Run("SLOWLOG on Redis 7.0, with call counts from commandstats", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"), kvtest.WithConfig("slowlog-log-slower-than", "0"))
		dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
		c := src.Client(t)
		for range 30 {
			do(t, c, "INCR", "counter")
		}
		for range 10 {
			do(t, c, "GET", "counter")
		}
		r := analyze(t, src.URL(), dst.URL(), analysis.Options{})
		cm := r.Commands
		assert.Equal(t, "slowlog", cm.Log)
		require.Len(t, cm.Logs, 1)
		assert.Equal(t, "slow", cm.Logs[0].Type)
		assert.Contains(t, cm.Logs[0].Top, analysis.CommandCount{Command: "incr", Count: 30})
		assert.Contains(t, cm.Logs[0].Top, analysis.CommandCount{Command: "get", Count: 10})
		assert.Contains(t, cm.Calls, analysis.CommandCount{Command: "incr", Count: 30})
		assert.Equal(t, "incr", cm.Calls[0].Command, "the most called first")
	})

	t.Run("COMMANDLOG on Valkey 8.1: slow commands, large requests and large replies", func(t *testing.T) {
		t.Parallel()
		src := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"),
			kvtest.WithConfig("commandlog-execution-slower-than", "0"),
			kvtest.WithConfig("commandlog-request-larger-than", "1024"),
			kvtest.WithConfig("commandlog-reply-larger-than", "1024"))
		dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"))
		c := src.Client(t)
		big := strings.Repeat("x", 4096)
		for i := range 3 {
			do(t, c, "SET", "big:"+strconv.Itoa(i), big)
		}
		for range 2 {
			do(t, c, "GET", "big:0")
		}
		for range 20 {
			do(t, c, "INCR", "counter")
		}
		r := analyze(t, src.URL(), dst.URL(), analysis.Options{})
		cm := r.Commands
		assert.Equal(t, "commandlog", cm.Log)
		logs := map[string][]analysis.CommandCount{}
		for _, l := range cm.Logs {
			logs[l.Type] = l.Top
		}
		require.Len(t, logs, 3)
		assert.Contains(t, logs["slow"], analysis.CommandCount{Command: "incr", Count: 20})
		assert.Contains(t, logs["large-request"], analysis.CommandCount{Command: "set", Count: 3})
		assert.Contains(t, logs["large-reply"], analysis.CommandCount{Command: "get", Count: 2})
	})
}

func TestSamplingLimits(t *testing.T) {
	src := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	seedStrings(t, src.Client(t), "k", 300, 10, func(i int) int64 { return int64(i%3) * 1_000_000 })

	t.Run("the time budget stops the sample and the report says so", func(t *testing.T) {
		r := analyze(t, src.URL(), dst.URL(), analysis.Options{TimeBudget: time.Nanosecond})
		assert.Equal(t, "timeBudget", r.Sample.StoppedBy)
		assert.False(t, r.Sample.Complete)
		assert.Zero(t, r.Sample.Sampled)
		assert.EqualValues(t, 300, r.EstimatedKeys, "key counts do not need the sample")
		assert.Equal(t, analysis.Info, finding(t, r, analysis.CategorySampling).Severity)
	})

	t.Run("a rate limit gives the same report", func(t *testing.T) {
		free := analyze(t, src.URL(), dst.URL(), analysis.Options{})
		limited := analyze(t, src.URL(), dst.URL(), analysis.Options{MaxOps: 2000})
		assert.Equal(t, free.Types, limited.Types)
		assert.Equal(t, free.TTL.Sampled, limited.TTL.Sampled)
		assert.Equal(t, free.Memory.SampledBytes, limited.Memory.SampledBytes)
		assert.Equal(t, 2000, limited.Sample.MaxOps)
	})

	t.Run("bad options are refused before anything is read", func(t *testing.T) {
		for _, o := range []analysis.Options{{Sample: 10}, {Sample: analysis.MaxSample + 1}, {TimeBudget: -time.Second}, {MaxOps: -1}} {
			_, err := analysis.Analyze(context.Background(), dial(t, src.URL()), dial(t, dst.URL()), o)
			assert.ErrorIs(t, err, analysis.ErrInvalidOptions, "%+v", o)
		}
	})

	t.Run("an empty source is analysed, with nothing to move", func(t *testing.T) {
		empty := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
		r := analyze(t, empty.URL(), dst.URL(), analysis.Options{})
		assert.Zero(t, r.EstimatedKeys)
		assert.Empty(t, r.Shards)
		assert.True(t, r.Sample.Complete)
		assert.Equal(t, analysis.Info, finding(t, r, analysis.CategorySampling).Severity)
		assert.False(t, r.Blocking)
	})
}

// The report's JSON names are a contract (the README documents them, the
// API serves them): the top-level names are these, and a report read back
// writes the same JSON.
func TestReportJSONIsStable(t *testing.T) {
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-8.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"))
	_, err := sample.Seed(context.Background(), src.Client(t), sample.Options{PerType: 3})
	require.NoError(t, err)
	r := analyze(t, src.URL(), dst.URL(), analysis.Options{JobID: "job-1"})

	b, err := json.Marshal(r)
	require.NoError(t, err)
	var top map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &top))
	names := make([]string, 0, len(top))
	for k := range top {
		names = append(names, k)
	}
	assert.ElementsMatch(t, []string{
		"version", "jobId", "startedAt", "durationMs", "blocking", "findings", "shards", "estimatedKeys",
		"source", "target", "sample", "types", "memory", "ttl", "largestKeys", "hashFieldTTL", "commands",
		"fastPath", "overlap",
	}, names)

	var back analysis.Report
	require.NoError(t, json.Unmarshal(b, &back))
	again, err := json.Marshal(&back)
	require.NoError(t, err)
	assert.JSONEq(t, string(b), string(again))
	assert.Equal(t, "job-1", back.JobID)
	// The rules give the same findings on a report read back.
	want, err := json.Marshal(back.Findings)
	require.NoError(t, err)
	got, err := json.Marshal(analysis.Findings(&back))
	require.NoError(t, err)
	assert.JSONEq(t, string(want), string(got))
}

// The README's example report decodes into Report with no unknown field,
// so the documentation and the struct cannot drift apart.
func TestTheREADMEExampleIsAReport(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(b), "## Analysis report")
	require.True(t, ok, "README has an Analysis report section")
	_, rest, ok := strings.Cut(section, "```json\n")
	require.True(t, ok)
	example, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	dec := json.NewDecoder(strings.NewReader(example))
	dec.DisallowUnknownFields()
	var r analysis.Report
	require.NoError(t, dec.Decode(&r))
	assert.Equal(t, analysis.ReportVersion, r.Version)
	assert.True(t, r.Blocking)
	assert.NotEmpty(t, r.Findings)
	assert.NotContains(t, example, `"password"`)
}
