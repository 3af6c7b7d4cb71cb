package transfer

import (
	"context"
	"strconv"
	"strings"

	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/job"
)

// keyJob is one key handed to a streaming worker.
type keyJob struct {
	key  string
	kind string // TYPE reply: string, hash, list, set, zset, stream
	size int64  // elements, when known
}

// dumpItem is a key for the DUMP/RESTORE path.
type dumpItem struct {
	key  string
	kind string
	size int64
}

// batch copies the keys of one SCAN page.
func (r *chunkRun) batch(ctx context.Context, keys []string) {
	if ctx.Err() != nil || r.aborted() {
		return
	}
	c := r.c
	if c.opts.OnConflict == ConflictSkip {
		keys = r.dropExisting(ctx, keys)
		if len(keys) == 0 {
			return
		}
	}

	// Probe: GETRANGE reads a string (up to inlineMax bytes) or answers
	// WRONGTYPE for a compound key; PTTL tells expiry or disappearance.
	if err := c.wait(ctx, 2*len(keys)); err != nil {
		return
	}
	cmds := make(valkey.Commands, 0, 2*len(keys))
	for _, k := range keys {
		cmds = append(cmds,
			r.src.B().Getrange().Key(k).Start(0).End(inlineMax-1).Build(),
			r.src.B().Pttl().Key(k).Build())
	}
	resps := r.src.DoMulti(ctx, cmds...)

	var (
		setCmds  valkey.Commands
		setKeys  []string
		setBytes []int64
		gone     []string
		compound []string
		dumps    []dumpItem
	)
	commands := r.commands.Load()
	for i, k := range keys {
		val, err := resps[2*i].ToString()
		pttl, perr := resps[2*i+1].AsInt64()
		switch {
		case isWrongType(err):
			compound = append(compound, k)
			continue
		case err != nil:
			r.fail(k, err)
			continue
		case perr != nil:
			r.fail(k, perr)
			continue
		case expired(pttl):
			gone = append(gone, k)
			continue
		case len(val) >= inlineMax:
			r.stream(ctx, keyJob{key: k, kind: "string"})
			continue
		case c.opts.Strategy == StrategyDump && !commands:
			dumps = append(dumps, dumpItem{key: k, kind: "string", size: int64(len(val))})
			continue
		}
		setCmds = append(setCmds, r.setCmd(k, val, pttl))
		setKeys = append(setKeys, k)
		setBytes = append(setBytes, int64(len(k)+len(val)))
	}

	r.writeStrings(ctx, setCmds, setKeys, setBytes)
	r.vanished(ctx, gone)

	var small []keyJob
	if len(compound) > 0 {
		var d []dumpItem
		d, small = r.classify(ctx, compound, commands)
		dumps = append(dumps, d...)
	}
	if len(dumps) > 0 {
		r.dumpRestore(ctx, dumps)
	}
	r.copySmall(ctx, small)
}

// expired tells, from a PTTL reply, that a key is gone or expires in this
// very millisecond. PTTL answers 0 (not -2) for a key whose expiry time is
// the server's current millisecond, and a zero TTL written to the target
// (SET without PX, RESTORE 0, no PEXPIRE) would mean "no expiry": a key that
// expired on the source would live on the target for ever.
func expired(pttl int64) bool {
	return pttl == -2 || pttl == 0
}

func isWrongType(err error) bool {
	verr, ok := valkey.IsValkeyErr(err)
	return ok && strings.HasPrefix(verr.Error(), "WRONGTYPE")
}

// setCmd builds SET key value [PX ttl] [NX].
func (r *chunkRun) setCmd(key, val string, pttl int64) valkey.Completed {
	args := make([]string, 0, 4)
	args = append(args, val)
	if pttl > 0 {
		args = append(args, "PX", strconv.FormatInt(pttl, 10))
	}
	if r.c.opts.OnConflict == ConflictSkip {
		args = append(args, "NX")
	}
	return r.dst.B().Arbitrary("SET").Keys(key).Args(args...).Build()
}

