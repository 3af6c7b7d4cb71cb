package transfer

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"

	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/job"
)

// smallMaxElements: in commands mode, hashes, lists, sets and sorted sets
// up to this many elements are copied in batches (one source pipeline that
// reads each key whole, one target pipeline with one atomic script per
// key) instead of being streamed through a temporary key.
const smallMaxElements = 1_000

// smallMaxArgs bounds the elements handed to the script (Lua's unpack
// fails somewhere near 8,000 values): a key that grew past it since its
// length was read is streamed instead.
const smallMaxArgs = 4 * smallMaxElements

// smallScriptBody writes one key whole, atomically and without a temporary
// key: KEYS[1] the key; ARGV[1] the TTL in ms (0: none), ARGV[2] '1' to
// leave an existing key alone, ARGV[3] the write command (HSET, RPUSH,
// SADD, ZADD), ARGV[4...] its arguments. It returns 1 when written, 0 when
// skipped.
const smallScriptBody = `
if ARGV[2] == '1' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
else
  redis.call('DEL', KEYS[1])
end
redis.call(ARGV[3], KEYS[1], unpack(ARGV, 4))
if tonumber(ARGV[1]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1`

var smallScriptSHA = func() string {
	sum := sha1.Sum([]byte(smallScriptBody))
	return hex.EncodeToString(sum[:])
}()

var smallWrite = map[string]string{"hash": "HSET", "list": "RPUSH", "set": "SADD", "zset": "ZADD"}

// isSmall tells whether classify may hand a key of this kind and size to
// copySmall (commands mode).
func (r *chunkRun) isSmall(kind string, size int64) bool {
	if _, ok := smallWrite[kind]; !ok || size > smallMaxElements || r.c.evalDenied.Load() {
		return false
	}
	// Field TTLs are carried by the streaming path.
	return kind != "hash" || !r.c.opts.SourceFieldTTL
}

