package analysis

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"
)

const (
	// probeBatch is how many keys one pipeline looks at.
	probeBatch = 250
	// maxScanCount is the SCAN COUNT hint's ceiling.
	maxScanCount = 1000
	// hfeFields is how many fields of a hash are checked for TTLs.
	hfeFields = 1000
	// largest is how many keys LargestKeys lists per ranking.
	largest = 10
	// maxExamples bounds the overlap examples.
	maxExamples = 10
	// parallelMasters bounds the masters sampled at once.
	parallelMasters = 4
	// censusFactor bounds the census of a filtered sample (see
	// sampleShard): at most this many times the shard's quota of keys are
	// counted without the filter.
	censusFactor = 10
)

// errDenied stops the sampling of a shard whose user may not run a
// command every key needs (the denial is recorded as a finding).
var errDenied = errors.New("sampling denied")

// shardResult is what the sample of one shard saw.
type shardResult struct {
	sampled  int64
	complete bool
	// With a filter: the census. scanned counts the keys SCAN returned
	// without the filter, matched the keys it returned with the filter
	// from the same cursors with the same COUNT (so from the same hash
	// table buckets).
	scanned, matched int64
	// allN and allSum: MEMORY USAGE of census keys whether they match or
	// not (cluster sources only: see slotOverhead).
	allN   int64
	allSum float64
	types  map[string]int64
	ttl    Buckets
	// typeKeys: type → the first key of that type sampled (the ACL
	// pre-flight checks the copy's commands on it).
	typeKeys map[string]string

	memN          int64
	memSum, memSq float64

	hashes, hashesTTL, fieldsTTL int64

	checked, existing int64
	examples          []string

	byMem, byElems []KeyInfo

	sweep sweepResult
}

