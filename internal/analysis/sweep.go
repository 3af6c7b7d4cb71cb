package analysis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"
)

// The big-key sweep: a random sample of a few thousand keys finds a
// handful of huge keys among many small ones only by luck, and the huge
// keys are what a migration plan most needs to see (and what validation
// compares). So after a shard's sample, unless the sample saw every key,
// the analysis SCANs the shard once per compound type with the server
// filtering by type (SCAN cursor [MATCH glob] COUNT n TYPE t, Redis and
// Valkey 6.0+): only hashes, lists, sets, sorted sets and streams come
// back over the network. Their lengths (HLEN, LLEN, SCARD, ZCARD, XLEN)
// are pipelined and the longest sweepTop keys of the shard are kept; then
// MEMORY USAGE of those keys only. Strings are not swept: the sample's
// STRLEN covers the strings it saw.
//
// The sweep shares the sample's time budget and rate limit: the SCANs of
// the five types go in one pipeline per page (one cursor each), COUNT
// bounds the keys the server looks at per SCAN, and a shard whose sweep
// the deadline interrupts says how far it got (KeySweep).

const (
	// sweepCount is the COUNT of a sweep's SCAN: the keys the server looks
	// at per call, whatever their type.
	sweepCount = 1000
	// sweepTop is how many keys the sweep keeps per shard (the longest).
	sweepTop = largest
	// sweepLenBatch bounds a pipeline of length commands.
	sweepLenBatch = 1000
)

// sweepTypes are the types the sweep SCANs for, in order.
var sweepTypes = []string{"hash", "list", "set", "zset", "stream"}

// Found by: where a key of LargestKeys comes from.
const (
	FoundBySample = "sample"
	FoundBySweep  = "sweep"
)

// sweepResult is what the sweep of one shard saw.
type sweepResult struct {
	ran      bool   // the shard was swept (or covered by a complete sample)
	skipped  string // why not, when the sweep was skipped
	complete bool
	types    []string
	found    int64 // compound keys the SCANs returned
	visited  int64 // keys the server looked at (about: pages × COUNT, at most the shard's keys, per type)
	top      []KeyInfo
}

// sweepTypesFor returns the types to sweep: only the --type filter's type
// when it is compound, none when it is "string".
func (a *analyzer) sweepTypesFor() []string {
	if a.opts.Type == "" {
		return sweepTypes
	}
	for _, t := range sweepTypes {
		if t == a.opts.Type {
			return []string{t}
		}
	}
	return nil
}

// sweep SCANs one shard for its longest compound keys, until the end of
// the shard or the deadline. A SCAN that fails with an error reply (a
// user that may not SCAN, a server without SCAN TYPE) skips the sweep
// with a note; connection errors and ctx are returned.
func (a *analyzer) sweep(ctx context.Context, s *sideData, p shardPlan, sampled shardResult, deadline time.Time) (sweepResult, error) {
	types := a.sweepTypesFor()
	res := sweepResult{types: types}
	if len(types) == 0 || p.keys == 0 {
		res.ran, res.complete = true, true
		return res, nil
	}
	if sampled.complete {
		// The sample saw every key, with its length: nothing to add.
		res.ran, res.complete = true, true
		res.visited = int64(len(types)) * p.keys
		return res, nil
	}
	node, err := s.conn.Node(p.node, p.db)
	if err != nil {
		return res, err
	}
	res.ran = true
	type cursor struct {
		typ   string
		at    uint64
		pages int64
		done  bool
	}
	curs := make([]*cursor, len(types))
	for i, t := range types {
		curs[i] = &cursor{typ: t}
	}
	visited := func() int64 {
		var n int64
		for _, c := range curs {
			if c.done {
				n += p.keys
			} else {
				n += min(c.pages*sweepCount, p.keys)
			}
		}
		return n
	}
	defer func() { res.visited = visited() }()
	for {
		var open []*cursor
		for _, c := range curs {
			if !c.done {
				open = append(open, c)
			}
		}
		if len(open) == 0 {
			res.complete = true
			break
		}
		if time.Now().After(deadline) {
			break
		}
		cmds := make(valkey.Commands, len(open))
		for i, c := range open {
			cmds[i] = a.sweepScan(node, c.at, c.typ)
		}
		if err := a.srcLim.wait(ctx, len(cmds)); err != nil {
			return res, err
		}
		var keys []KeyInfo
		for i, r := range node.DoMulti(ctx, cmds...) {
			page, err := r.AsScanEntry()
			if err != nil {
				var verr *valkey.ValkeyError
				if !isNoPerm(err) && !errors.As(err, &verr) {
					return res, fmt.Errorf("SCAN TYPE %s: %w", open[i].typ, err)
				}
				if isNoPerm(err) {
					a.deny(s.name, "SCAN")
				}
				res.skipped = fmt.Sprintf("SCAN ... TYPE %s failed (%s)", open[i].typ, firstLine(err.Error()))
				res.ran = false
				return res, nil
			}
			open[i].pages++
			open[i].at = page.Cursor
			open[i].done = page.Cursor == 0
			for _, k := range page.Elements {
				keys = append(keys, KeyInfo{Key: k, Type: open[i].typ, Node: p.node, DB: p.db, FoundBy: FoundBySweep})
			}
		}
		res.found += int64(len(keys))
		for start := 0; start < len(keys); start += sweepLenBatch {
			batch := keys[start:min(start+sweepLenBatch, len(keys))]
			if err := a.sweepLengths(ctx, s.name, node, batch, &res); err != nil {
				if errors.Is(err, errDenied) {
					res.ran = false
					return res, nil
				}
				return res, err
			}
		}
	}
	return res, a.sweepMemory(ctx, s.name, node, &res)
}

