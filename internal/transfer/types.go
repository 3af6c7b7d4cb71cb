package transfer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/job"
)

type errUnsupportedType string

func (e errUnsupportedType) Error() string {
	return fmt.Sprintf("type %q has no type commands to copy it with, and DUMP/RESTORE cannot carry it to this target (RDB version or ACL)", string(e))
}

// errVanished: the source key disappeared while it was being copied.
var errVanished = errors.New("key vanished during copy")

// copied is what streaming one key moved.
type copied struct {
	bytes         int64
	fieldTTLsLost int64
	pendingLost   int64
}

// copyKey streams one key into a temporary key on the target, then moves
// it into place with its TTL.
func (r *chunkRun) copyKey(ctx context.Context, kj keyJob) {
	if ctx.Err() != nil {
		return
	}
	tmp := TempKey(r.c.opts.JobID, r.shard, kj.key)
	// tmp counts as left on the target until it is renamed into place or
	// deleted; CopyChunk reports what is left so the shard gets swept.
	r.tempLeft.Add(1)
	var (
		n   copied
		err error
	)
	switch kj.kind {
	case "string":
		n, err = r.copyString(ctx, kj.key, tmp)
	case "hash":
		n, err = r.copyHash(ctx, kj.key, tmp)
	case "list":
		n, err = r.copyList(ctx, kj.key, tmp)
	case "set":
		n, err = r.copySet(ctx, kj.key, tmp)
	case "zset":
		n, err = r.copyZSet(ctx, kj.key, tmp)
	case "stream":
		n, err = r.copyStream(ctx, kj.key, tmp)
	default:
		err = errUnsupportedType(kj.kind)
	}
	if err == nil {
		err = r.finish(ctx, kj.key, tmp, n)
	}
	if err == nil {
		r.tempLeft.Add(-1) // renamed into place (or deleted, in skip mode)
		return
	}
	// A temp key that cannot be deleted now is swept at the end of the
	// shard (TempKeysLeft) or when the job resumes.
	if r.dst.Do(context.WithoutCancel(ctx), r.dst.B().Del().Key(tmp).Build()).Error() == nil {
		r.tempLeft.Add(-1)
	}
	if errors.Is(err, errVanished) || isWrongType(err) {
		r.vanished(ctx, []string{kj.key})
		return
	}
	r.fail(kj.key, err)
}

// finalScript renames the temporary key into place and sets the TTL in one
// atomic step; in skip mode it leaves an existing key alone.
var finalScript = valkey.NewLuaScript(`
if ARGV[2] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('RENAME', KEYS[1], KEYS[2])
if tonumber(ARGV[1]) > 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return 1`)

// finish reads the source TTL last (so the copy's own duration is not
// added to it) and moves tmp to key.
func (r *chunkRun) finish(ctx context.Context, key, tmp string, n copied) error {
	if err := r.c.wait(ctx, 1); err != nil {
		return err
	}
	pttl, err := r.src.Do(ctx, r.src.B().Pttl().Key(key).Build()).AsInt64()
	if err != nil {
		return err
	}
	if expired(pttl) {
		return errVanished
	}
	ttl := max(pttl, 0)
	skip := r.c.opts.OnConflict == ConflictSkip
	moved := true
	var evalFallback int64
	if !r.c.evalDenied.Load() {
		flag := "0"
		if skip {
			flag = "1"
		}
		res, err := finalScript.Exec(ctx, r.dst, []string{tmp, key}, []string{strconv.FormatInt(ttl, 10), flag}).AsInt64()
		switch {
		case err == nil:
			moved = res == 1
		case isNoPerm(err):
			if !r.c.evalDenied.Swap(true) {
				r.c.log.Warn("target denies EVAL; finishing compound keys with PEXPIRE on the temporary key, then RENAME")
			}
		case isNoSuchKey(err):
			return errVanished
		default:
			return err
		}
	}
	if r.c.evalDenied.Load() {
		evalFallback = 1
		if moved, err = r.expireThenRename(ctx, key, tmp, ttl, skip); err != nil {
			return err
		}
	}
	delta := job.Counters{EvalFallbacks: evalFallback, FieldTTLsDropped: n.fieldTTLsLost, PendingNotCarried: n.pendingLost}
	if moved {
		delta.Copied, delta.Bytes = 1, n.bytes+int64(len(key))
	} else {
		delta.Skipped = 1
	}
	r.add(delta)
	return nil
}

