package transfer_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/sample"
	"github.com/kvmigrate/kvmigrate/internal/transfer"
)

// rig is a standalone source and target with clients for the test's own
// reads and writes, driven one shard (db 0) at a time.
type rig struct {
	src, dst *kvtest.Server
	sc, dc   valkey.Client
}

func newRig(t *testing.T, srcEngine, dstEngine string, dstOpts ...kvtest.Option) *rig {
	t.Helper()
	src := kvtest.StartServer(t, kvtest.Require(t, srcEngine))
	dst := kvtest.StartServer(t, kvtest.Require(t, dstEngine), dstOpts...)
	return &rig{src: src, dst: dst, sc: src.Client(t), dc: dst.Client(t)}
}

// copier dials both sides the way the workflow does and builds a Copier.
func (r *rig) copier(t *testing.T, opts transfer.Options) *transfer.Copier {
	t.Helper()
	sconn, sinfo := dial(t, r.src.URL())
	dconn, dinfo := dial(t, r.dst.URL())
	if opts.JobID == "" {
		opts.JobID = "faults"
	}
	opts.FastPath = dinfo.Accepts(sinfo.RDBVersion)
	opts.SourceFieldTTL, opts.TargetFieldTTL = sinfo.HashFieldTTL, dinfo.HashFieldTTL
	c, err := transfer.New(sconn, dconn, opts)
	require.NoError(t, err)
	return c
}

// on is a side for the independent reader over one client (db 0).
func on(c valkey.Client) side {
	return side{client: func(int) valkey.Client { return c }}
}

func (r *rig) chunk() transfer.Chunk {
	return transfer.Chunk{Node: r.src.Addr(), DB: 0, Cursor: "0"}
}

// copyShard runs chunks from ch until the shard is done and sums them up.
// On an error, the result's Chunk is where the failed chunk started.
func copyShard(ctx context.Context, c *transfer.Copier, ch transfer.Chunk, lim ...transfer.Limits) (transfer.Result, error) {
	var total transfer.Result
	var l transfer.Limits
	if len(lim) > 0 {
		l = lim[0]
	}
	for {
		res, err := c.CopyChunk(ctx, ch, l)
		total.Counters.Add(res.Counters)
		total.Scanned += res.Scanned
		total.Errors = append(total.Errors, res.Errors...)
		total.Warnings = append(total.Warnings, res.Warnings...)
		if err != nil || res.Done {
			total.Chunk, total.Done = res.Chunk, res.Done
			return total, err
		}
		ch = res.Chunk
	}
}

func do(t *testing.T, c valkey.Client, cmds ...valkey.Completed) {
	t.Helper()
	for i, resp := range c.DoMulti(context.Background(), cmds...) {
		require.NoError(t, resp.Error(), "command %d", i)
	}
}

// fillList writes n elements "<prefix><i>" to key in pages.
func fillList(t *testing.T, c valkey.Client, key, prefix string, n int) {
	t.Helper()
	var cmds valkey.Commands
	for lo := 0; lo < n; lo += 1000 {
		el := make([]string, 0, 1000)
		for i := lo; i < min(lo+1000, n); i++ {
			el = append(el, prefix+strconv.Itoa(i))
		}
		cmds = append(cmds, c.B().Rpush().Key(key).Element(el...).Build())
	}
	do(t, c, cmds...)
}

func fillHash(t *testing.T, c valkey.Client, key string, n int) {
	t.Helper()
	var cmds valkey.Commands
	for lo := 0; lo < n; lo += 1000 {
		fv := c.B().Hset().Key(key).FieldValue()
		for i := lo; i < min(lo+1000, n); i++ {
			fv = fv.FieldValue("f"+strconv.Itoa(i), "v"+strconv.Itoa(i))
		}
		cmds = append(cmds, fv.Build())
	}
	do(t, c, cmds...)
}

func keys(t *testing.T, c valkey.Client, pattern string) []string {
	t.Helper()
	ks, err := c.Do(context.Background(), c.B().Keys().Pattern(pattern).Build()).AsStrSlice()
	require.NoError(t, err)
	sort.Strings(ks)
	return ks
}

func pttl(t *testing.T, c valkey.Client, key string) int64 {
	t.Helper()
	n, err := c.Do(context.Background(), c.B().Pttl().Key(key).Build()).AsInt64()
	require.NoError(t, err)
	return n
}

// assertNoKeyWithoutTTL checks that none of the keys matching pattern on c
// lives without a TTL (PTTL -1): each either expired or carries one.
func assertNoKeyWithoutTTL(t *testing.T, c valkey.Client, pattern string) {
	t.Helper()
	ks := keys(t, c, pattern)
	if len(ks) == 0 {
		return
	}
	cmds := make(valkey.Commands, len(ks))
	for i, k := range ks {
		cmds[i] = c.B().Pttl().Key(k).Build()
	}
	var persistent []string
	for i, resp := range c.DoMulti(context.Background(), cmds...) {
		n, err := resp.AsInt64()
		require.NoError(t, err)
		if n == -1 {
			persistent = append(persistent, ks[i])
		}
	}
	assert.Empty(t, persistent, "keys that expire on the source landed on the target without a TTL")
}

