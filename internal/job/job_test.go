package job

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func TestValidTransitionFollowsTheTable(t *testing.T) {
	allowed := map[[2]Status]bool{}
	for _, p := range [][2]Status{
		{StatusPending, StatusAnalyzing}, {StatusPending, StatusFailed}, {StatusPending, StatusCancelled},
		{StatusAnalyzing, StatusAnalyzed}, {StatusAnalyzing, StatusBlocked}, {StatusAnalyzing, StatusFailed}, {StatusAnalyzing, StatusCancelled},
		{StatusAnalyzed, StatusRunning}, {StatusAnalyzed, StatusFailed}, {StatusAnalyzed, StatusCancelled},
		{StatusRunning, StatusValidating}, {StatusRunning, StatusSucceeded}, {StatusRunning, StatusPaused}, {StatusRunning, StatusFailed}, {StatusRunning, StatusCancelled},
		{StatusValidating, StatusSucceeded}, {StatusValidating, StatusPaused}, {StatusValidating, StatusFailed}, {StatusValidating, StatusCancelled},
		{StatusPaused, StatusRunning}, {StatusPaused, StatusValidating}, {StatusPaused, StatusFailed}, {StatusPaused, StatusCancelled},
	} {
		allowed[p] = true
	}
	all := append(Statuses(), "", "done")
	for _, from := range all {
		for _, to := range all {
			assert.Equal(t, allowed[[2]Status{from, to}], ValidTransition(from, to), "%q -> %q", from, to)
		}
	}
}

func TestStatusSets(t *testing.T) {
	var terminal []Status
	for _, s := range Statuses() {
		assert.True(t, s.Valid(), s)
		if s.Terminal() {
			terminal = append(terminal, s)
		}
	}
	assert.Equal(t, []Status{StatusSucceeded, StatusFailed, StatusBlocked, StatusCancelled}, terminal)
	assert.Len(t, Statuses(), len(transitions), "Statuses lists every status of the table")
	assert.False(t, Status("done").Valid())
	assert.False(t, Status("done").Terminal())

	assert.True(t, Job{Kind: KindAnalysis, Status: StatusAnalyzed}.Finished())
	assert.False(t, Job{Kind: KindMigration, Status: StatusAnalyzed}.Finished())
	assert.False(t, Job{Kind: KindAnalysis, Status: StatusAnalyzed}.CanTransition(StatusRunning))
	assert.True(t, Job{Kind: KindMigration, Status: StatusAnalyzed}.CanTransition(StatusRunning))
	assert.False(t, Job{Kind: KindAnalysis, Status: StatusAnalyzing}.CanTransition(StatusBlocked))
	assert.True(t, Job{Kind: KindAnalysis, Status: StatusAnalyzing}.CanTransition(StatusFailed))
}

func TestTransitionErrorIsConflict(t *testing.T) {
	var err error = &TransitionError{ID: "j1", Kind: KindMigration, From: StatusSucceeded, To: StatusRunning}
	assert.ErrorIs(t, err, ErrConflict)
	assert.NotErrorIs(t, err, ErrNotFound)
}

func TestNewIDIsSortableUniqueAndURLSafe(t *testing.T) {
	const goroutines, each = 8, 2000
	var mu sync.Mutex
	var all []string
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			ids := make([]string, each)
			for i := range ids {
				ids[i] = NewID()
			}
			assert.True(t, slices.IsSorted(ids), "ids from one goroutine increase")
			mu.Lock()
			all = append(all, ids...)
			mu.Unlock()
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, id := range all {
		require.Len(t, id, 26)
		require.True(t, ValidID(id), id)
		for _, c := range id {
			require.Contains(t, idAlphabet, string(c), "id %s", id)
		}
		require.False(t, seen[id], "duplicate id %s", id)
		seen[id] = true
	}

	before := NewID()
	time.Sleep(2 * time.Millisecond)
	assert.Less(t, before, NewID(), "a later id sorts after")
}

func TestNewIDEncodesTheTime(t *testing.T) {
	now := time.Now().UnixMilli()
	id := NewID()
	var ms int64
	for _, c := range id[:10] {
		ms = ms<<5 | int64(slices.Index([]byte(idAlphabet), byte(c)))
	}
	assert.InDelta(t, now, ms, 60_000, "the first 10 characters are the creation time in ms")
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"01jq3v5x7k9m2n4p6r8t0w2y4a": true, "job-1_A": true, "": false, "a b": false, "a#b": false,
		"a/b": false, "ümlaut": false, string(make([]byte, 81)): false,
	} {
		assert.Equal(t, want, ValidID(id), "%q", id)
	}
}

func TestCountersAddCoversEveryField(t *testing.T) {
	var a, b Counters
	va, vb := reflect.ValueOf(&a).Elem(), reflect.ValueOf(&b).Elem()
	for i := range va.NumField() {
		va.Field(i).SetInt(int64(i + 1))
		vb.Field(i).SetInt(int64(100 * (i + 1)))
	}
	a.Add(b)
	for i := range va.NumField() {
		assert.Equal(t, int64(101*(i+1)), va.Field(i).Int(), "Counters.Add misses %s", va.Type().Field(i).Name)
	}
}