// expireThenRename finishes a key without EVAL. The TTL goes on tmp first
// and RENAME carries it over, so the key never shows on the target without
// its TTL: not when PEXPIRE fails, nor when this process or the target dies
// between the two commands (RENAME then PEXPIRE would leave a key that
// lives for ever there).
func (r *chunkRun) expireThenRename(ctx context.Context, key, tmp string, ttl int64, skip bool) (bool, error) {
	if ttl > 0 {
		if err := r.dst.Do(ctx, r.dst.B().Pexpire().Key(tmp).Milliseconds(ttl).Build()).Error(); err != nil {
			return false, fmt.Errorf("PEXPIRE before RENAME: %w", err)
		}
	}
	if skip {
		ok, err := r.dst.Do(ctx, r.dst.B().Renamenx().Key(tmp).Newkey(key).Build()).AsBool()
		if err != nil {
			if isNoSuchKey(err) { // tmp expired: so did the source key
				return false, errVanished
			}
			return false, err
		}
		if !ok {
			r.dst.Do(ctx, r.dst.B().Del().Key(tmp).Build())
			return false, nil
		}
		return true, nil
	}
	if err := r.dst.Do(ctx, r.dst.B().Rename().Key(tmp).Newkey(key).Build()).Error(); err != nil {
		if isNoSuchKey(err) {
			return false, errVanished
		}
		return false, err
	}
	return true, nil
}

func isNoPerm(err error) bool {
	verr, ok := valkey.IsValkeyErr(err)
	return ok && strings.HasPrefix(verr.Error(), "NOPERM")
}

func isNoSuchKey(err error) bool {
	verr, ok := valkey.IsValkeyErr(err)
	return ok && strings.Contains(strings.ToLower(verr.Error()), "no such key")
}

// write sends one write command for tmp and checks it. Once sent, it waits
// for the reply even if ctx is cancelled meanwhile: valkey-go spreads
// commands over several connections, so a write abandoned on one could run
// after copyKey's cleanup DEL on another and leave the temporary key (a
// whole partial copy of a big key) on the target. The connection's write
// timeout bounds the wait; the next read notices the cancellation.
func (r *chunkRun) write(ctx context.Context, cmd valkey.Completed) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return r.dst.Do(context.WithoutCancel(ctx), cmd).Error()
}

