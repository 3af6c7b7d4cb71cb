package analysis

import (
	"fmt"
	"math"
	"sort"
)

// Keyspace hash-table sizes that MEMORY USAGE leaves out: each database's
// main table has a pointer per bucket (a power of two at least the key
// count), and each key with a TTL costs an entry and a bucket pointer in
// the expires table. Measured against INFO used_memory growth on Redis
// 7.0/8.0 and Valkey 8.0/8.1 (see the estimate tests).
const (
	bucketBytes      = 8
	expireEntryBytes = 24
)

// z95 is the two-sided 95 % quantile of the normal distribution.
const z95 = 1.96

// summarize turns the shards' samples into the report's figures.
func (a *analyzer) summarize(r *Report, plan []shardPlan, results []shardResult, stopped bool, s, d *sideData) {
	r.Sample = SampleSummary{Requested: a.opts.Sample, TimeBudgetMs: a.opts.TimeBudget.Milliseconds(), MaxOps: a.opts.MaxOps, Complete: !stopped}
	if stopped {
		r.Sample.StoppedBy = "timeBudget"
	}
	types := map[string]*TypeCount{}
	var (
		memEst, memVar, overhead, slotBytes float64
		memN, memBytes                      int64
		hashes, hashesTTL, ttlF             int64
	)
	filtered := a.opts.filtered()
	if filtered {
		r.Filter = &Filter{Match: a.opts.Match, Type: a.opts.Type}
	}
	r.EstimatedKeys = 0
	r.Shards = make([]Shard, 0, len(plan))
	seenTDB := map[int]bool{}
	for i, p := range plan {
		res := results[i]
		r.Sample.Complete = r.Sample.Complete && res.complete
		r.Sample.Sampled += res.sampled
		// keys: the shard's keys a migration copies.
		keys := p.keys
		if filtered {
			keys = res.matchedKeys(p.keys)
			r.Filter.Keys += p.keys
			r.Filter.Scanned += res.scanned
			r.Filter.Matched += res.matched
		}
		r.EstimatedKeys += keys
		scale := 0.0
		switch {
		case res.complete:
			scale = 1
		case res.sampled > 0:
			scale = float64(keys) / float64(res.sampled)
		}
		est := func(n int64) int64 { return int64(math.Round(float64(n) * scale)) }

		sh := Shard{Node: p.node, DB: p.db, Keys: p.keys, EstimatedKeys: keys, Sampled: res.sampled, Complete: res.complete, Types: res.types}
		for t, n := range res.types {
			tc := types[t]
			if tc == nil {
				tc = &TypeCount{Type: t}
				types[t] = tc
			}
			tc.Sampled += n
			tc.Estimated += est(n)
		}
		addBuckets(&r.TTL.Sampled, res.ttl, func(n int64) int64 { return n })
		addBuckets(&r.TTL.Estimated, res.ttl, est)

		expires := p.expires
		if (expires < 0 || filtered) && res.sampled > 0 { // INFO keyspace unknown, or not of the copied keys: from the sample
			withTTL := res.sampled - res.ttl.None
			expires = int64(math.Round(float64(keys) * float64(withTTL) / float64(res.sampled)))
		}
		tables := float64(keyspaceTables(keys, expires))
		if res.memN > 0 {
			e, v := extrapolate(res, keys, p.keys)
			if s.info.Cluster {
				slots := a.slotOverhead(p, res, keys, e, s)
				slotBytes += slots
				tables += slots
			}
			sh.EstimatedBytes = int64(math.Round(e + tables))
			memEst += e
			memVar += v
			memN += res.memN
			memBytes += int64(res.memSum)
		}
		overhead += tables
		r.Shards = append(r.Shards, sh)

		hashes += res.hashes
		hashesTTL += res.hashesTTL
		ttlF += res.fieldsTTL
		r.Overlap.Checked += res.checked
		r.Overlap.Existing += res.existing
		r.Overlap.Estimated += est(res.existing)
		for _, k := range res.examples {
			if len(r.Overlap.Examples) < maxExamples {
				r.Overlap.Examples = append(r.Overlap.Examples, k)
			}
		}
		for _, k := range res.byMem {
			r.LargestKeys.ByMemory = keepTopUnique(r.LargestKeys.ByMemory, k, largest, bytesOf)
		}
		for _, k := range res.byElems {
			r.LargestKeys.ByElements = keepTopUnique(r.LargestKeys.ByElements, k, largest, elementsOf)
		}
		if !seenTDB[p.tdb] {
			seenTDB[p.tdb] = true
			r.Overlap.TargetKeys += d.info.Keyspace[p.tdb]
		}
	}
	if !a.opts.NoSweep {
		a.summarizeSweep(r, plan, results)
	}
	if r.LargestKeys.ByMemory == nil {
		r.LargestKeys.ByMemory = []KeyInfo{}
	}
	if r.LargestKeys.ByElements == nil {
		r.LargestKeys.ByElements = []KeyInfo{}
	}

	r.Types = make([]TypeCount, 0, len(types))
	for _, tc := range types {
		r.Types = append(r.Types, *tc)
	}
	sort.Slice(r.Types, func(i, j int) bool {
		if r.Types[i].Estimated != r.Types[j].Estimated {
			return r.Types[i].Estimated > r.Types[j].Estimated
		}
		return r.Types[i].Type < r.Types[j].Type
	})

	r.Memory = a.memory(r, memEst, memVar, overhead, memN, memBytes)
	if r.Memory.Available {
		r.Memory.SlotOverheadBytes = int64(math.Round(slotBytes))
	}
	r.Memory.ServerBytes = s.dataBytes

	r.HashFieldTTL = FieldTTL{
		Checked:         s.info.HashFieldTTL && a.hfeOK.Load(),
		TargetSupported: d.info.HashFieldTTL,
		HashesSampled:   hashes,
		HashesWithTTL:   hashesTTL,
		FieldsWithTTL:   ttlF,
		ServerHashes:    s.subexpiry,
	}
	switch {
	case !s.info.HashFieldTTL:
		r.HashFieldTTL.Note = "the source has no hash field expiry (no HPEXPIRETIME in COMMAND INFO): nothing to check"
	case !a.hfeOK.Load():
		r.HashFieldTTL.Note = "HSCAN or HPEXPIRETIME could not be run on the source: sampled hashes were not checked"
	}
}