func (r *chunkRun) writeStrings(ctx context.Context, cmds valkey.Commands, keys []string, sizes []int64) {
	if len(cmds) == 0 {
		return
	}
	var delta job.Counters
	for i, resp := range r.dst.DoMulti(ctx, cmds...) {
		err := resp.Error()
		switch {
		case valkey.IsValkeyNil(err): // NX: the key exists
			delta.Skipped++
		case err != nil:
			r.fail(keys[i], err)
		default:
			delta.Copied++
			delta.Bytes += sizes[i]
		}
	}
	r.add(delta)
}

// vanished handles keys that were scanned but are gone (expired or
// deleted) by the time they were read: their target copy is removed so a
// rerun converges, unless conflicts are skipped.
func (r *chunkRun) vanished(ctx context.Context, keys []string) {
	if len(keys) == 0 {
		return
	}
	if r.c.opts.OnConflict == ConflictReplace {
		cmds := make(valkey.Commands, len(keys))
		for i, k := range keys {
			cmds[i] = r.dst.B().Del().Key(k).Build()
		}
		for i, resp := range r.dst.DoMulti(ctx, cmds...) {
			if err := resp.Error(); err != nil {
				r.fail(keys[i], err)
			}
		}
	}
	r.add(job.Counters{Expired: int64(len(keys))})
}

// dropExisting removes keys that already exist on the target (skip mode).
func (r *chunkRun) dropExisting(ctx context.Context, keys []string) []string {
	cmds := make(valkey.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = r.dst.B().Exists().Key(k).Build()
	}
	kept := keys[:0:0]
	var skipped int64
	for i, resp := range r.dst.DoMulti(ctx, cmds...) {
		n, err := resp.AsInt64()
		switch {
		case err != nil:
			r.fail(keys[i], err)
		case n > 0:
			skipped++
		default:
			kept = append(kept, keys[i])
		}
	}
	r.add(job.Counters{Skipped: skipped})
	return kept
}

var lenCommand = map[string]string{
	"hash": "HLEN", "list": "LLEN", "set": "SCARD", "zset": "ZCARD", "stream": "XLEN",
}

// classify looks up type and size of compound keys; small ones come back
// for DUMP/RESTORE, or in commands mode for copySmall, the others go to
// the streaming workers.
func (r *chunkRun) classify(ctx context.Context, keys []string, commands bool) ([]dumpItem, []keyJob) {
	if err := r.c.wait(ctx, 2*len(keys)); err != nil {
		return nil, nil
	}
	cmds := make(valkey.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = r.src.B().Type().Key(k).Build()
	}
	kinds := make([]string, len(keys))
	var lens valkey.Commands
	var lenIdx []int
	var gone []string
	for i, resp := range r.src.DoMulti(ctx, cmds...) {
		kind, err := resp.ToString()
		switch {
		case err != nil:
			r.fail(keys[i], err)
			continue
		case kind == "none":
			gone = append(gone, keys[i])
			continue
		}
		kinds[i] = kind
		if name, ok := lenCommand[kind]; ok {
			lens = append(lens, r.src.B().Arbitrary(name).Keys(keys[i]).Build())
			lenIdx = append(lenIdx, i)
		}
	}
	r.vanished(ctx, gone)
	sizes := make([]int64, len(keys))
	for j, resp := range r.src.DoMulti(ctx, lens...) {
		sizes[lenIdx[j]], _ = resp.AsInt64()
	}

	var dumps []dumpItem
	var small []keyJob
	for i, k := range keys {
		kind := kinds[i]
		if kind == "" {
			continue
		}
		_, known := lenCommand[kind]
		switch {
		case !known && commands:
			// Module types and the like have no type commands.
			r.fail(k, errUnsupportedType(kind))
		case !known || (!commands && sizes[i] <= dumpMaxElements):
			dumps = append(dumps, dumpItem{key: k, kind: kind, size: sizes[i]})
		case commands && r.isSmall(kind, sizes[i]):
			small = append(small, keyJob{key: k, kind: kind, size: sizes[i]})
		default:
			r.stream(ctx, keyJob{key: k, kind: kind, size: sizes[i]})
		}
	}
	return dumps, small
}

