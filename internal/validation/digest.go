package validation

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"
)

// Digests of big keys. Each side is read a chunk at a time (HSCAN, SSCAN,
// ZRANGE by rank, LRANGE, XRANGE, GETRANGE) and folded into a 128-bit
// digest, so memory stays at one chunk per key in flight:
//   - hashes and sets: order-insensitive, the sum (mod 2^64, two
//     independent seeds) of each element's hash — SCAN order differs
//     between engines and versions; a hash's field expiries, when the
//     source has them, in a second digest (see fieldttl.go);
//   - sorted sets: members in rank order with the exact bits of their
//     float64 scores (so 0.1+0.2 ≠ 0.3 and "inf" compare exactly, whatever
//     text each engine prints);
//   - lists, streams (entry IDs, then fields and values) and strings: in
//     order.
//
// The hashes are hash/maphash with seeds drawn per Run: both sides are
// digested in the same process, the digests are never stored.
const (
	digestChunk    = 1000      // elements per read
	digestBytes    = 256 << 10 // bytes per GETRANGE
	digestPipeline = 4         // range reads per pipeline (index-addressed types)
	digestWorkers  = 4         // big keys digested at once
	digestTries    = 2         // a read whose count disagrees is retried once
)

// Reasons a key was compared by count only.
const (
	ReasonBudget       = "budget"
	ReasonUnstableScan = "unstableScan"
	ReasonUnknownType  = "unknownType" // no portable reader (a module type): type and TTL compared only
)

// errUnstable: the elements read do not add up to the key's length.
var errUnstable = errors.New("elements read do not match the key's length")

// digester folds elements into a digest.
type digester struct {
	seeds    [2]maphash.Seed
	ordered  bool
	seq      [2]maphash.Hash
	sum      [2]uint64
	elements int64
	buf      []byte
}

func newDigester(seeds [2]maphash.Seed, ordered bool) *digester {
	d := &digester{seeds: seeds, ordered: ordered}
	d.seq[0].SetSeed(seeds[0])
	d.seq[1].SetSeed(seeds[1])
	return d
}

// add folds one element made of parts (length-prefixed, so that ("ab","c")
// and ("a","bc") differ).
func (d *digester) add(parts ...string) {
	d.buf = d.buf[:0]
	for _, p := range parts {
		d.buf = binary.AppendUvarint(d.buf, uint64(len(p)))
		d.buf = append(d.buf, p...)
	}
	d.fold()
}

// addTagged folds one element made of a name, a tag byte and a number,
// without allocating: a hash field and its expiry bucket.
func (d *digester) addTagged(name string, tag byte, n int64) {
	d.buf = binary.AppendUvarint(d.buf[:0], uint64(len(name)))
	d.buf = append(d.buf, name...)
	d.buf = append(d.buf, tag)
	d.buf = binary.BigEndian.AppendUint64(d.buf, uint64(n))
	d.fold()
}

// fold adds the element in d.buf.
func (d *digester) fold() {
	d.elements++
	if d.ordered {
		_, _ = d.seq[0].Write(d.buf)
		_, _ = d.seq[1].Write(d.buf)
		return
	}
	d.sum[0] += maphash.Bytes(d.seeds[0], d.buf)
	d.sum[1] += maphash.Bytes(d.seeds[1], d.buf)
}

// addRaw folds bytes of a string in order (no element framing).
func (d *digester) addRaw(s string) {
	_, _ = d.seq[0].WriteString(s)
	_, _ = d.seq[1].WriteString(s)
	d.elements += int64(len(s))
}

func (d *digester) sum128() [2]uint64 {
	if d.ordered {
		return [2]uint64{d.seq[0].Sum64(), d.seq[1].Sum64()}
	}
	return d.sum
}

// digestResult is one side's digest of one key.
type digestResult struct {
	sum      [2]uint64
	elements int64
	// expiry is the digest of a hash's fields with their expiry buckets
	// and withTTL the fields that have an expiry, when expiries were read
	// (see fieldttl.go).
	expiry  *[2]uint64
	withTTL int64
}