// watchTempKey calls fn once, as soon as a temporary key shows on the
// target (a key is being streamed), and reports whether it did before stop
// was closed.
func watchTempKey(t *testing.T, dst *kvtest.Server, stop <-chan struct{}, fn func()) <-chan bool {
	c := dst.Client(t)
	seen := make(chan bool, 1)
	go func() {
		ctx := context.Background()
		for {
			select {
			case <-stop:
				seen <- false
				return
			default:
			}
			ks, err := c.Do(ctx, c.B().Keys().Pattern(transfer.TempPrefix+"*").Build()).AsStrSlice()
			if err == nil && len(ks) > 0 {
				fn()
				seen <- true
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return seen
}

func filter(m map[string]kvtest.Value, prefix string) map[string]kvtest.Value {
	out := map[string]kvtest.Value{}
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

func TestAKeyThatExpiresWhileItIsCopiedNeverLandsWithoutItsTTL(t *testing.T) {
	for _, tc := range []struct {
		strategy transfer.Strategy
		name     string
	}{
		// Strings are read by the probe and written with SET PX; the
		// small hashes (every other key) take DUMP/RESTORE with auto, or
		// are streamed and renamed into place with commands.
		{transfer.StrategyAuto, "strings and small hashes (DUMP/RESTORE) whose TTL runs out between SCAN and their read, down to 1 ms"},
		{transfer.StrategyCommands, "strings and small hashes (streamed) whose TTL runs out between SCAN and their read, down to 1 ms"},
	} {
		t.Run(tc.name, func(t *testing.T) { expireWhileCopied(t, tc.strategy) })
	}

	t.Run("big hashes and lists that expire while they are streamed", func(t *testing.T) {
		r := newRig(t, "redis-7.0", "valkey-8.0")
		ctx := context.Background()
		const each = 30
		ttls := map[string]int64{}
		for i := range each {
			fillList(t, r.sc, fmt.Sprintf("exp:list:%d", i), "e", 5000)
			fillHash(t, r.sc, fmt.Sprintf("exp:hash:%d", i), 5000)
		}
		c := r.copier(t, transfer.Options{Strategy: transfer.StrategyCommands})
		var cmds valkey.Commands
		for i := range each {
			for _, kind := range []string{"list", "hash"} {
				k := fmt.Sprintf("exp:%s:%d", kind, i)
				ttls[k] = int64(2 + 3*i)
				cmds = append(cmds, r.sc.B().Pexpire().Key(k).Milliseconds(ttls[k]).Build())
			}
		}
		do(t, r.sc, cmds...)
		res, err := copyShard(ctx, c, r.chunk())
		require.NoError(t, err)

		assertNoKeyWithoutTTL(t, r.dc, "exp:*")
		for _, k := range keys(t, r.dc, "exp:*") {
			assert.LessOrEqual(t, pttl(t, r.dc, k), ttls[k], "%s keeps at most its source TTL", k)
		}
		assert.Empty(t, keys(t, r.dc, transfer.TempPrefix+"*"), "temporary keys left")
		assert.Zero(t, res.Counters.Failed, "errors: %v", res.Errors)
		assert.EqualValues(t, res.Scanned, res.Counters.Copied+res.Counters.Expired)
		assert.Positive(t, res.Counters.Expired)
		// A list that expired is not a list that changed.
		assert.Zero(t, res.Counters.ListsChanged, "warnings: %v", res.Warnings)
		assert.Empty(t, res.Warnings)
	})
}

// expireWhileCopied copies keys whose TTLs run out during the copy.
func expireWhileCopied(t *testing.T, strategy transfer.Strategy) {
	r := newRig(t, "redis-7.0", "valkey-8.0")
	ctx := context.Background()
	const n = 16_000
	var cmds valkey.Commands
	for i := range n {
		if i%2 == 0 {
			cmds = append(cmds, r.sc.B().Hset().Key(fmt.Sprintf("exp:%d", i)).FieldValue().FieldValue("f", "v").Build())
			continue
		}
		cmds = append(cmds, r.sc.B().Set().Key(fmt.Sprintf("exp:%d", i)).Value("v").Build())
	}
	for i := range 300 {
		cmds = append(cmds, r.sc.B().Set().Key(fmt.Sprintf("keep:%d", i)).Value("kept").Build())
		cmds = append(cmds, r.sc.B().Set().Key(fmt.Sprintf("keep:ttl:%d", i)).Value("kept").Px(time.Hour).Build())
	}
	do(t, r.sc, cmds...)
	before := read(t, on(r.sc), 0)
	c := r.copier(t, transfer.Options{Strategy: strategy})

	// TTLs of 1-300 ms, set at once: they run out while the shard is
	// scanned and probed.
	ttls := map[string]int64{}
	cmds = cmds[:0]
	for i := range n {
		k := fmt.Sprintf("exp:%d", i)
		ttls[k] = int64(1 + i%300)
		cmds = append(cmds, r.sc.B().Pexpire().Key(k).Milliseconds(ttls[k]).Build())
	}
	// Meanwhile another client keeps writing strings that live 1 ms.
	stop := make(chan struct{})
	var writer sync.WaitGroup
	w := r.src.Client(t)
	writer.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			batch := make(valkey.Commands, 0, 50)
			for j := range 50 {
				batch = append(batch, w.B().Set().Key(fmt.Sprintf("ms:%d:%d", i, j)).Value("v").Px(time.Millisecond).Build())
			}
			w.DoMulti(ctx, batch...)
		}
	})
	do(t, r.sc, cmds...)
	res, err := copyShard(ctx, c, r.chunk())
	close(stop)
	writer.Wait()
	require.NoError(t, err)

	assertNoKeyWithoutTTL(t, r.dc, "exp:*")
	assertNoKeyWithoutTTL(t, r.dc, "ms:*")
	for _, k := range keys(t, r.dc, "exp:*") {
		assert.LessOrEqual(t, pttl(t, r.dc, k), ttls[k], "%s keeps at most its source TTL", k)
	}
	// The keys that do not expire arrived untouched.
	kvtest.AssertSameData(t, filter(before.keys, "keep:"), filter(snapshot(t, on(r.dc), 0), "keep:"), time.Since(before.at))
	assert.Zero(t, res.Counters.Failed, "errors: %v", res.Errors)
	assert.Equal(t, res.Scanned, res.Counters.Copied+res.Counters.Expired, "every scanned key is copied or counted as expired")
	assert.Positive(t, res.Counters.Expired, "keys expired after SCAN returned them")
}

func TestAKeyDeletedAfterSCANReturnedItIsRemovedFromTheTargetAndCountedAsVanished(t *testing.T) {
	t.Run("a big list deleted while it is streamed", func(t *testing.T) {
		r := newRig(t, "redis-7.0", "valkey-8.0")
		ctx := context.Background()
		fillList(t, r.sc, "big:list", "item-", 200_000)
		for i := range 20 {
			do(t, r.sc, r.sc.B().Set().Key(fmt.Sprintf("s:%d", i)).Value("v").Build())
		}
		// An older copy of the list, from an earlier run, is on the target.
		fillList(t, r.dc, "big:list", "old-", 10)
		c := r.copier(t, transfer.Options{})

		stop := make(chan struct{})
		deleted := watchTempKey(t, r.dst, stop, func() {
			r.sc.Do(ctx, r.sc.B().Del().Key("big:list").Build())
		})
		res, err := copyShard(ctx, c, r.chunk())
		close(stop)
		require.True(t, <-deleted, "the list was deleted while it was streamed")
		require.NoError(t, err)

		assertCopied(t, read(t, on(r.sc), 0), on(r.dc), 0)
		assert.Empty(t, keys(t, r.dc, transfer.TempPrefix+"*"), "temporary keys left")
		assert.EqualValues(t, 1, res.Counters.Expired, "the vanished list")
		assert.EqualValues(t, 20, res.Counters.Copied)
		assert.Zero(t, res.Counters.Failed, "errors: %v", res.Errors)
		assert.Zero(t, res.Counters.ListsChanged, "a deleted list is not a list that changed: %v", res.Warnings)
	})

	t.Run("lists deleted before a worker reads them", func(t *testing.T) {
		r := newRig(t, "valkey-8.0", "redis-7.0")
		ctx := context.Background()
		// More big lists than streaming workers (50): when the first one is
		// copied, at least 10 were scanned and not read yet.
		const lists = 70
		for i := range lists {
			fillList(t, r.sc, fmt.Sprintf("l:%d", i), "x", 2500)
		}
		before := snapshot(t, on(r.sc), 0)
		var (
			once   sync.Once
			delErr error
		)
		c := r.copier(t, transfer.Options{InFlight: 50, Progress: func(string, int, job.Counters) {
			once.Do(func() {
				cmds := make(valkey.Commands, lists)
				for i := range lists {
					cmds[i] = r.sc.B().Del().Key(fmt.Sprintf("l:%d", i)).Build()
				}
				for _, resp := range r.sc.DoMulti(ctx, cmds...) {
					delErr = errors.Join(delErr, resp.Error())
				}
			})
		}})
		res, err := copyShard(ctx, c, r.chunk())
		require.NoError(t, err)
		require.NoError(t, delErr, "delete the lists")

		// What was copied before the deletion is intact; nothing else is there.
		after := snapshot(t, on(r.dc), 0)
		assert.Len(t, after, int(res.Counters.Copied))
		for k, v := range after {
			assert.Equal(t, before[k], v, k)
		}
		assert.EqualValues(t, lists, res.Scanned)
		assert.EqualValues(t, lists, res.Counters.Copied+res.Counters.Expired)
		assert.GreaterOrEqual(t, res.Counters.Expired, int64(lists-50))
		assert.Zero(t, res.Counters.Failed, "errors: %v", res.Errors)
		assert.Zero(t, res.Counters.ListsChanged, "deleted lists are not lists that changed: %v", res.Warnings)
		assert.Empty(t, keys(t, r.dc, transfer.TempPrefix+"*"), "temporary keys left")
	})
}

func TestAListThatGrowsDuringTheCopyIsCopiedAndWarnedAbout(t *testing.T) {
	r := newRig(t, "redis-7.0", "valkey-8.0")
	ctx := context.Background()
	fillList(t, r.sc, "growing", "item-", 500_000)
	do(t, r.sc, r.sc.B().Set().Key("other").Value("v").Build())
	c := r.copier(t, transfer.Options{})

	stop := make(chan struct{})
	w := r.src.Client(t)
	pushed := watchTempKey(t, r.dst, stop, func() {
		for i := range 5 {
			w.Do(ctx, w.B().Rpush().Key("growing").Element(fmt.Sprintf("late-%d", i)).Build())
		}
	})
	res, err := copyShard(ctx, c, r.chunk())
	close(stop)
	require.True(t, <-pushed, "elements were pushed while the list was streamed")
	require.NoError(t, err)

	assert.EqualValues(t, 1, res.Counters.ListsChanged)
	require.Len(t, res.Warnings, 1)
	assert.Contains(t, res.Warnings[0], `"growing"`)
	assert.EqualValues(t, 2, res.Counters.Copied)
	assert.Zero(t, res.Counters.Failed)
	// The target holds a prefix of the source list, at least as long as it
	// was when the copy started.
	got, err := r.dc.Do(ctx, r.dc.B().Lrange().Key("growing").Start(0).Stop(-1).Build()).AsStrSlice()
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(got), 500_000)
	want, err := r.sc.Do(ctx, r.sc.B().Lrange().Key("growing").Start(0).Stop(int64(len(got)-1)).Build()).AsStrSlice()
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.Empty(t, keys(t, r.dc, transfer.TempPrefix+"*"), "temporary keys left")
}