// keyspaceTables is what the main and expires hash tables of one
// database (a power of two of buckets each) and the expires entries take
// for keys keys, expires of them with a TTL.
func keyspaceTables(keys, expires int64) int64 {
	return bucketBytes*tableSize(keys) + expireEntryBytes*max(expires, 0) + bucketBytes*tableSize(expires)
}

// slotOverhead is what a cluster master's per-slot structures take for
// the keys of shard p a migration copies, beyond MEMORY USAGE and the
// single-table model of keyspaceTables: Redis 7.4+ and Valkey 8+ keep one
// hash table (with its own minimum size and header, and expires table)
// per slot, which neither counts. It is derived from the master's own
// MEMORY STATS keyspace figure (sideData.dataByNode): what that figure
// holds beyond the MEMORY USAGE of all the master's keys (extrapolated;
// with a filter, from the census keys) and the single-table model is
// charged per occupied slot, and the copied keys get the share of it that
// the slots they occupy would take (keys spread uniformly over the
// master's slots). The server's figure also holds a fixed part of a few
// hundred KiB per master, so for small datasets this errs high. copied is
// the extrapolated MEMORY USAGE of the shard's copied keys.
func (a *analyzer) slotOverhead(p shardPlan, res shardResult, keys int64, copied float64, s *sideData) float64 {
	server := s.dataByNode[p.node]
	if server <= 0 || p.keys <= 0 || keys <= 0 {
		return 0
	}
	all := copied // without a filter, the copied keys are all the keys
	if a.opts.filtered() {
		if res.allN == 0 {
			return 0
		}
		all = res.allSum / float64(res.allN) * float64(p.keys)
	}
	expires := max(p.expires, 0)
	extra := float64(server) - all - float64(keyspaceTables(p.keys, expires))
	if extra <= 0 {
		return 0
	}
	slots := 0
	for _, m := range s.side.Masters {
		if m.Addr == p.node {
			slots = m.SlotCount
		}
	}
	if slots == 0 {
		return extra * float64(keys) / float64(p.keys)
	}
	return extra * occupiedSlots(keys, slots) / occupiedSlots(p.keys, slots)
}

// occupiedSlots is the expected number of slots, of slots, that hold at
// least one of keys keys spread uniformly over them.
func occupiedSlots(keys int64, slots int) float64 {
	s := float64(slots)
	return s * -math.Expm1(float64(keys)*math.Log1p(-1/s))
}

// matchedKeys is how many of a shard's keys pass the filter: counted
// when the filtered SCAN went through the whole shard, else the shard's
// key count times the share that matched in the census, and never fewer
// than the sample found.
func (res shardResult) matchedKeys(keys int64) int64 {
	switch {
	case res.complete:
		return res.sampled
	case res.scanned > 0:
		return max(int64(math.Round(float64(keys)*float64(res.matched)/float64(res.scanned))), res.sampled)
	}
	return res.sampled
}