// digestQueue hands the big keys out to the digest workers: first the
// keys of Options.Always (bigKey.first), then the others; within each,
// lane 0 takes the largest key left, the other lanes the smallest.
// Smallest first proves the most keys within a budget; alone it would
// leave the largest sampled keys — those a copier moves in many chunks,
// where it is most likely to go wrong — compared by count only in every
// run whose budget does not cover the whole sample. With one lane from the
// top, the largest keys are digested whenever the budget covers them, at
// the cost of one worker in digestWorkers. The keys asked for by name
// (the largest the analysis found) go before any drawn at random, on
// every lane, so that the budget reaches them first.
type digestQueue struct {
	mu    sync.Mutex
	tiers [2]digestTier // first, then the rest
}

// digestTier is one part of the queue: keys[lo:hi] are left, by size.
type digestTier struct {
	keys   []bigKey
	lo, hi int
}

func newDigestQueue(big []bigKey) *digestQueue {
	q := &digestQueue{}
	for _, b := range big {
		i := 1
		if b.first {
			i = 0
		}
		q.tiers[i].keys = append(q.tiers[i].keys, b)
	}
	for i := range q.tiers {
		t := &q.tiers[i]
		slices.SortStableFunc(t.keys, func(a, b bigKey) int { return cmp.Compare(a.n, b.n) })
		t.hi = len(t.keys)
	}
	return q
}

// next returns the next key for a worker of the given lane; false when
// none is left.
func (q *digestQueue) next(lane int) (bigKey, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := range q.tiers {
		t := &q.tiers[i]
		if t.lo >= t.hi {
			continue
		}
		if lane == 0 {
			t.hi--
			return t.keys[t.hi], true
		}
		t.lo++
		return t.keys[t.lo-1], true
	}
	return bigKey{}, false
}