func TestATargetThatDeniesEVALStillGetsEveryKeyWithItsTTL(t *testing.T) {
	t.Run("compound keys are finished with RENAME and PEXPIRE", func(t *testing.T) {
		r := newRig(t, "redis-7.0", "valkey-8.0",
			kvtest.WithACL("user default on nopass ~* &* +@all -eval -evalsha"))
		ctx := context.Background()
		n := seed(t, on(r.sc), 0, sample.Options{PerType: 5, Big: true, BigScale: 10})
		before := read(t, on(r.sc), 0)
		compound := 0
		for _, v := range before.keys {
			if v.Type != "string" {
				compound++
			}
		}
		require.Error(t, r.dc.Do(ctx, r.dc.B().Eval().Script("return 1").Numkeys(0).Build()).Error(), "the target denies EVAL")

		c := r.copier(t, transfer.Options{Strategy: transfer.StrategyCommands})
		res, err := copyShard(ctx, c, r.chunk())
		require.NoError(t, err)

		assertCopied(t, before, on(r.dc), 0)
		assert.EqualValues(t, n, res.Counters.Copied)
		assert.EqualValues(t, compound, res.Counters.EvalFallbacks, "every compound key finished without EVAL")
		assert.Zero(t, res.Counters.Failed, "errors: %v", res.Errors)
		assert.Empty(t, keys(t, r.dc, transfer.TempPrefix+"*"), "temporary keys left")
	})

	t.Run("a target that also denies PEXPIRE never gets a key without its TTL", func(t *testing.T) {
		r := newRig(t, "redis-7.0", "valkey-8.0",
			kvtest.WithACL("user default on nopass ~* &* +@all -eval -evalsha -pexpire"))
		ctx := context.Background()
		seed(t, on(r.sc), 0, sample.Options{PerType: 5})
		before := read(t, on(r.sc), 0)
		var withTTL int64
		for _, v := range before.keys {
			if v.Type != "string" && v.PTTL > 0 {
				withTTL++
			}
		}
		c := r.copier(t, transfer.Options{Strategy: transfer.StrategyCommands})
		res, err := copyShard(ctx, c, r.chunk())
		require.NoError(t, err)

		after := snapshot(t, on(r.dc), 0)
		for k, v := range before.keys {
			got, ok := after[k]
			switch {
			case v.Type != "string" && v.PTTL > 0:
				assert.False(t, ok && got.PTTL == -1, "%q has a TTL on the source and none on the target", k)
			default:
				assert.True(t, ok, "%q (%s) copied", k, v.Type)
			}
		}
		assert.Equal(t, withTTL, res.Counters.Failed, "the compound keys with a TTL fail, visibly")
		assert.Empty(t, keys(t, r.dc, transfer.TempPrefix+"*"), "temporary keys left")
	})
}