// copySmall copies small compound keys: each is read whole with its PTTL
// after it in one source pipeline, then written by one script call per key
// in one target pipeline.
func (r *chunkRun) copySmall(ctx context.Context, items []keyJob) {
	if len(items) == 0 || ctx.Err() != nil {
		return
	}
	if err := r.c.wait(ctx, 2*len(items)); err != nil {
		return
	}
	cmds := make(valkey.Commands, 0, 2*len(items))
	for _, it := range items {
		var read valkey.Completed
		switch it.kind {
		case "hash":
			read = r.src.B().Hscan().Key(it.key).Cursor(0).Count(smallMaxElements).Build()
		case "list":
			read = r.src.B().Lrange().Key(it.key).Start(0).Stop(-1).Build()
		case "set":
			read = r.src.B().Smembers().Key(it.key).Build()
		case "zset":
			read = r.src.B().Zrange().Key(it.key).Min("0").Max("-1").Withscores().Build()
		}
		cmds = append(cmds, read, r.src.B().Pttl().Key(it.key).Build())
	}
	resps := r.src.DoMulti(ctx, cmds...)

	skip := "0"
	if r.c.opts.OnConflict == ConflictSkip {
		skip = "1"
	}
	var (
		evals   valkey.Commands
		args    [][]string
		written []keyJob
		sizes   []int64
		gone    []string
	)
	for i, it := range items {
		elems, err := smallElements(it.kind, resps[2*i])
		pttl, perr := resps[2*i+1].AsInt64()
		switch {
		case errors.Is(err, errNotWhole):
			r.stream(ctx, it)
			continue
		case isWrongType(err):
			// Replaced by a key of another type: as the streaming path does.
			gone = append(gone, it.key)
			continue
		case err != nil:
			r.fail(it.key, err)
			continue
		case perr != nil:
			r.fail(it.key, perr)
			continue
		case len(elems) == 0 || expired(pttl):
			gone = append(gone, it.key)
			continue
		case len(elems) > smallMaxArgs:
			r.stream(ctx, it)
			continue
		}
		size := int64(len(it.key))
		for _, e := range elems {
			size += int64(len(e))
		}
		a := make([]string, 0, 3+len(elems))
		a = append(a, strconv.FormatInt(max(pttl, 0), 10), skip, smallWrite[it.kind])
		if it.kind == "zset" {
			// ZADD takes score, member: scores stay the server's own text.
			for j := 0; j+1 < len(elems); j += 2 {
				a = append(a, elems[j+1], elems[j])
			}
		} else {
			a = append(a, elems...)
		}
		evals = append(evals, r.dst.B().Evalsha().Sha1(smallScriptSHA).Numkeys(1).Key(it.key).Arg(a...).Build())
		args = append(args, a)
		written = append(written, it)
		sizes = append(sizes, size)
	}
	r.vanished(ctx, gone)
	if len(evals) == 0 {
		return
	}
	out := r.dst.DoMulti(ctx, evals...)
	// Scripts the target does not know yet (first use, restart, SCRIPT
	// FLUSH) are sent again with their body.
	var retry valkey.Commands
	var retryIdx []int
	for i, resp := range out {
		if isNoScript(resp.Error()) {
			retry = append(retry, r.dst.B().Eval().Script(smallScriptBody).Numkeys(1).Key(written[i].key).Arg(args[i]...).Build())
			retryIdx = append(retryIdx, i)
		}
	}
	if len(retry) > 0 {
		for j, resp := range r.dst.DoMulti(ctx, retry...) {
			out[retryIdx[j]] = resp
		}
	}
	var delta job.Counters
	for i, resp := range out {
		it := written[i]
		res, err := resp.AsInt64()
		switch {
		case err == nil && res == 1:
			delta.Copied++
			delta.Bytes += sizes[i]
		case err == nil:
			delta.Skipped++
		case isNoPerm(err):
			if !r.c.evalDenied.Swap(true) {
				r.c.log.Warn("target denies EVAL; finishing compound keys with PEXPIRE on the temporary key, then RENAME")
			}
			r.stream(ctx, it)
		default:
			r.fail(it.key, err)
		}
	}
	r.add(delta)
}

// errNotWhole: one HSCAN call did not return the whole hash; the key is
// streamed instead.
var errNotWhole = errors.New("hash not read whole in one HSCAN call")

// smallElements reads the reply of the whole-key read: [field, value, ...]
// for a hash, [member, score, ...] for a sorted set, the elements for a
// list or set.
func smallElements(kind string, resp valkey.ValkeyResult) ([]string, error) {
	switch kind {
	case "hash":
		e, err := resp.AsScanEntry()
		if err != nil {
			return nil, err
		}
		if e.Cursor != 0 {
			return nil, errNotWhole
		}
		return e.Elements, nil
	case "zset":
		arr, err := resp.ToArray()
		if err != nil {
			return nil, err
		}
		return flattenPairs(arr)
	default:
		return resp.AsStrSlice()
	}
}

func isNoScript(err error) bool {
	verr, ok := valkey.IsValkeyErr(err)
	return ok && strings.HasPrefix(verr.Error(), "NOSCRIPT")
}

// NeedsTempKey tells whether the copy writes a key of this type and size
// (elements; bytes for a string) through a temporary key that it then
// renames into place, as it routes keys today: big strings; with the
// DUMP/RESTORE fast path, compound keys above its element bound; without
// it, streams and the compound keys above the batched small-key bound.
// (Hashes with field TTLs always take a temporary key; module types
// never do.)
func NeedsTempKey(kind string, size int64, fastPath bool) bool {
	if kind == "string" {
		return size >= inlineMax
	}
	if _, known := lenCommand[kind]; !known {
		return false
	}
	if fastPath {
		return size > dumpMaxElements
	}
	_, small := smallWrite[kind]
	return !small || size > smallMaxElements
}
