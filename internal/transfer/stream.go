package transfer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/valkey-io/valkey-go"
)

// pelChunk is how many pending entries one XPENDING page reads and one
// XCLAIM pipeline writes.
const pelChunk = 500

// copyStream copies a stream's entries with their IDs, then its
// last-generated ID, entries-added and max-deleted-entry ID (XSETID), its
// consumer groups with their last-delivered ID and entries-read, the
// groups' consumer names and their pending entries lists (see copyPEL).
//
// Pending entries whose message was deleted from the stream (XDEL, XTRIM)
// while still pending cannot be recreated (XCLAIM ... FORCE needs the
// entry); they are counted as PendingNotCarried.
func (r *chunkRun) copyStream(ctx context.Context, key, tmp string) (copied, error) {
	var n copied
	start := "-"
	total := 0
	for {
		arr, err := r.read(ctx, r.src.B().Xrange().Key(key).Start(start).End("+").Count(elemChunk).Build()).ToArray()
		if err != nil {
			return n, rerr(ctx, err)
		}
		cmds := make(valkey.Commands, 0, len(arr))
		var last string
		for _, e := range arr {
			id, fields, err := streamEntry(e)
			if err != nil {
				return n, err
			}
			args := append(make([]string, 0, 1+len(fields)), id)
			args = append(args, fields...)
			cmds = append(cmds, r.dst.B().Arbitrary("XADD").Keys(tmp).Args(args...).Build())
			last = id
			for _, f := range fields {
				n.bytes += int64(len(f))
			}
		}
		if err := r.writeAll(ctx, "XADD", cmds); err != nil {
			return n, err
		}
		total += len(arr)
		if len(arr) < elemChunk {
			break
		}
		start = "(" + last
	}

	info, err := r.read(ctx, r.src.B().XinfoStream().Key(key).Build()).AsMap()
	if err != nil {
		if valkey.IsValkeyNil(err) || isNoSuchKey(err) {
			return n, errVanished
		}
		return n, rerr(ctx, err)
	}
	if total == 0 {
		// An empty stream (all entries deleted, or made by MKSTREAM):
		// create it empty through a throw-away group.
		const mk = "__kvmigrate_mkstream"
		if err := r.write(ctx, r.dst.B().XgroupCreate().Key(tmp).Group(mk).Id("0").Mkstream().Build()); err != nil {
			return n, fmt.Errorf("create empty stream: %w", err)
		}
		if err := r.write(ctx, r.dst.B().XgroupDestroy().Key(tmp).Group(mk).Build()); err != nil {
			return n, fmt.Errorf("create empty stream: %w", err)
		}
	}
	lastID := str(info["last-generated-id"])
	if lastID != "" {
		cmd := r.dst.B().Xsetid().Key(tmp).LastId(lastID).Build()
		if added, ok := info["entries-added"]; ok {
			entries, _ := added.AsInt64()
			maxDel := str(info["max-deleted-entry-id"])
			if maxDel == "" {
				maxDel = "0-0"
			}
			cmd = r.dst.B().Xsetid().Key(tmp).LastId(lastID).Entriesadded(entries).Maxdeletedid(maxDel).Build()
		}
		if err := r.write(ctx, cmd); err != nil {
			return n, fmt.Errorf("XSETID %s: %w", lastID, err)
		}
	}

	groups, err := r.read(ctx, r.src.B().XinfoGroups().Key(key).Build()).ToArray()
	if err != nil {
		return n, rerr(ctx, err)
	}
	for _, g := range groups {
		gm, err := g.AsMap()
		if err != nil {
			return n, err
		}
		name := str(gm["name"])
		create := r.dst.B().XgroupCreate().Key(tmp).Group(name).Id(str(gm["last-delivered-id"]))
		var cmd valkey.Completed
		if read, ok := gm["entries-read"]; ok && !read.IsNil() {
			entries, _ := read.AsInt64()
			cmd = create.Entriesread(entries).Build()
		} else {
			cmd = create.Build()
		}
		if err := r.write(ctx, cmd); err != nil {
			return n, fmt.Errorf("XGROUP CREATE %q: %w", name, err)
		}
		consumers, err := r.read(ctx, r.src.B().XinfoConsumers().Key(key).Group(name).Build()).ToArray()
		if err != nil {
			return n, rerr(ctx, err)
		}
		cmds := make(valkey.Commands, 0, len(consumers))
		for _, c := range consumers {
			cm, err := c.AsMap()
			if err != nil {
				return n, err
			}
			cmds = append(cmds, r.dst.B().XgroupCreateconsumer().Key(tmp).Group(name).Consumer(str(cm["name"])).Build())
		}
		if err := r.writeAll(ctx, "XGROUP CREATECONSUMER", cmds); err != nil {
			return n, err
		}
		// XINFO GROUPS tells the PEL's size: a group with nothing pending
		// costs no extra round trip.
		pendingMsg := gm["pending"]
		if count, _ := pendingMsg.AsInt64(); count > 0 {
			lost, err := r.copyPEL(ctx, key, tmp, name)
			n.pendingLost += lost
			if err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// copyPEL recreates the pending entries list of group on tmp: it pages
// through XPENDING key group (start + pelChunk (each entry: ID, consumer,
// idle ms, deliveries) and writes each page with one pipeline of
// XCLAIM tmp group consumer 0 id IDLE idle RETRYCOUNT deliveries FORCE
// JUSTID, which creates the PEL entry (and the consumer) with the same
// delivery count and idle time, and moves neither the group's
// last-delivered ID nor its entries-read. XCLAIM answers an empty array for
// an entry that is not in the stream (deleted while pending, on Redis 7.0+
// and Valkey): those are returned as lost. Memory stays at one page.
func (r *chunkRun) copyPEL(ctx context.Context, key, tmp, group string) (int64, error) {
	var lost int64
	start := "-"
	for {
		arr, err := r.read(ctx, r.src.B().Xpending().Key(key).Group(group).Start(start).End("+").Count(pelChunk).Build()).ToArray()
		if err != nil {
			if isNoGroup(err) { // destroyed since XINFO GROUPS: nothing pending
				return lost, nil
			}
			return lost, rerr(ctx, err)
		}
		if len(arr) == 0 {
			return lost, nil
		}
		cmds := make(valkey.Commands, 0, len(arr))
		var last string
		for _, e := range arr {
			p, err := pendingEntry(e)
			if err != nil {
				return lost, err
			}
			cmds = append(cmds, r.dst.B().Xclaim().Key(tmp).Group(group).Consumer(p.consumer).MinIdleTime("0").
				Id(p.id).Idle(p.idle).Retrycount(p.deliveries).Force().Justid().Build())
			last = p.id
		}
		if err := ctx.Err(); err != nil {
			return lost, err
		}
		for _, resp := range r.dst.DoMulti(context.WithoutCancel(ctx), cmds...) {
			ids, err := resp.ToArray()
			if err != nil {
				return lost, fmt.Errorf("XCLAIM: %w", err)
			}
			if len(ids) == 0 {
				lost++
			}
		}
		if len(arr) < pelChunk {
			return lost, nil
		}
		start = "(" + last
	}
}

// pending is one entry of the extended XPENDING reply.
type pending struct {
	id, consumer     string
	idle, deliveries int64
}

func pendingEntry(m valkey.ValkeyMessage) (pending, error) {
	parts, err := m.ToArray()
	if err != nil || len(parts) != 4 {
		return pending{}, fmt.Errorf("unexpected XPENDING entry")
	}
	var p pending
	var errs [4]error
	p.id, errs[0] = parts[0].ToString()
	p.consumer, errs[1] = parts[1].ToString()
	p.idle, errs[2] = parts[2].AsInt64()
	p.deliveries, errs[3] = parts[3].AsInt64()
	if err := errors.Join(errs[:]...); err != nil {
		return pending{}, fmt.Errorf("XPENDING entry: %w", err)
	}
	return p, nil
}

func isNoGroup(err error) bool {
	verr, ok := valkey.IsValkeyErr(err)
	return ok && strings.HasPrefix(verr.Error(), "NOGROUP")
}

// streamEntry reads one XRANGE entry: [id, [field, value, ...]].
func streamEntry(m valkey.ValkeyMessage) (string, []string, error) {
	parts, err := m.ToArray()
	if err != nil || len(parts) != 2 {
		return "", nil, fmt.Errorf("unexpected XRANGE entry")
	}
	id, err := parts[0].ToString()
	if err != nil {
		return "", nil, err
	}
	fields, err := parts[1].AsStrSlice()
	if err != nil {
		return "", nil, fmt.Errorf("entry %s: %w", id, err)
	}
	return id, fields, nil
}

func str(m valkey.ValkeyMessage) string {
	s, _ := m.ToString()
	return s
}