func TestATargetKilledMidChunkIsResumedWithoutLossOrTempKeys(t *testing.T) {
	r := newRig(t, "redis-7.0", "valkey-8.0",
		kvtest.WithConfig("appendonly", "yes"), kvtest.WithConfig("appendfsync", "always"))
	ctx := context.Background()
	seed(t, on(r.sc), 0, sample.Options{PerType: 10, Big: true, BigScale: 4})
	before := read(t, on(r.sc), 0)

	// Small chunks; small keys take SET and DUMP/RESTORE, so a temporary
	// key on the target means a big key is being streamed: kill the target
	// then.
	c := r.copier(t, transfer.Options{BatchSize: 20})
	lim := transfer.Limits{MaxKeys: 40}
	stop := make(chan struct{})
	killed := watchTempKey(t, r.dst, stop, r.dst.Kill)
	res, err := copyShard(ctx, c, r.chunk(), lim)
	close(stop)
	require.True(t, <-killed, "the target was killed while a big key was streamed")
	require.ErrorIs(t, err, transfer.ErrTransient)
	failed := res.Chunk // where the killed chunk started
	t.Logf("killed in the chunk that started at cursor %s", failed.Cursor)

	r.dst.Restart(t)
	// Resumed as `kvmigrate resume` or the next Lambda chunk does it: with
	// connections of its own (the old ones still hold the dead sockets).
	c = r.copier(t, transfer.Options{BatchSize: 20})
	dc := r.dst.Client(t)
	left := keys(t, dc, transfer.TempPrefix+"*")
	require.NotEmpty(t, left, "the killed chunk left temporary keys (appendfsync always kept them)")
	removed, err := c.SweepShard(ctx, failed)
	require.NoError(t, err)
	assert.EqualValues(t, len(left), removed, "the sweep removes the temporary keys the killed chunk left")

	res, err = copyShard(ctx, c, failed, lim)
	require.NoError(t, err)
	// The chunks done before the kill survived it (AOF): nothing is lost.
	assertCopied(t, before, on(dc), 0)
	assert.Zero(t, res.Counters.Failed, "errors: %v", res.Errors)
	assert.Empty(t, keys(t, dc, transfer.TempPrefix+"*"), "temporary keys left")
}