// digestAll compares the big keys by digest within the budget, in the
// order of digestQueue; the keys it does not finish are compared by count
// only.
func (v *run) digestAll(ctx context.Context, started time.Time, big []bigKey) {
	if len(big) == 0 {
		return
	}
	t0 := time.Now()
	queue := newDigestQueue(big)
	deadline := t0.Add(v.o.Budget)
	if d, ok := ctx.Deadline(); ok && d.Add(-deadlineMargin).Before(deadline) {
		deadline = d.Add(-deadlineMargin)
	}
	bctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	seeds := [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		elements atomic.Int64
	)
	// countOnlyLocked records a key compared by count only; mu held.
	countOnlyLocked := func(b bigKey, reason string) {
		v.rep.Sample.CountOnly++
		v.rep.CountOnly = append(v.rep.CountOnly, CountOnly{DB: b.pair.src, Key: v.name(b.key), Type: b.typ, Elements: b.n, Reason: reason})
	}
	countOnly := func(b bigKey, reason string) {
		mu.Lock()
		defer mu.Unlock()
		countOnlyLocked(b, reason)
	}
	for lane := range min(digestWorkers, len(big)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				b, ok := queue.next(lane)
				if !ok {
					return
				}
				if ctx.Err() != nil {
					return
				}
				if bctx.Err() != nil {
					countOnly(b, ReasonBudget)
					continue
				}
				s, d, err := v.digestPair(bctx, b, seeds)
				elements.Add(s.elements + d.elements)
				switch {
				case ctx.Err() != nil:
					return
				case err != nil && bctx.Err() != nil:
					countOnly(b, ReasonBudget)
				case errors.Is(err, errUnstable):
					countOnly(b, ReasonUnstableScan)
				case err != nil:
					mu.Lock()
					v.issue(Issue{Kind: IssueRead, DB: b.pair.src, Key: v.name(b.key), Type: b.typ, Detail: "digest: " + err.Error()})
					mu.Unlock()
				default: // both digests complete (even if the budget ran out just after)
					ft := v.fieldTTLVerdict(bctx, b, s, d)
					if ctx.Err() != nil {
						return
					}
					mu.Lock()
					differs := s.sum != d.sum
					if differs {
						v.issue(Issue{Kind: IssueDigest, DB: b.pair.src, Key: v.name(b.key), Type: b.typ, Detail: fmt.Sprintf(
							"same length (%s) on both sides, but the content differs (digest of every %s, streamed with %s)",
							size(b.typ, b.n), element(b.typ), reader(b.typ))})
					}
					switch {
					case ft.err != nil:
						v.issue(Issue{Kind: IssueRead, DB: b.pair.src, Key: v.name(b.key), Type: b.typ, Detail: "field TTLs: " + ft.err.Error()})
					case ft.detail != "":
						v.issue(Issue{Kind: IssueTTL, DB: b.pair.src, Key: v.name(b.key), Type: b.typ, Detail: ft.detail})
					}
					if ft.unresolved && !differs && ft.detail == "" && ft.err == nil {
						// Same content; the field expiries neither proven
						// equal nor found to differ in time.
						countOnlyLocked(b, ReasonBudget)
					} else {
						v.rep.Sample.Digest++
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	v.rep.Sample.DigestElements = elements.Load()
	v.rep.Sample.DigestMs = time.Since(t0).Milliseconds()
	v.o.Log.Info("digests", "keys", len(big), "elements", elements.Load(), "ms", v.rep.Sample.DigestMs,
		"sinceStartMs", time.Since(started).Milliseconds())
}

// digestPair digests one key on both sides at once; a side whose element
// count disagrees with the probed length is read again once.
func (v *run) digestPair(ctx context.Context, b bigKey, seeds [2]maphash.Seed) (digestResult, digestResult, error) {
	scl, err := v.src.Client(b.pair.src)
	if err != nil {
		return digestResult{}, digestResult{}, err
	}
	dcl, err := v.dst.Client(b.pair.dst)
	if err != nil {
		return digestResult{}, digestResult{}, err
	}
	// Field expiries: see readFieldTTLs.
	var sx, dx int64
	if readSrc, readDst := v.readFieldTTLs(b.pair); b.typ == "hash" && readSrc {
		sx = v.expiryBucket()
		if readDst {
			dx = sx
		}
	}
	var s, d digestResult
	err = both(
		func() (err error) { s, err = digestStable(ctx, scl, b, seeds, sx); return wrap("source", err) },
		func() (err error) { d, err = digestStable(ctx, dcl, b, seeds, dx); return wrap("target", err) },
	)
	return s, d, err
}

func digestStable(ctx context.Context, c valkey.Client, b bigKey, seeds [2]maphash.Seed, expiryBucket int64) (digestResult, error) {
	var r digestResult
	var err error
	for range digestTries {
		r, err = digestKey(ctx, c, b.typ, b.key, seeds, expiryBucket)
		if err != nil {
			return r, err
		}
		if r.elements == b.n {
			return r, nil
		}
	}
	return r, fmt.Errorf("%d read, %d expected: %w", r.elements, b.n, errUnstable)
}

// digestKey streams one key of type typ into a digest. For a hash,
// expiryBucket > 0 also reads every field's expiry into an expiry digest
// with buckets of that many milliseconds (see fieldttl.go).
func digestKey(ctx context.Context, c valkey.Client, typ, key string, seeds [2]maphash.Seed, expiryBucket int64) (digestResult, error) {
	b := c.B()
	var d *digester
	var err error
	switch typ {
	case "hash":
		d = newDigester(seeds, false)
		if expiryBucket <= 0 {
			err = scanHash(ctx, c, key, d, nil)
			break
		}
		x := &expiries{bucket: expiryBucket, d: newDigester(seeds, false)}
		err = scanHash(ctx, c, key, d, x)
		sum := x.d.sum128()
		return digestResult{sum: d.sum128(), elements: d.elements, expiry: &sum, withTTL: x.withTTL}, err
	case "set":
		d = newDigester(seeds, false)
		err = scanSet(ctx, c, key, d)
	case "zset":
		d = newDigester(seeds, true)
		err = ranges(ctx, c, func(lo, hi int64) valkey.Completed {
			return b.Zrange().Key(key).Min(strconv.FormatInt(lo, 10)).Max(strconv.FormatInt(hi, 10)).Withscores().Build()
		}, digestChunk, func(r valkey.ValkeyResult) (int, error) {
			zs, err := r.AsZScores()
			for _, z := range zs {
				var bits [8]byte
				binary.BigEndian.PutUint64(bits[:], math.Float64bits(z.Score))
				d.add(z.Member, string(bits[:]))
			}
			return len(zs), err
		})
	case "list":
		d = newDigester(seeds, true)
		err = ranges(ctx, c, func(lo, hi int64) valkey.Completed {
			return b.Lrange().Key(key).Start(lo).Stop(hi).Build()
		}, digestChunk, func(r valkey.ValkeyResult) (int, error) {
			els, err := r.AsStrSlice()
			for _, e := range els {
				d.add(e)
			}
			return len(els), err
		})
	case "string":
		d = newDigester(seeds, true)
		err = ranges(ctx, c, func(lo, hi int64) valkey.Completed {
			return b.Getrange().Key(key).Start(lo).End(hi).Build()
		}, digestBytes, func(r valkey.ValkeyResult) (int, error) {
			s, err := r.ToString()
			d.addRaw(s)
			return len(s), err
		})
	case "stream":
		d = newDigester(seeds, true)
		err = streamElements(ctx, c, key, d)
	default:
		return digestResult{}, fmt.Errorf("type %q has no digest", typ)
	}
	return digestResult{sum: d.sum128(), elements: d.elements}, err
}

// scanSet feeds a set's members, read with SSCAN, into d.
func scanSet(ctx context.Context, c valkey.Client, key string, d *digester) error {
	for cursor := uint64(0); ; {
		page, err := c.Do(ctx, c.B().Sscan().Key(key).Cursor(cursor).Count(digestChunk).Build()).AsScanEntry()
		if err != nil {
			return err
		}
		for _, m := range page.Elements {
			d.add(m)
		}
		if cursor = page.Cursor; cursor == 0 {
			return nil
		}
	}
}

// ranges reads index-addressed chunks [lo, lo+step-1], digestPipeline at a
// time, in order, until a chunk comes back short.
func ranges(ctx context.Context, c valkey.Client, mk func(lo, hi int64) valkey.Completed, step int,
	feed func(valkey.ValkeyResult) (int, error)) error {
	for lo := int64(0); ; {
		cmds := make(valkey.Commands, digestPipeline)
		for i := range cmds {
			from := lo + int64(i*step)
			cmds[i] = mk(from, from+int64(step)-1)
		}
		for _, r := range c.DoMulti(ctx, cmds...) {
			n, err := feed(r)
			if err != nil {
				return err
			}
			if n < step {
				return nil
			}
		}
		lo += int64(digestPipeline * step)
	}
}

// streamElements feeds a stream's entries (ID, then fields and values) in
// ID order into d.
func streamElements(ctx context.Context, c valkey.Client, key string, d *digester) error {
	start := "-"
	for {
		entries, err := streamEntries(c.Do(ctx, c.B().Xrange().Key(key).Start(start).End("+").Count(digestChunk).Build()))
		if err != nil {
			return err
		}
		for _, e := range entries {
			d.add(append([]string{e.id}, e.fields...)...)
		}
		if len(entries) < digestChunk {
			return nil
		}
		start = "(" + entries[len(entries)-1].id
	}
}

func element(typ string) string {
	switch typ {
	case "hash":
		return "field and value"
	case "set", "zset":
		return "member"
	case "stream":
		return "entry"
	case "string":
		return "byte"
	}
	return "element"
}

func reader(typ string) string {
	return map[string]string{"hash": "HSCAN", "set": "SSCAN", "zset": "ZRANGE by rank, exact scores",
		"list": "LRANGE", "stream": "XRANGE", "string": "GETRANGE"}[typ]
}