// sweepScan builds SCAN cursor [MATCH glob] COUNT sweepCount TYPE typ:
// the copy's MATCH, one compound type.
func (a *analyzer) sweepScan(node valkey.Client, cursor uint64, typ string) valkey.Completed {
	args := []string{strconv.FormatUint(cursor, 10)}
	if a.opts.Match != "" {
		args = append(args, "MATCH", a.opts.Match)
	}
	args = append(args, "COUNT", strconv.Itoa(sweepCount), "TYPE", typ)
	return node.B().Arbitrary("SCAN").Args(args...).Build()
}

// sweepLengths pipelines the element count of keys and keeps the longest
// in res.top.
func (a *analyzer) sweepLengths(ctx context.Context, side string, node valkey.Client, keys []KeyInfo, res *sweepResult) error {
	b := node.B()
	cmds := make(valkey.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = b.Arbitrary(lenCommands[k.Type]).Keys(k.Key).Build()
	}
	if err := a.srcLim.wait(ctx, len(cmds)); err != nil {
		return err
	}
	for i, r := range node.DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		if err != nil {
			var verr *valkey.ValkeyError
			if !isNoPerm(err) && !errors.As(err, &verr) {
				return fmt.Errorf("%s: %w", lenCommands[keys[i].Type], err)
			}
			if isNoPerm(err) {
				a.deny(side, lenCommands[keys[i].Type])
				res.skipped = lenCommands[keys[i].Type] + " denied"
				return errDenied
			}
			continue // WRONGTYPE: replaced since the SCAN
		}
		k := keys[i]
		k.Elements = n
		res.top = keepTopUnique(res.top, k, sweepTop, elementsOf)
	}
	return nil
}

// sweepMemory adds MEMORY USAGE to the sweep's top keys, when the user
// may run it.
func (a *analyzer) sweepMemory(ctx context.Context, side string, node valkey.Client, res *sweepResult) error {
	if len(res.top) == 0 || !a.memOK.Load() {
		return nil
	}
	cmds := make(valkey.Commands, len(res.top))
	for i, k := range res.top {
		cmds[i] = node.B().MemoryUsage().Key(k.Key).Build()
	}
	if err := a.srcLim.wait(ctx, len(cmds)); err != nil {
		return err
	}
	for i, r := range node.DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		switch {
		case err == nil:
			res.top[i].Bytes = n
		case valkey.IsValkeyNil(err): // gone meanwhile
		default:
			ok, fatal := a.optional(side, "MEMORY USAGE", err)
			if fatal != nil {
				return fatal
			}
			if !ok {
				a.memOK.Store(false)
				return nil
			}
		}
	}
	return nil
}

func elementsOf(k KeyInfo) int64 { return k.Elements }
func bytesOf(k KeyInfo) int64    { return k.Bytes }

// keepTopUnique is keepTop with at most n keys, where a key already in
// list (same database and name) is replaced rather than added twice.
func keepTopUnique(list []KeyInfo, k KeyInfo, n int, size func(KeyInfo) int64) []KeyInfo {
	for i, o := range list {
		if o.DB == k.DB && o.Key == k.Key {
			if k.FoundBy != FoundBySweep && o.FoundBy == FoundBySweep {
				return list // the sweep's figures are the newer ones
			}
			if k.Bytes == 0 {
				k.Bytes = o.Bytes
			}
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if size(k) <= 0 {
		return list
	}
	if len(list) >= n && size(list[len(list)-1]) >= size(k) {
		return list
	}
	list = append(list, k)
	sortKeys(list, size)
	if len(list) > n {
		list = list[:n]
	}
	return list
}

// summarizeSweep merges the sweep's keys into r.LargestKeys (after the
// sample's) and says how far the sweep got.
func (a *analyzer) summarizeSweep(r *Report, plan []shardPlan, results []shardResult) {
	types := a.sweepTypesFor()
	sw := &KeySweep{Complete: true, Types: append([]string{}, types...), Top: sweepTop, Shards: make([]SweepShard, 0, len(plan))}
	for i, p := range plan {
		res := results[i].sweep
		sh := SweepShard{Node: p.node, DB: p.db, Swept: res.ran, Complete: res.complete, Found: res.found}
		switch {
		case res.complete:
			sh.Fraction = 1
		case len(types) > 0 && p.keys > 0:
			sh.Fraction = float64(res.visited) / float64(int64(len(types))*p.keys)
		}
		if res.skipped != "" && sw.Note == "" {
			sw.Note = fmt.Sprintf("the big-key sweep of %s db %d was skipped: %s; the largest keys come from the sample there", p.node, p.db, res.skipped)
		}
		sw.Complete = sw.Complete && res.complete
		sw.Shards = append(sw.Shards, sh)
		for _, k := range res.top {
			r.LargestKeys.ByElements = keepTopUnique(r.LargestKeys.ByElements, k, largest, elementsOf)
			r.LargestKeys.ByMemory = keepTopUnique(r.LargestKeys.ByMemory, k, largest, bytesOf)
		}
	}
	if !sw.Complete && sw.Note == "" {
		sw.StoppedBy = "timeBudget"
	}
	if sw.Note != "" {
		a.note("%s", sw.Note)
	}
	r.LargestKeys.Sweep = sw
}
