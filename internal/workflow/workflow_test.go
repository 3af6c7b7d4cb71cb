package workflow_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/job/bolt"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/sample"
	"github.com/kvmigrate/kvmigrate/internal/transfer"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

func parse(t *testing.T, url string) endpoint.Endpoint {
	t.Helper()
	e, err := endpoint.Parse(url)
	require.NoError(t, err)
	return e
}

func openStore(t *testing.T) job.Store {
	s, err := bolt.Open(filepath.Join(t.TempDir(), "jobs.db"))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// cancelAfter cancels a run once it has seen n keys go by.
type cancelAfter struct {
	mu     sync.Mutex
	n      int64
	cancel context.CancelFunc
	seen   int64
}

func (c *cancelAfter) Planned(string, []workflow.ShardPlan) {}
func (c *cancelAfter) ShardDone(string, int)                {}
func (c *cancelAfter) Progress(_ string, _ int, d job.Counters) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen += d.Copied
	if c.seen >= c.n {
		c.cancel()
	}
}

func TestMigrateRecordsTheJobAndItsShards(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"))
	n0, err := sample.Seed(ctx, src.ClientDB(t, 0), sample.Options{PerType: 20})
	require.NoError(t, err)
	n5, err := sample.Seed(ctx, src.ClientDB(t, 5), sample.Options{PerType: 3})
	require.NoError(t, err)
	started := time.Now() // before the source is read: TTLs run down from here
	before0 := kvtest.Snapshot(ctx, t, src.ClientDB(t, 0))
	before5 := kvtest.Snapshot(ctx, t, src.ClientDB(t, 5))

	store := openStore(t)
	l := &workflow.Local{Store: store}
	out, err := l.Migrate(ctx, workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL()), ChunkKeys: 50})
	require.NoError(t, err)

	kvtest.AssertSameData(t, before0, kvtest.Snapshot(ctx, t, dst.ClientDB(t, 0)), time.Since(started))
	kvtest.AssertSameData(t, before5, kvtest.Snapshot(ctx, t, dst.ClientDB(t, 5)), time.Since(started))
	j, err := store.Get(ctx, out.Job.ID)
	require.NoError(t, err)
	assert.Equal(t, job.StatusSucceeded, j.Status)
	assert.EqualValues(t, n0+n5, j.Counters.Copied)
	shards, err := store.Shards(ctx, j.ID)
	require.NoError(t, err)
	require.Len(t, shards, 2)
	for _, s := range shards {
		assert.True(t, s.Done)
		assert.Equal(t, "0", s.Cursor)
	}
	assert.EqualValues(t, n0, shards[0].Counters.Copied)
	assert.EqualValues(t, n5, shards[1].Counters.Copied)
	// A finished job cannot be resumed.
	_, err = l.Resume(ctx, j.ID, workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL())})
	assert.ErrorIs(t, err, workflow.ErrNotResumable)
}

func TestInterruptedMigrationResumesFromItsCheckpoints(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "redis-8.0"))
	n, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 200, Big: true, BigScale: 20})
	require.NoError(t, err)
	started := time.Now() // before the source is read: TTLs run down from here
	before := kvtest.Snapshot(ctx, t, src.Client(t))
	store := openStore(t)
	req := workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL()), ChunkKeys: 300,
		Options: job.Options{Strategy: string(transfer.StrategyCommands)}}

	runCtx, cancel := context.WithCancel(ctx)
	l := &workflow.Local{Store: store, Observer: &cancelAfter{n: 700, cancel: cancel}}
	out, err := l.Migrate(runCtx, req)
	require.ErrorIs(t, err, context.Canceled)
	j, err := store.Get(ctx, out.Job.ID)
	require.NoError(t, err)
	assert.Equal(t, job.StatusPaused, j.Status)
	assert.Contains(t, j.Error, "kvmigrate resume "+j.ID)
	shards, err := store.Shards(ctx, j.ID)
	require.NoError(t, err)
	require.Len(t, shards, 1)
	require.False(t, shards[0].Done)
	checkpointed := shards[0].Counters.Copied
	require.Positive(t, checkpointed, "at least one chunk was checkpointed before the interruption")
	dbsize, err := dst.Client(t).Do(ctx, dst.Client(t).B().Dbsize().Build()).AsInt64()
	require.NoError(t, err)
	require.Less(t, dbsize, int64(n), "the copy was really interrupted")

	l = &workflow.Local{Store: store}
	out, err = l.Resume(ctx, j.ID, req)
	require.NoError(t, err)
	assert.Equal(t, job.StatusSucceeded, out.Job.Status)
	kvtest.AssertSameData(t, before, kvtest.Snapshot(ctx, t, dst.Client(t)), time.Since(started))
	// The resumed run started from the checkpoint, not from scratch: it
	// copied fewer keys than the whole dataset... unless nothing was saved.
	shards, err = store.Shards(ctx, j.ID)
	require.NoError(t, err)
	assert.True(t, shards[0].Done)
	assert.GreaterOrEqual(t, shards[0].Counters.Copied, int64(n))
	assert.Less(t, shards[0].Counters.Copied-checkpointed, int64(n), "the resumed run skipped what was checkpointed")
}

