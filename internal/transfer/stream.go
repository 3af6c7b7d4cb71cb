package transfer

import (
	"context"
	"fmt"

	"github.com/valkey-io/valkey-go"
)

// copyStream copies a stream's entries with their IDs, then its
// last-generated ID, entries-added and max-deleted-entry ID (XSETID), its
// consumer groups with their last-delivered ID and entries-read, and the
// groups' consumer names.
//
// Not carried: pending entries lists (which consumer holds which entry,
// delivery counts and times). Redis and Valkey have no command that writes
// a PEL entry without delivering the message again; the number of pending
// entries left behind is counted as PendingNotCarried.
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
		pendingMsg := gm["pending"]
		pending, _ := pendingMsg.AsInt64()
		n.pendingLost += pending
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
	}
	return n, nil
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