// dumpRestore copies keys with DUMP + PTTL → RESTORE. When the target
// rejects a payload (newer RDB version), the shard switches to type
// commands and the rejected keys are streamed instead.
func (r *chunkRun) dumpRestore(ctx context.Context, items []dumpItem) {
	if err := r.c.wait(ctx, 2*len(items)); err != nil {
		return
	}
	cmds := make(valkey.Commands, 0, 2*len(items))
	for _, it := range items {
		cmds = append(cmds, r.src.B().Dump().Key(it.key).Build(), r.src.B().Pttl().Key(it.key).Build())
	}
	resps := r.src.DoMulti(ctx, cmds...)
	var (
		restores valkey.Commands
		restored []dumpItem
		sizes    []int64
		gone     []string
	)
	replace := r.c.opts.OnConflict == ConflictReplace
	var fallbacks int64
	for i, it := range items {
		payload, err := resps[2*i].ToString()
		pttl, perr := resps[2*i+1].AsInt64()
		switch {
		case valkey.IsValkeyNil(err) || (err == nil && perr == nil && expired(pttl)):
			gone = append(gone, it.key)
			continue
		case isNoPerm(err):
			// The source's ACL denies DUMP to this user: type commands
			// read what DUMP cannot.
			r.fallBack(ctx, it, "the source denies DUMP to this user (ACL)")
			fallbacks++
			continue
		case err != nil:
			r.fail(it.key, err)
			continue
		case perr != nil:
			r.fail(it.key, perr)
			continue
		}
		ttl := max(pttl, 0)
		b := r.dst.B().Restore().Key(it.key).Ttl(ttl).SerializedValue(payload)
		if replace {
			restores = append(restores, b.Replace().Build())
		} else {
			restores = append(restores, b.Build())
		}
		restored = append(restored, it)
		sizes = append(sizes, int64(len(it.key)+len(payload)))
	}
	r.vanished(ctx, gone)
	if fallbacks > 0 {
		r.add(job.Counters{Fallbacks: fallbacks})
	}
	if len(restores) == 0 {
		return
	}
	var delta job.Counters
	for i, resp := range r.dst.DoMulti(ctx, restores...) {
		err := resp.Error()
		it := restored[i]
		switch {
		case err == nil:
			delta.Copied++
			delta.Bytes += sizes[i]
		case isBusyKey(err):
			delta.Skipped++
		case isPayloadRejected(err):
			delta.Fallbacks++
			r.fallBack(ctx, it, "the target rejected a DUMP payload (RDB version)")
		case isNoPerm(err):
			delta.Fallbacks++
			r.fallBack(ctx, it, "the target denies RESTORE to this user (ACL)")
		default:
			r.fail(it.key, err)
		}
	}
	r.add(delta)
}

// fallBack switches the shard to type commands (the first time, saying
// why) and copies it with them; a type without commands fails alone.
func (r *chunkRun) fallBack(ctx context.Context, it dumpItem, why string) {
	if !r.commands.Swap(true) {
		r.c.log.Info(why+"; switching this shard to type commands", "node", r.node, "db", r.db)
	}
	if _, known := lenCommand[it.kind]; !known && it.kind != "string" {
		r.fail(it.key, errUnsupportedType(it.kind))
		return
	}
	r.stream(ctx, keyJob(it))
}

func isBusyKey(err error) bool {
	verr, ok := valkey.IsValkeyErr(err)
	return ok && strings.HasPrefix(verr.Error(), "BUSYKEY")
}

// isPayloadRejected matches RESTORE's answers to a payload it cannot read:
// "DUMP payload version or checksum are wrong", "Bad data format".
func isPayloadRejected(err error) bool {
	verr, ok := valkey.IsValkeyErr(err)
	if !ok {
		return false
	}
	msg := strings.ToLower(verr.Error())
	return strings.Contains(msg, "payload version") || strings.Contains(msg, "checksum") ||
		strings.Contains(msg, "bad data format")
}