func TestResumeRefusesAnotherServer(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	other := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	_, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 200})
	require.NoError(t, err)
	store := openStore(t)
	runCtx, cancel := context.WithCancel(ctx)
	l := &workflow.Local{Store: store, Observer: &cancelAfter{n: 1, cancel: cancel}}
	out, err := l.Migrate(runCtx, workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL()), ChunkKeys: 100})
	require.ErrorIs(t, err, context.Canceled)

	_, err = l.Resume(ctx, out.Job.ID, workflow.Request{Source: parse(t, src.URL()), Target: parse(t, other.URL())})
	require.ErrorIs(t, err, workflow.ErrNotResumable)
	j, err := store.Get(ctx, out.Job.ID)
	require.NoError(t, err)
	assert.Equal(t, job.StatusPaused, j.Status, "a refused resume changes nothing")
}

func TestMigrateFailsClearlyOnATopologyItCannotCopy(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartCluster(t, kvtest.Require(t, "valkey-8.0"), 3)
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	store := openStore(t)
	l := &workflow.Local{Store: store}
	out, err := l.Migrate(ctx, workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL())})
	require.ErrorIs(t, err, transfer.ErrTopology)
	j, err := store.Get(ctx, out.Job.ID)
	require.NoError(t, err)
	assert.Equal(t, job.StatusFailed, j.Status)
	assert.Contains(t, j.Error, "cluster")
}

// The end-of-shard sweep SCANs the whole target: a clean run skips it, a
// run whose chunk was interrupted sweeps what it may have left.
func TestTemporaryKeysAreSweptOnlyWhenAChunkMayHaveLeftSome(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	_, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 200, Big: true, BigScale: 20})
	require.NoError(t, err)
	req := workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL()), ChunkKeys: 300}
	scans := func() string {
		info, err := dst.Client(t).Do(ctx, dst.Client(t).B().Info().Section("commandstats").Build()).ToString()
		require.NoError(t, err)
		for _, line := range strings.Split(info, "\n") {
			if strings.HasPrefix(line, "cmdstat_scan:") {
				return line
			}
		}
		return ""
	}

	t.Run("a clean run never scans the target", func(t *testing.T) {
		l := &workflow.Local{Store: openStore(t)}
		out, err := l.Migrate(ctx, req)
		require.NoError(t, err)
		assert.Empty(t, scans(), "no SCAN MATCH of the target")
		assert.Zero(t, out.Job.Counters.TempKeysSwept)
		for _, s := range out.Shards {
			assert.False(t, s.Dirty)
			assert.False(t, s.InFlight)
		}
	})

	t.Run("an interrupted chunk marks its shard dirty, and the resumed run sweeps it", func(t *testing.T) {
		require.NoError(t, dst.Client(t).Do(ctx, dst.Client(t).B().Flushall().Build()).Error())
		store := openStore(t)
		runCtx, cancel := context.WithCancel(ctx)
		l := &workflow.Local{Store: store, Observer: &cancelAfter{n: 500, cancel: cancel}}
		out, err := l.Migrate(runCtx, req)
		require.ErrorIs(t, err, context.Canceled)
		shards, err := store.Shards(ctx, out.Job.ID)
		require.NoError(t, err)
		require.Len(t, shards, 1)
		require.True(t, shards[0].Dirty, "the interrupted chunk marked its shard")
		require.False(t, shards[0].InFlight)
		// A temporary key a dying process could have left behind.
		leftover := transfer.TempKey(out.Job.ID, transfer.ShardTag(shards[0].Node, shards[0].DB), "some:key")
		require.NoError(t, dst.Client(t).Do(ctx, dst.Client(t).B().Set().Key(leftover).Value("partial").Build()).Error())

		l = &workflow.Local{Store: store}
		out, err = l.Resume(ctx, out.Job.ID, req)
		require.NoError(t, err)
		n, err := dst.Client(t).Do(ctx, dst.Client(t).B().Exists().Key(leftover).Build()).AsInt64()
		require.NoError(t, err)
		assert.Zero(t, n, "the leftover temporary key was swept")
		assert.Positive(t, out.Job.Counters.TempKeysSwept)
		shards, err = store.Shards(ctx, out.Job.ID)
		require.NoError(t, err)
		assert.False(t, shards[0].Dirty)
	})
}

// A target that runs out of memory stops the copy at its checkpoints: the
// job is paused with the cause and the way on, and once the target has
// room it resumes to an exact copy.
func TestATargetOutOfMemoryPausesTheJobAndItResumesOnceThereIsRoom(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"), kvtest.WithConfig("maxmemory", "3mb"))
	_, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 20})
	require.NoError(t, err)
	c := src.Client(t)
	var cmds []valkey.Completed
	for i := range 30000 {
		cmds = append(cmds, c.B().Set().Key(fmt.Sprintf("str:%d", i)).Value(strings.Repeat("v", 100)).Build())
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		require.NoError(t, r.Error())
	}
	started := time.Now()
	before := kvtest.Snapshot(ctx, t, src.Client(t))
	store := openStore(t)
	req := workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL()), ChunkKeys: 2000}

	l := &workflow.Local{Store: store}
	out, err := l.Migrate(ctx, req)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "OOM")
	j, err := store.Get(ctx, out.Job.ID)
	require.NoError(t, err)
	assert.Equal(t, job.StatusPaused, j.Status, "resumable: every shard is at a checkpoint")
	assert.Contains(t, j.Error, "OOM")
	assert.Contains(t, j.Error, "kvmigrate resume "+j.ID)

	require.NoError(t, dst.Client(t).Do(ctx, dst.Client(t).B().ConfigSet().ParameterValue().ParameterValue("maxmemory", "0").Build()).Error())
	out, err = l.Resume(ctx, j.ID, req)
	require.NoError(t, err)
	assert.Equal(t, job.StatusSucceeded, out.Job.Status)
	kvtest.AssertSameData(t, before, kvtest.Snapshot(ctx, t, dst.Client(t)), time.Since(started))
}