// writeAll is write for a pipeline of writes to tmp; what names them in
// the error.
func (r *chunkRun) writeAll(ctx context.Context, what string, cmds valkey.Commands) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(cmds) == 0 {
		return nil
	}
	for _, resp := range r.dst.DoMulti(context.WithoutCancel(ctx), cmds...) {
		if err := resp.Error(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return nil
}

// read sends one read command to the source under the rate limit.
func (r *chunkRun) read(ctx context.Context, cmd valkey.Completed) valkey.ValkeyResult {
	_ = r.c.wait(ctx, 1) // fails only when ctx is done, and then so does Do
	return r.src.Do(ctx, cmd)
}

// copyString streams a string of any size in bigChunk pieces.
func (r *chunkRun) copyString(ctx context.Context, key, tmp string) (copied, error) {
	var n copied
	for off := int64(0); ; off += bigChunk {
		part, err := r.read(ctx, r.src.B().Getrange().Key(key).Start(off).End(off+bigChunk-1).Build()).ToString()
		if err != nil {
			return n, rerr(ctx, err)
		}
		if off == 0 {
			err = r.write(ctx, r.dst.B().Set().Key(tmp).Value(part).Build())
		} else if part != "" {
			err = r.write(ctx, r.dst.B().Append().Key(tmp).Value(part).Build())
		}
		if err != nil {
			return n, err
		}
		n.bytes += int64(len(part))
		if len(part) < bigChunk {
			return n, nil
		}
	}
}

// rerr maps a read error: a cancelled context stays one.
func rerr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func (r *chunkRun) copyHash(ctx context.Context, key, tmp string) (copied, error) {
	var n copied
	written, err := r.scanPages(ctx, func(cursor uint64) valkey.Completed {
		return r.src.B().Hscan().Key(key).Cursor(cursor).Count(elemChunk).Build()
	}, func(pairs []string) error {
		fv := r.dst.B().Hset().Key(tmp).FieldValue()
		for i := 0; i+1 < len(pairs); i += 2 {
			fv = fv.FieldValue(pairs[i], pairs[i+1])
			n.bytes += int64(len(pairs[i]) + len(pairs[i+1]))
		}
		if err := r.write(ctx, fv.Build()); err != nil {
			return err
		}
		if r.c.opts.SourceFieldTTL {
			return r.fieldTTLs(ctx, key, tmp, pairs, &n)
		}
		return nil
	})
	if err == nil && !written {
		err = errVanished
	}
	return n, err
}

// scanPages runs a *SCAN cursor loop (cmd builds the command for a
// cursor) and hands each non-empty page to page. It reports whether any
// page had elements.
func (r *chunkRun) scanPages(ctx context.Context, cmd func(cursor uint64) valkey.Completed, page func([]string) error) (bool, error) {
	written := false
	for cursor := uint64(0); ; {
		p, err := r.read(ctx, cmd(cursor)).AsScanEntry()
		if err != nil {
			return written, rerr(ctx, err)
		}
		if len(p.Elements) > 0 {
			if err := page(p.Elements); err != nil {
				return written, err
			}
			written = true
		}
		if cursor = p.Cursor; cursor == 0 {
			return written, nil
		}
	}
}

// fieldTTLs carries per-field expiry of one HSCAN page (field/value pairs)
// from key to tmp, or counts it as lost when the target has no field TTLs.
func (r *chunkRun) fieldTTLs(ctx context.Context, key, tmp string, pairs []string, n *copied) error {
	fields := make([]string, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		fields = append(fields, pairs[i])
	}
	ats, err := r.read(ctx, r.src.B().Hpexpiretime().Key(key).Fields().Numfields(int64(len(fields))).Field(fields...).Build()).AsIntSlice()
	if err != nil {
		return rerr(ctx, err)
	}
	byTime := map[int64][]string{}
	var gone []string
	for i, at := range ats {
		switch {
		case at == -2: // expired since HSCAN read it
			gone = append(gone, fields[i])
		case at > 0:
			byTime[at] = append(byTime[at], fields[i])
		}
	}
	if len(gone) > 0 {
		if err := r.write(ctx, r.dst.B().Hdel().Key(tmp).Field(gone...).Build()); err != nil {
			return err
		}
	}
	if !r.c.opts.TargetFieldTTL {
		for _, f := range byTime {
			n.fieldTTLsLost += int64(len(f))
		}
		return nil
	}
	cmds := make(valkey.Commands, 0, len(byTime))
	for at, f := range byTime {
		cmds = append(cmds, r.dst.B().Hpexpireat().Key(tmp).UnixTimeMilliseconds(at).Fields().Numfields(int64(len(f))).Field(f...).Build())
	}
	return r.writeAll(ctx, "HPEXPIREAT", cmds)
}

func (r *chunkRun) copyList(ctx context.Context, key, tmp string) (copied, error) {
	var n copied
	before, err := r.read(ctx, r.src.B().Llen().Key(key).Build()).AsInt64()
	if err != nil {
		return n, rerr(ctx, err)
	}
	var total int64
	for start := int64(0); ; start += elemChunk {
		vals, err := r.read(ctx, r.src.B().Lrange().Key(key).Start(start).Stop(start+elemChunk-1).Build()).AsStrSlice()
		if err != nil {
			return n, rerr(ctx, err)
		}
		if len(vals) > 0 {
			if err := r.write(ctx, r.dst.B().Rpush().Key(tmp).Element(vals...).Build()); err != nil {
				return n, err
			}
			total += int64(len(vals))
			for _, v := range vals {
				n.bytes += int64(len(v))
			}
		}
		if len(vals) < elemChunk {
			break
		}
	}
	if total == 0 {
		return n, errVanished
	}
	after, err := r.read(ctx, r.src.B().Llen().Key(key).Build()).AsInt64()
	if err != nil {
		return n, rerr(ctx, err)
	}
	if after == 0 {
		// Deleted or expired while it was read (a list is never empty):
		// it vanished, it did not change.
		return n, errVanished
	}
	if after != before || after != total {
		r.add(job.Counters{ListsChanged: 1})
		r.warn(key, fmt.Sprintf("list changed during copy (length %d before, %d after, %d copied); copy it again once writes stop", before, after, total))
	}
	return n, nil
}

func (r *chunkRun) copySet(ctx context.Context, key, tmp string) (copied, error) {
	var n copied
	add := func(members []string) error {
		for len(members) > 0 {
			part := members[:min(len(members), elemChunk)]
			members = members[len(part):]
			if err := r.write(ctx, r.dst.B().Sadd().Key(tmp).Member(part...).Build()); err != nil {
				return err
			}
			for _, m := range part {
				n.bytes += int64(len(m))
			}
		}
		return nil
	}
	err := r.copyCollection(ctx, r.src.B().Scard().Key(key).Build(), func() ([]string, error) {
		return r.read(ctx, r.src.B().Smembers().Key(key).Build()).AsStrSlice()
	}, func(cursor uint64) valkey.Completed {
		return r.src.B().Sscan().Key(key).Cursor(cursor).Count(elemChunk).Build()
	}, add)
	return n, err
}

func (r *chunkRun) copyZSet(ctx context.Context, key, tmp string) (copied, error) {
	var n copied
	// add writes member/score pairs; scores pass through as the server's
	// own text ("1.5", "inf", "-inf"), so they stay exact.
	add := func(pairs []string) error {
		for len(pairs) > 0 {
			part := pairs[:min(len(pairs), 2*elemChunk)]
			pairs = pairs[len(part):]
			args := make([]string, 0, len(part))
			for i := 0; i+1 < len(part); i += 2 {
				args = append(args, part[i+1], part[i])
				n.bytes += int64(len(part[i]) + len(part[i+1]))
			}
			if err := r.write(ctx, r.dst.B().Arbitrary("ZADD").Keys(tmp).Args(args...).Build()); err != nil {
				return err
			}
		}
		return nil
	}
	err := r.copyCollection(ctx, r.src.B().Zcard().Key(key).Build(), func() ([]string, error) {
		arr, err := r.read(ctx, r.src.B().Zrange().Key(key).Min("0").Max("-1").Withscores().Build()).ToArray()
		if err != nil {
			return nil, err
		}
		return flattenPairs(arr)
	}, func(cursor uint64) valkey.Completed {
		return r.src.B().Zscan().Key(key).Cursor(cursor).Count(elemChunk).Build()
	}, add)
	return n, err
}

// copyCollection reads a set or sorted set whole (up to wholeMax elements,
// by its card command) or page by page with its *SCAN command, and hands
// the elements to add.
func (r *chunkRun) copyCollection(ctx context.Context, card valkey.Completed, whole func() ([]string, error),
	scan func(cursor uint64) valkey.Completed, add func([]string) error) error {
	size, err := r.read(ctx, card).AsInt64()
	if err != nil {
		return rerr(ctx, err)
	}
	written := false
	if size <= wholeMax {
		items, err := whole()
		if err != nil {
			return rerr(ctx, err)
		}
		if err := add(items); err != nil {
			return err
		}
		written = len(items) > 0
	} else if written, err = r.scanPages(ctx, scan, add); err != nil {
		return err
	}
	if !written {
		return errVanished
	}
	return nil
}

// flattenPairs turns a ZRANGE WITHSCORES reply (RESP3 [[m, s], ...] or
// RESP2 [m, s, ...]) into [m, s, ...] with scores as the server wrote them.
func flattenPairs(arr []valkey.ValkeyMessage) ([]string, error) {
	out := make([]string, 0, 2*len(arr))
	for _, m := range arr {
		if m.IsArray() {
			pair, err := m.ToArray()
			if err != nil || len(pair) != 2 {
				return nil, fmt.Errorf("unexpected ZRANGE reply element")
			}
			mem, err1 := pair[0].ToString()
			score, err2 := pair[1].ToString()
			if err := errors.Join(err1, err2); err != nil {
				return nil, err
			}
			out = append(out, mem, score)
			continue
		}
		s, err := m.ToString()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}