func TestACancelledChunkLeavesNoTemporaryKeyAndResumes(t *testing.T) {
	r := newRig(t, "redis-7.0", "valkey-8.0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seed(t, on(r.sc), 0, sample.Options{PerType: 10, Big: true, BigScale: 4})
	before := read(t, on(r.sc), 0)

	// Ctrl-C while big keys are streamed.
	c := r.copier(t, transfer.Options{Strategy: transfer.StrategyCommands})
	stop := make(chan struct{})
	cancelled := watchTempKey(t, r.dst, stop, cancel)
	res, err := copyShard(ctx, c, r.chunk())
	close(stop)
	require.True(t, <-cancelled, "cancelled while a key was streamed")
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, res.Done)
	assert.Empty(t, keys(t, r.dc, transfer.TempPrefix+"*"), "an interrupted stream removes its temporary key")

	res, err = copyShard(context.Background(), c, res.Chunk)
	require.NoError(t, err)
	assertCopied(t, before, on(r.dc), 0)
	assert.Zero(t, res.Counters.Failed, "errors: %v", res.Errors)
}

func TestOnConflictSkipKeepsTargetKeysAndReplaceOverwritesThem(t *testing.T) {
	// seedConflicts writes the source keys (no TTL) and older, different
	// versions of three of them on the target, with a TTL.
	seedConflicts := func(t *testing.T, r *rig) {
		do(t, r.sc,
			r.sc.B().Set().Key("str").Value("new").Build(),
			r.sc.B().Hset().Key("hash").FieldValue().FieldValue("a", "new").Build(),
			r.sc.B().Set().Key("fresh:str").Value("x").Build(),
			r.sc.B().Sadd().Key("fresh:set").Member("x").Build())
		fillList(t, r.sc, "big:list", "new-", 5000)
		do(t, r.dc,
			r.dc.B().Set().Key("str").Value("old").Px(time.Hour).Build(),
			r.dc.B().Hset().Key("hash").FieldValue().FieldValue("a", "old").FieldValue("b", "old").Build(),
			r.dc.B().Pexpire().Key("hash").Milliseconds(3_600_000).Build())
		fillList(t, r.dc, "big:list", "old-", 3)
		do(t, r.dc, r.dc.B().Pexpire().Key("big:list").Milliseconds(3_600_000).Build())
	}
	for _, strategy := range []transfer.Strategy{transfer.StrategyAuto, transfer.StrategyCommands} {
		t.Run("skip leaves existing keys untouched with "+string(strategy), func(t *testing.T) {
			r := newRig(t, "redis-7.0", "valkey-8.0")
			seedConflicts(t, r)
			dstSide := on(r.dc)
			old := snapshot(t, dstSide, 0)
			c := r.copier(t, transfer.Options{Strategy: strategy, OnConflict: transfer.ConflictSkip})
			res, err := copyShard(context.Background(), c, r.chunk())
			require.NoError(t, err)

			after := snapshot(t, dstSide, 0)
			for _, k := range []string{"str", "hash", "big:list"} {
				assert.Equal(t, old[k].Digest, after[k].Digest, "%s keeps its value", k)
				assert.Positive(t, after[k].PTTL, "%s keeps its TTL", k)
			}
			assert.Contains(t, after, "fresh:str")
			assert.Contains(t, after, "fresh:set")
			assert.EqualValues(t, 3, res.Counters.Skipped)
			assert.EqualValues(t, 2, res.Counters.Copied)
		})
		t.Run("replace overwrites them and drops a TTL the source has not with "+string(strategy), func(t *testing.T) {
			r := newRig(t, "redis-7.0", "valkey-8.0")
			seedConflicts(t, r)
			before := read(t, on(r.sc), 0)
			c := r.copier(t, transfer.Options{Strategy: strategy})
			res, err := copyShard(context.Background(), c, r.chunk())
			require.NoError(t, err)

			assertCopied(t, before, on(r.dc), 0)
			for _, k := range []string{"str", "hash", "big:list"} {
				assert.EqualValues(t, -1, pttl(t, r.dc, k), "%s has no TTL, as on the source", k)
			}
			assert.EqualValues(t, 5, res.Counters.Copied)
			assert.Zero(t, res.Counters.Skipped)
		})
	}
}