func TestHasPassword(t *testing.T) {
	tests := []struct {
		endpoint string
		want     bool
	}{
		{"redis://source.example:6379", false},
		{"redis://default@source.example:6379/0", false},
		{"redis://default:xxxxx@source.example:6379", false},
		{"rediss://:***@source.example:6380?cluster=true", false},
		{"redis://user:REDACTED@h:6379", false},
		{"redis://user:@h:6379", false},
		{"source.example:6379", false},
		{"valkey://h:6379?password=xxxxx", false},
		{"redis://default:hunter2@source.example:6379", true},
		{"rediss://:p@ss:w0rd@h:6380", true},
		{"user:hunter2@h:6379", true},
		{"valkey://h:6379?cluster=true&password=hunter2", true},
		{"valkey://h:6379?pass=hunter2", true},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, HasPassword(tc.endpoint), tc.endpoint)
	}
}

func TestApplySetsTimestamps(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	j, err := Prepare(Job{ID: "j1", Kind: KindAnalysis}, t0)
	require.NoError(t, err)
	assert.Equal(t, StatusPending, j.Status)

	t1 := t0.Add(time.Minute)
	j, err = Apply(j, StatusAnalyzing, nil, t1)
	require.NoError(t, err)
	assert.Equal(t, t1, j.StartedAt)
	assert.Equal(t, t1, j.UpdatedAt)

	t2 := t1.Add(1500 * time.Millisecond)
	j, err = Apply(j, StatusAnalyzed, func(j *Job) { j.Stage = "report written" }, t2)
	require.NoError(t, err)
	assert.Equal(t, t2, j.FinishedAt)
	assert.Equal(t, t2.Add(Retention).Truncate(time.Second), j.ExpireAt)
	assert.Equal(t, "report written", j.Stage)

	keep := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	m, err := Prepare(Job{ID: "j2", Kind: KindMigration, Status: StatusRunning}, t0)
	require.NoError(t, err)
	m, err = Apply(m, StatusFailed, func(j *Job) { j.Error = "boom"; j.ExpireAt = keep }, t2)
	require.NoError(t, err)
	assert.Equal(t, keep, m.ExpireAt, "a mutation may choose ExpireAt")
	assert.True(t, m.StartedAt.IsZero(), "StartedAt is set only when leaving pending")
}

func TestJobJSONMatchesGolden(t *testing.T) {
	at := time.Date(2025, 6, 1, 12, 0, 0, 500, time.UTC)
	j := Job{
		ID: "01jxa9k2c4e6g8j0m2p4r6t8v0", Kind: KindMigration, Status: StatusRunning, Stage: "copying",
		Mode:   ModeCommand,
		Source: "redis://default:xxxxx@source.example:6379/0", Target: "valkeys://target.example:6380?cluster=true",
		SourceSecretRef: "arn:aws:secretsmanager:eu-west-1:123456789012:secret:src-AbCdEf",
		TargetSecretRef: "env:TARGET_PASSWORD",
		Options:         Options{Strategy: "dump", OnConflict: "skip", Match: "user:*", Type: "hash", MaxOps: 5000, Parallel: 4, Concurrency: 8, Force: true, ChunkKeys: 20000, SampleSize: 5000},
		Counters:        Counters{Copied: 1, Skipped: 2, Failed: 3, Expired: 4, Bytes: 5, Fallbacks: 6, EvalFallbacks: 7, FieldTTLsDropped: 8, PendingNotCarried: 9, ListsChanged: 10, TempKeysSwept: 11},
		Error:           "node n2 unreachable, retrying",
		CreatedAt:       at, UpdatedAt: at.Add(time.Minute), StartedAt: at.Add(time.Second), FinishedAt: at.Add(time.Hour), ExpireAt: at.Add(Retention).Truncate(time.Second),
		ExecutionARN: "arn:aws:states:eu-west-1:123456789012:execution:kvmigrate:01jxa9k2c4e6g8j0m2p4r6t8v0",
		TaskARN:      "arn:aws:ecs:eu-west-1:123456789012:task/kvmigrate/0123456789abcdef",
	}
	minimal := Job{ID: "j1", Kind: KindAnalysis, Status: StatusPending, CreatedAt: at, UpdatedAt: at}
	shard := Shard{Node: "10.0.0.1:6379", DB: 0, Cursor: "4096", Commands: true, Counters: Counters{Copied: 1}, UpdatedAt: at}

	for name, v := range map[string]any{"job.json": j, "job_minimal.json": minimal, "shard.json": shard} {
		t.Run(name, func(t *testing.T) {
			got, err := json.MarshalIndent(v, "", "  ")
			require.NoError(t, err)
			got = append(got, '\n')
			path := filepath.Join("testdata", name)
			if *update {
				require.NoError(t, os.WriteFile(path, got, 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test -update to create %s", path)
			assert.Equal(t, string(want), string(got))

			back := reflect.New(reflect.TypeOf(v))
			require.NoError(t, json.Unmarshal(want, back.Interface()))
			assert.Equal(t, v, back.Elem().Interface(), "the golden file decodes to the same value")
		})
	}
}