// sampleAll samples every shard, masters in parallel and the databases of
// one master one after the other. stopped is true when the time budget ran
// out.
func (a *analyzer) sampleAll(ctx context.Context, s, d *sideData, plan []shardPlan) ([]shardResult, bool, error) {
	a.hfeOK.Store(s.info.HashFieldTTL)
	deadline := time.Now().Add(a.opts.TimeBudget)
	results := make([]shardResult, len(plan))
	byNode := map[string][]int{}
	var nodes []string
	for i, p := range plan {
		if byNode[p.node] == nil {
			nodes = append(nodes, p.node)
		}
		byNode[p.node] = append(byNode[p.node], i)
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		stopped  bool
		sem      = make(chan struct{}, parallelMasters)
	)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, node := range nodes {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			for _, i := range byNode[node] {
				res, over, err := a.sampleShard(runCtx, s, d, plan[i], deadline)
				mu.Lock()
				results[i] = res
				stopped = stopped || over
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("sample %s db %d: %w", plan[i].node, plan[i].db, err)
					cancel()
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
			if a.opts.NoSweep {
				return
			}
			for _, i := range byNode[node] {
				sw, err := a.sweep(runCtx, s, plan[i], results[i], deadline)
				mu.Lock()
				results[i].sweep = sw
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("sweep %s db %d: %w", plan[i].node, plan[i].db, err)
					cancel()
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, false, ctx.Err()
	}
	return results, stopped, firstErr
}

// sampleShard SCANs one shard from cursor 0 until its quota, the end of
// the shard, or the deadline.
//
// With a filter (Options.Match, Options.Type) the SCANs carry the copy's
// MATCH and TYPE, so the server picks the keys exactly as the copy will.
// A filtered SCAN does not say how many keys it looked at, so for the
// share of keys that match, the first pages are SCANned twice in one
// pipeline, without and with the filter, from the same cursor with the
// same COUNT: both visit the same hash table buckets, and the unfiltered
// page counts the keys scanned (the census). The census stops after
// censusFactor times the quota of keys; the filtered SCAN goes on alone
// until the quota of matching keys.
func (a *analyzer) sampleShard(ctx context.Context, s, d *sideData, p shardPlan, deadline time.Time) (shardResult, bool, error) {
	res := shardResult{types: map[string]int64{}, typeKeys: map[string]string{}}
	node, err := s.conn.Node(p.node, p.db)
	if err != nil {
		return res, false, err
	}
	var target valkey.Client
	if p.targetOK {
		if target, err = d.conn.Client(p.tdb); err != nil {
			return res, false, fmt.Errorf("target db %d: %w", p.tdb, err)
		}
	}
	filtered := a.opts.filtered()
	census := filtered
	seen := map[string]struct{}{}
	var cursor uint64
	truncated := false
	for {
		if time.Now().After(deadline) {
			return res, true, nil
		}
		want := p.quota - int(res.sampled)
		count := int64(min(max(want, 10), maxScanCount))
		if filtered {
			count = maxScanCount // most of what a filtered SCAN looks at is not returned
		}
		census = census && res.scanned < int64(censusFactor*p.quota)
		cmds := valkey.Commands{a.scan(node, cursor, count, filtered)}
		if census {
			cmds = append(cmds, a.scan(node, cursor, count, false))
		}
		if err := a.srcLim.wait(ctx, len(cmds)); err != nil {
			return res, false, err
		}
		replies := node.DoMulti(ctx, cmds...)
		page, err := replies[0].AsScanEntry()
		if err != nil {
			if isNoPerm(err) {
				a.deny(s.name, "SCAN")
				return res, false, nil
			}
			return res, false, fmt.Errorf("SCAN: %w", err)
		}
		if census {
			all, err := replies[1].AsScanEntry()
			switch {
			case err != nil:
				return res, false, fmt.Errorf("SCAN: %w", err)
			case all.Cursor != page.Cursor:
				// The table was resized between the two: the pages do not
				// cover the same keys. The census ends here.
				census = false
			default:
				res.scanned += int64(len(all.Elements))
				res.matched += int64(len(page.Elements))
				if s.info.Cluster && a.memOK.Load() && res.allN < int64(p.quota) {
					if err := a.usageOfAll(ctx, node, all.Elements[:min(len(all.Elements), p.quota-int(res.allN))], &res); err != nil {
						return res, false, err
					}
				}
			}
		}
		keys := make([]string, 0, len(page.Elements))
		for _, k := range page.Elements {
			if _, dup := seen[k]; dup { // SCAN may return a key twice
				continue
			}
			seen[k] = struct{}{}
			keys = append(keys, k)
		}
		if len(keys) > want {
			keys, truncated = keys[:want], true
		}
		for start := 0; start < len(keys); start += probeBatch {
			batch := keys[start:min(start+probeBatch, len(keys))]
			if err := a.probe(ctx, s.name, node, target, p, batch, &res); err != nil {
				if errors.Is(err, errDenied) {
					return res, false, nil
				}
				return res, false, err
			}
		}
		if cursor = page.Cursor; cursor == 0 {
			res.complete = !truncated
			break
		}
		if int(res.sampled) >= p.quota {
			break
		}
	}
	return res, false, nil
}

// usageOfAll adds the MEMORY USAGE of keys, whether they pass the filter
// or not, to res.allN and res.allSum: what the whole master's keys take,
// for the per-slot overhead of a cluster (see slotOverhead).
func (a *analyzer) usageOfAll(ctx context.Context, node valkey.Client, keys []string, res *shardResult) error {
	if len(keys) == 0 {
		return nil
	}
	cmds := make(valkey.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = node.B().MemoryUsage().Key(k).Build()
	}
	if err := a.srcLim.wait(ctx, len(cmds)); err != nil {
		return err
	}
	for _, r := range node.DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		switch {
		case err == nil:
			res.allN++
			res.allSum += float64(n)
		case valkey.IsValkeyNil(err): // gone meanwhile
		default:
			if _, fatal := a.optional("source", "MEMORY USAGE", err); fatal != nil {
				return fatal
			}
			return nil // the sample's own MEMORY USAGE records the denial
		}
	}
	return nil
}

// scan builds SCAN cursor [MATCH glob] COUNT count [TYPE type], with the
// options' filters when filtered is true; the same arguments, in the same
// order, as the copy's SCAN.
func (a *analyzer) scan(node valkey.Client, cursor uint64, count int64, filtered bool) valkey.Completed {
	args := []string{strconv.FormatUint(cursor, 10)}
	if filtered && a.opts.Match != "" {
		args = append(args, "MATCH", a.opts.Match)
	}
	args = append(args, "COUNT", strconv.FormatInt(count, 10))
	if filtered && a.opts.Type != "" {
		args = append(args, "TYPE", a.opts.Type)
	}
	return node.B().Arbitrary("SCAN").Args(args...).Build()
}

// probe looks at one batch of keys with pipelines: TYPE, PTTL and MEMORY
// USAGE; then the element count by type (and, for hashes on a server with
// field TTLs, HSCAN NOVALUES); then HPEXPIRETIME of those fields; then
// EXISTS on the target.
func (a *analyzer) probe(ctx context.Context, side string, node, target valkey.Client, p shardPlan, keys []string, res *shardResult) error {
	b := node.B()
	mem := a.memOK.Load()
	per := 2
	if mem {
		per = 3
	}
	cmds := make(valkey.Commands, 0, per*len(keys))
	for _, k := range keys {
		cmds = append(cmds, b.Type().Key(k).Build(), b.Pttl().Key(k).Build())
		if mem {
			cmds = append(cmds, b.MemoryUsage().Key(k).Build())
		}
	}
	if err := a.srcLim.wait(ctx, len(cmds)); err != nil {
		return err
	}
	replies := node.DoMulti(ctx, cmds...)
	kinds := make([]string, len(keys))
	infos := make([]KeyInfo, len(keys))
	for i, k := range keys {
		kind, err := replies[i*per].ToString()
		if err != nil {
			if isNoPerm(err) {
				a.deny(side, "TYPE")
				return errDenied
			}
			return fmt.Errorf("TYPE: %w", err)
		}
		if kind == "none" || a.opts.Type != "" && kind != a.opts.Type { // expired, deleted or replaced since SCAN
			continue
		}
		pttl, err := replies[i*per+1].AsInt64()
		if err != nil {
			if isNoPerm(err) {
				a.deny(side, "PTTL")
				return errDenied
			}
			return fmt.Errorf("PTTL: %w", err)
		}
		if pttl == -2 {
			continue
		}
		kinds[i] = kind
		res.sampled++
		res.types[kind]++
		if _, ok := res.typeKeys[kind]; !ok {
			res.typeKeys[kind] = k
		}
		addTTL(&res.ttl, pttl)
		infos[i] = KeyInfo{Key: k, Type: kind, Node: p.node, DB: p.db, FoundBy: FoundBySample}
		if mem {
			n, err := replies[i*per+2].AsInt64()
			switch {
			case err == nil:
				infos[i].Bytes = n
				res.memN++
				res.memSum += float64(n)
				res.memSq += float64(n) * float64(n)
			case valkey.IsValkeyNil(err): // gone meanwhile
			case isNoPerm(err):
				a.deny(side, "MEMORY USAGE")
				a.memOK.Store(false)
				mem = false
			default:
				var verr *valkey.ValkeyError
				if !errors.As(err, &verr) {
					return fmt.Errorf("MEMORY USAGE: %w", err)
				}
				a.note("source: MEMORY USAGE failed (%s); no memory estimate", firstLine(verr.Error()))
				a.memOK.Store(false)
				mem = false
			}
		}
	}

	// Element counts, and the fields of hashes when field TTLs exist.
	hfe := a.hfeOK.Load()
	cmds = cmds[:0]
	type slot struct{ i, lenAt, scanAt int }
	var slots []slot
	for i, k := range keys {
		name, known := lenCommands[kinds[i]]
		if !known {
			continue
		}
		sl := slot{i: i, lenAt: len(cmds), scanAt: -1}
		cmds = append(cmds, b.Arbitrary(name).Keys(k).Build())
		if kinds[i] == "hash" && hfe {
			sl.scanAt = len(cmds)
			cmds = append(cmds, b.Hscan().Key(k).Cursor(0).Count(hfeFields).Novalues().Build())
		}
		slots = append(slots, sl)
	}
	if len(cmds) > 0 {
		if err := a.srcLim.wait(ctx, len(cmds)); err != nil {
			return err
		}
		replies = node.DoMulti(ctx, cmds...)
	}
	var ttlCmds valkey.Commands
	for _, sl := range slots {
		n, err := replies[sl.lenAt].AsInt64()
		if _, fatal := a.optional(side, lenCommands[kinds[sl.i]], err); fatal != nil {
			return fatal
		}
		infos[sl.i].Elements = n
		if kinds[sl.i] == "hash" {
			res.hashes++
		}
		if sl.scanAt < 0 {
			continue
		}
		scan, err := replies[sl.scanAt].AsScanEntry()
		if err != nil {
			ok, fatal := a.optional(side, "HSCAN", err)
			if fatal != nil {
				return fatal
			}
			if !ok {
				a.hfeOK.Store(false)
			}
			continue
		}
		if len(scan.Elements) == 0 {
			continue
		}
		fields := scan.Elements
		if len(fields) > hfeFields {
			fields = fields[:hfeFields]
		}
		ttlCmds = append(ttlCmds, b.Hpexpiretime().Key(keys[sl.i]).Fields().Numfields(int64(len(fields))).Field(fields...).Build())
	}
	if len(ttlCmds) > 0 {
		if err := a.srcLim.wait(ctx, len(ttlCmds)); err != nil {
			return err
		}
		for _, r := range node.DoMulti(ctx, ttlCmds...) {
			times, err := r.AsIntSlice()
			if err != nil {
				ok, fatal := a.optional(side, "HPEXPIRETIME", err)
				if fatal != nil {
					return fatal
				}
				if !ok {
					a.hfeOK.Store(false)
					break
				}
				continue
			}
			n := int64(0)
			for _, t := range times {
				if t >= 0 {
					n++
				}
			}
			if n > 0 {
				res.hashesTTL++
				res.fieldsTTL += n
			}
		}
	}

	for i := range keys {
		if kinds[i] == "" {
			continue
		}
		res.byMem = keepTop(res.byMem, infos[i], func(k KeyInfo) int64 { return k.Bytes })
		if kinds[i] != "string" {
			res.byElems = keepTop(res.byElems, infos[i], func(k KeyInfo) int64 { return k.Elements })
		}
	}
	return a.overlap(ctx, target, keys, kinds, res)
}

// overlap looks the sampled keys up on the target with EXISTS.
func (a *analyzer) overlap(ctx context.Context, target valkey.Client, keys, kinds []string, res *shardResult) error {
	if target == nil {
		return nil
	}
	cmds := make(valkey.Commands, 0, len(keys))
	var idx []int
	for i, k := range keys {
		if kinds[i] != "" {
			cmds = append(cmds, target.B().Exists().Key(k).Build())
			idx = append(idx, i)
		}
	}
	if len(cmds) == 0 {
		return nil
	}
	if err := a.dstLim.wait(ctx, len(cmds)); err != nil {
		return err
	}
	for j, r := range target.DoMulti(ctx, cmds...) {
		n, err := r.AsInt64()
		if err != nil {
			ok, fatal := a.optional("target", "EXISTS", err)
			if fatal != nil {
				return fatal
			}
			if !ok {
				return nil
			}
			continue
		}
		res.checked++
		if n > 0 {
			res.existing++
			if len(res.examples) < maxExamples {
				res.examples = append(res.examples, keys[idx[j]])
			}
		}
	}
	return nil
}

// lenCommands gives each core type's element count command.
var lenCommands = map[string]string{
	"string": "STRLEN", "hash": "HLEN", "list": "LLEN", "set": "SCARD", "zset": "ZCARD", "stream": "XLEN",
}

// addTTL puts a PTTL reply (ms, -1 for none) into its bucket.
func addTTL(b *Buckets, pttl int64) {
	const hour = int64(time.Hour / time.Millisecond)
	switch {
	case pttl < 0:
		b.None++
	case pttl < hour:
		b.Under1h++
	case pttl < 24*hour:
		b.Under24h++
	case pttl < 7*24*hour:
		b.Under7d++
	default:
		b.Over7d++
	}
}

// keepTop inserts k into list, kept sorted by size descending (then key)
// and at most largest long.
func keepTop(list []KeyInfo, k KeyInfo, size func(KeyInfo) int64) []KeyInfo {
	if size(k) <= 0 {
		return list
	}
	if len(list) == largest && size(list[len(list)-1]) >= size(k) {
		return list
	}
	list = append(list, k)
	sortKeys(list, size)
	if len(list) > largest {
		list = list[:largest]
	}
	return list
}

// sortKeys sorts list by size descending, then key.
func sortKeys(list []KeyInfo, size func(KeyInfo) int64) {
	sort.SliceStable(list, func(i, j int) bool {
		if size(list[i]) != size(list[j]) {
			return size(list[i]) > size(list[j])
		}
		return list[i].Key < list[j].Key
	})
}