// commandCalls reads INFO commandstats: calls per command.
func commandCalls(t *testing.T, c valkey.Client) map[string]int64 {
	t.Helper()
	info, err := c.Do(context.Background(), c.B().Info().Section("commandstats").Build()).ToString()
	require.NoError(t, err)
	out := map[string]int64{}
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.SplitN(rest, ",", 2)[0], 10, 64)
		require.NoError(t, err)
		out[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return out
}

// dataCalls drops the connection and administration commands from calls.
func dataCalls(calls map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for name, n := range calls {
		switch {
		case name == "hello", name == "ping", name == "select", name == "info", name == "auth",
			strings.HasPrefix(name, "client|"), strings.HasPrefix(name, "config|"):
		default:
			out[name] = n
		}
	}
	return out
}

func TestMaxOpsRateLimitsTheSource(t *testing.T) {
	const n = 3000
	setup := func(t *testing.T) *rig {
		r := newRig(t, "redis-7.0", "valkey-8.0")
		cmds := make(valkey.Commands, 0, 2*n)
		for i := range n {
			cmds = append(cmds, r.sc.B().Set().Key(fmt.Sprintf("k:%d", i)).Value(strconv.Itoa(i)).Build())
		}
		// Lookups finish the keyspace's incremental rehashing, so that SCAN
		// walks the same pages for the test and for the copy.
		for i := range n {
			cmds = append(cmds, r.sc.B().Exists().Key(fmt.Sprintf("k:%d", i)).Build())
		}
		do(t, r.sc, cmds...)
		return r
	}
	scanPages := func(t *testing.T, c valkey.Client) int64 {
		var pages int64
		for cursor := "0"; ; {
			arr, err := c.Do(context.Background(), c.B().Arbitrary("SCAN").Args(cursor, "COUNT", "500").Build()).ToArray()
			require.NoError(t, err)
			pages++
			if cursor, _ = arr[0].ToString(); cursor == "0" {
				return pages
			}
		}
	}

	t.Run("every key is probed once and nothing more is read", func(t *testing.T) {
		r := setup(t)
		pages := scanPages(t, r.sc)
		require.Equal(t, pages, scanPages(t, r.sc), "the SCAN pages are stable")
		c := r.copier(t, transfer.Options{MaxOps: 2000})
		do(t, r.sc, r.sc.B().ConfigResetstat().Build())

		res, err := copyShard(context.Background(), c, r.chunk())
		require.NoError(t, err)
		assert.Equal(t, map[string]int64{"scan": pages, "getrange": n, "pttl": n}, dataCalls(commandCalls(t, r.sc)))
		assert.EqualValues(t, n, res.Counters.Copied)
		assertCopied(t, read(t, on(r.sc), 0), on(r.dc), 0)
	})

	t.Run("cancelling the context stops a chunk that waits for the limiter", func(t *testing.T) {
		r := setup(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var once sync.Once
		c := r.copier(t, transfer.Options{MaxOps: 2000, Progress: func(string, int, job.Counters) {
			once.Do(cancel)
		}})
		do(t, r.sc, r.sc.B().ConfigResetstat().Build())

		res, err := c.CopyChunk(ctx, r.chunk(), transfer.Limits{})
		require.ErrorIs(t, err, context.Canceled)
		assert.NotErrorIs(t, err, transfer.ErrTransient, "a cancelled chunk is not a transient failure")
		assert.False(t, res.Done)
		// The limiter held back the later batches: they were never read.
		calls := dataCalls(commandCalls(t, r.sc))
		assert.Less(t, calls["getrange"], int64(n))
		assert.Less(t, res.Counters.Copied, int64(n))
		// What did reach the target is exact.
		src := snapshot(t, on(r.sc), 0)
		got := snapshot(t, on(r.dc), 0)
		assert.GreaterOrEqual(t, len(got), int(res.Counters.Copied))
		assert.Less(t, len(got), n)
		for k, v := range got {
			assert.Equal(t, src[k], v, k)
		}
	})
}

func TestRerunningAChunkFromTheSameCursorConverges(t *testing.T) {
	for _, strategy := range []transfer.Strategy{transfer.StrategyAuto, transfer.StrategyCommands} {
		t.Run("with "+string(strategy), func(t *testing.T) {
			r := newRig(t, "redis-7.0", "valkey-8.0")
			ctx := context.Background()
			srcSide := on(r.sc)
			dstSide := on(r.dc)
			seed(t, srcSide, 0, sample.Options{PerType: 5, Big: true, BigScale: 10})
			before := read(t, srcSide, 0)
			c := r.copier(t, transfer.Options{Strategy: strategy})
			_, err := copyShard(ctx, c, r.chunk())
			require.NoError(t, err)
			assertCopied(t, before, dstSide, 0)

			// Damage the target: per type, delete a key, change another,
			// drop a TTL and add one; turn a hash into a string; change the
			// big list and delete the big hash.
			plain, withTTL := map[string][]string{}, map[string][]string{}
			for _, k := range sortedNames(before.keys) {
				if v := before.keys[k]; strings.HasPrefix(k, "big:") {
					continue
				} else if v.PTTL > 0 {
					withTTL[v.Type] = append(withTTL[v.Type], k)
				} else {
					plain[v.Type] = append(plain[v.Type], k)
				}
			}
			b := r.dc.B()
			var cmds valkey.Commands
			for typ, ks := range plain {
				require.GreaterOrEqual(t, len(ks), 3, typ)
				require.GreaterOrEqual(t, len(withTTL[typ]), 2, typ)
				cmds = append(cmds, b.Del().Key(ks[0]).Build())
				switch typ {
				case "string":
					cmds = append(cmds, b.Set().Key(ks[1]).Value("changed").Build())
				case "hash":
					cmds = append(cmds, b.Hset().Key(ks[1]).FieldValue().FieldValue("extra", "x").Build())
				case "list":
					cmds = append(cmds, b.Rpush().Key(ks[1]).Element("extra").Build())
				case "set":
					cmds = append(cmds, b.Sadd().Key(ks[1]).Member("extra").Build())
				case "zset":
					cmds = append(cmds, b.Zadd().Key(ks[1]).ScoreMember().ScoreMember(42, "extra").Build())
				case "stream":
					cmds = append(cmds, b.Xadd().Key(ks[1]).Id("*").FieldValue().FieldValue("extra", "x").Build())
				}
				cmds = append(cmds, b.Pexpire().Key(ks[2]).Milliseconds(7_200_000).Build(),
					b.Persist().Key(withTTL[typ][0]).Build())
			}
			retyped := withTTL["hash"][1]
			cmds = append(cmds, b.Del().Key(retyped).Build(), b.Set().Key(retyped).Value("now a string").Build(),
				b.Lset().Key("big:list").Index(0).Element("changed").Build(),
				b.Del().Key("big:hash").Build())
			do(t, r.dc, cmds...)
			damaged := snapshot(t, dstSide, 0)
			differ := 0
			for k, v := range before.keys {
				if d, ok := damaged[k]; !ok || d.Type != v.Type || d.Digest != v.Digest || (d.PTTL == -1) != (v.PTTL == -1) {
					differ++
				}
			}
			require.Equal(t, 4*len(plain)+3, differ, "keys that differ on the target before the rerun")

			res, err := copyShard(ctx, c, r.chunk())
			require.NoError(t, err)
			assertCopied(t, before, dstSide, 0)
			assert.EqualValues(t, len(before.keys), res.Counters.Copied)
			assert.Empty(t, keys(t, r.dc, transfer.TempPrefix+"*"), "temporary keys left")
		})
	}
}

func sortedNames(m map[string]kvtest.Value) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestNewRejectsBadOptionsNamingEveryProblem(t *testing.T) {
	good := transfer.Options{JobID: "job-1"}
	cases := []struct {
		name  string
		edit  func(*transfer.Options)
		names []string
	}{
		{"an unknown strategy is named", func(o *transfer.Options) { o.Strategy = "fast" }, []string{`strategy "fast"`}},
		{"an unknown type filter is named", func(o *transfer.Options) { o.Type = "json" }, []string{`type "json"`}},
		{"a job id with a space is refused", func(o *transfer.Options) { o.JobID = "bad id" }, []string{`job id "bad id"`}},
		{"a job id with '_' is refused: job a's sweep would match job a_b's temporary keys", func(o *transfer.Options) { o.JobID = "a_b" }, []string{`job id "a_b"`}},
		{"a job id with glob characters is refused", func(o *transfer.Options) { o.JobID = "a*" }, []string{`job id "a*"`}},
		{"an empty job id is refused", func(o *transfer.Options) { o.JobID = "" }, []string{`job id ""`}},
		{"an unknown conflict policy is named", func(o *transfer.Options) { o.OnConflict = "merge" }, []string{`on-conflict "merge"`}},
		{"a negative rate is refused", func(o *transfer.Options) { o.MaxOps = -1 }, []string{"max-ops"}},
		{"every problem is named at once", func(o *transfer.Options) {
			o.Strategy, o.Type, o.JobID, o.OnConflict, o.MaxOps = "fast", "json", "bad id", "merge", -5
		}, []string{`strategy "fast"`, `type "json"`, `job id "bad id"`, `on-conflict "merge"`, "max-ops"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			c, err := transfer.New(nil, nil, o)
			require.ErrorIs(t, err, transfer.ErrInvalidOptions)
			assert.Nil(t, c)
			for _, want := range tc.names {
				assert.Contains(t, err.Error(), want)
			}
		})
	}
	t.Run("good options are accepted", func(t *testing.T) {
		c, err := transfer.New(nil, nil, good)
		require.NoError(t, err)
		assert.NotNil(t, c)
	})
}

func TestSweepingRemovesOnlyTheTemporaryKeysOfItsJobAndShard(t *testing.T) {
	r := newRig(t, "redis-7.0", "valkey-8.0")
	ctx := context.Background()
	c := r.copier(t, transfer.Options{JobID: "a"})
	ch := r.chunk()
	shard := transfer.ShardTag(ch.Node, ch.DB)
	other := transfer.ShardTag("10.0.0.1:6379", 0)
	mine := transfer.TempKey("a", shard, "k1")
	mineElsewhere := transfer.TempKey("a", other, "k2")
	theirs := []string{
		transfer.TempKey("a-b", shard, "k3"), transfer.TempKey("ab", shard, "k4"),
		transfer.TempKey("b", shard, "k5"), "a_user_key",
	}
	for _, k := range append([]string{mine, mineElsewhere}, theirs...) {
		do(t, r.dc, r.dc.B().Set().Key(k).Value("v").Build())
	}

	n, err := c.SweepShard(ctx, ch)
	require.NoError(t, err)
	assert.EqualValues(t, 1, n)
	n, err = c.SweepJob(ctx, []int{0})
	require.NoError(t, err)
	assert.EqualValues(t, 1, n)
	sort.Strings(theirs)
	assert.Equal(t, theirs, keys(t, r.dc, "*"), "the other jobs' keys and the user's stay")
}

// An ACL that denies DUMP on the source or RESTORE on the target turns the
// fast path off for the shard: every key still arrives, by type commands.
func TestAnACLThatDeniesDUMPOrRESTOREFallsBackToTypeCommands(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst []kvtest.Option
	}{
		{"target denies RESTORE", nil, []kvtest.Option{kvtest.WithACL("user default on nopass ~* &* +@all -restore")}},
		{"source denies DUMP", []kvtest.Option{kvtest.WithACL("user default on nopass ~* &* +@all -dump")}, nil},
	} {
		for _, strategy := range []transfer.Strategy{transfer.StrategyAuto, transfer.StrategyDump} {
			t.Run(tc.name+" with "+string(strategy), func(t *testing.T) {
				t.Parallel()
				src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"), tc.src...)
				dst := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"), tc.dst...)
				r := &rig{src: src, dst: dst, sc: src.Client(t), dc: dst.Client(t)}
				ctx := context.Background()
				n := seed(t, on(r.sc), 0, sample.Options{PerType: 5, Big: true, BigScale: 20})
				before := read(t, on(r.sc), 0)

				res, err := copyShard(ctx, r.copier(t, transfer.Options{Strategy: strategy}), r.chunk())
				require.NoError(t, err)
				assert.Zero(t, res.Counters.Failed, "errors: %v", res.Errors)
				assert.EqualValues(t, n, res.Counters.Copied)
				assert.Positive(t, res.Counters.Fallbacks, "the denied fast path is counted")
				assertCopied(t, before, on(r.dc), 0)
				assert.Empty(t, keys(t, r.dc, transfer.TempPrefix+"*"), "temporary keys left")
			})
		}
	}
}