// extrapolate estimates a shard's MEMORY USAGE total over keys from its
// sample and the variance of that estimate (simple random sample without
// replacement; SCAN order is hash order, unrelated to the keys' sizes).
// With a filter, keys is itself estimated from the census share of the
// shard's total keys, and its variance is added.
func extrapolate(res shardResult, keys, total int64) (est, variance float64) {
	n := float64(res.memN)
	if res.complete || keys <= res.memN {
		return res.memSum, 0
	}
	mean := res.memSum / n
	K := float64(keys)
	var s2 float64
	if n > 1 {
		s2 = max((res.memSq-n*mean*mean)/(n-1), 0)
	}
	variance = K * K * s2 / n * (1 - n/K)
	if res.scanned > 0 && total > 0 {
		share, scanned, all := float64(res.matched)/float64(res.scanned), float64(res.scanned), float64(total)
		variance += mean * mean * all * all * share * (1 - share) / scanned * max(1-scanned/all, 0)
	}
	return mean * K, variance
}

func (a *analyzer) memory(r *Report, est, variance, overhead float64, n, bytes int64) Memory {
	m := Memory{Available: a.memOK.Load() && (n > 0 || r.EstimatedKeys == 0 && r.Sample.Complete), SampledKeys: n, SampledBytes: bytes}
	if !m.Available {
		m.Confidence = "none"
		m.Note = "MEMORY USAGE could not be run on the source: no memory estimate"
		if a.memOK.Load() {
			m.Note = "no key was sampled before the time budget ran out: no memory estimate"
		}
		return m
	}
	total := est + overhead
	sd := math.Sqrt(variance)
	m.EstimatedBytes = int64(math.Round(total))
	m.KeyspaceOverheadBytes = int64(math.Round(overhead))
	m.LowBytes = int64(math.Round(max(total-z95*sd, float64(bytes)+overhead)))
	m.HighBytes = int64(math.Round(total + z95*sd))
	if est > 0 {
		m.RelativeError = math.Round(sd/est*10000) / 10000
	}
	switch margin := z95 * m.RelativeError; {
	case r.Sample.Complete:
		m.Confidence = "exact"
	case margin <= 0.10:
		m.Confidence = "high"
	case margin <= 0.30:
		m.Confidence = "medium"
	default:
		m.Confidence = "low"
	}
	switch f := r.Filter; {
	case f != nil && r.Sample.Complete:
		m.Note = fmt.Sprintf("MEMORY USAGE of every key that the filter (%s) selects: %d of the %d keys of the copied databases, plus %s of keyspace hash tables",
			f.describe(), n, f.Keys, humanBytes(m.KeyspaceOverheadBytes))
	case f != nil:
		m.Note = fmt.Sprintf("extrapolated from a filtered scan (%s): %d of %d keys scanned matched (%.1f %%), so about %d of the %d keys of the copied databases are copied; "+
			"MEMORY USAGE of %d of them, extrapolated per shard, plus %s of keyspace hash tables; ±%.0f %% at 95 %%",
			f.describe(), f.Matched, f.Scanned, 100*float64(f.Matched)/float64(max(f.Scanned, 1)), r.EstimatedKeys, f.Keys,
			n, humanBytes(m.KeyspaceOverheadBytes), 100*z95*m.RelativeError)
	case r.Sample.Complete:
		m.Note = fmt.Sprintf("MEMORY USAGE of every key (%d), plus %s of keyspace hash tables", n, humanBytes(m.KeyspaceOverheadBytes))
	default:
		m.Note = fmt.Sprintf("MEMORY USAGE of %d of %d keys (%.1f %%), extrapolated per shard from its key count, plus %s of keyspace hash tables; ±%.0f %% at 95 %%",
			n, r.EstimatedKeys, 100*float64(n)/float64(max(r.EstimatedKeys, 1)), humanBytes(m.KeyspaceOverheadBytes), 100*z95*m.RelativeError)
	}
	if r.Source.Cluster {
		m.Note += "; with a cluster's per-slot hash tables, derived from each master's MEMORY STATS figure (slotOverheadBytes)"
	}
	m.Note += ". MEMORY USAGE looks at 5 elements of big hashes, lists, sets and sorted sets, so values of very uneven sizes are estimated roughly; " +
		"another engine or version may need ±20 % for the same data"
	return m
}

// tableSize is the bucket count of a hash table holding n entries: the
// smallest power of two ≥ n (at least 4), 0 for none.
func tableSize(n int64) int64 {
	if n <= 0 {
		return 0
	}
	size := int64(4)
	for size < n {
		size <<= 1
	}
	return size
}

func addBuckets(dst *Buckets, src Buckets, f func(int64) int64) {
	dst.None += f(src.None)
	dst.Under1h += f(src.Under1h)
	dst.Under24h += f(src.Under24h)
	dst.Under7d += f(src.Under7d)
	dst.Over7d += f(src.Over7d)
}

// humanBytes writes n in binary units: "512 B", "1.5 MiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