// A chunk that begins after its deadline (a slow start, a loaded machine)
// still copies one page: a loop of such chunks always advances.
func TestAChunkThatBeginsPastItsDeadlineStillMovesOnByOnePage(t *testing.T) {
	r := newRig(t, "redis-7.0", "valkey-8.0")
	ctx := context.Background()
	var cmds valkey.Commands
	for i := range 3000 {
		cmds = append(cmds, r.sc.B().Set().Key(fmt.Sprintf("k:%d", i)).Value("v").Build())
	}
	do(t, r.sc, cmds...)
	c := r.copier(t, transfer.Options{})
	ch := r.chunk()
	var copied int64
	chunks := 1
	for ; ; chunks++ {
		res, err := c.CopyChunk(ctx, ch, transfer.Limits{Deadline: time.Now().Add(-time.Second)})
		require.NoError(t, err)
		copied += res.Counters.Copied
		if res.Done {
			break
		}
		// One SCAN call: the cursor moves on (the page itself may be empty:
		// SCAN may answer no key with a cursor that is not done).
		require.NotEqual(t, "0", res.Cursor)
		require.NotEqual(t, ch.Cursor, res.Cursor, "chunk %d did not move the cursor", chunks)
		require.Less(t, chunks, 200)
		ch = res.Chunk
	}
	assert.GreaterOrEqual(t, chunks, 3, "each chunk stopped after its first page (SCAN pages of about 500 keys)")
	assert.EqualValues(t, 3000, copied)
	assert.Len(t, keys(t, r.dc, "k:*"), 3000)
}
