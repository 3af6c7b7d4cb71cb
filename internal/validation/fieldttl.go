package validation

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"
)

// Per-field expiry of big hashes (Redis 7.4+, Valkey 9+), compared along
// with their digests. Small hashes have theirs compared in full (HPTTL of
// every field, compareFull).
//
// Reading. When the source has per-field expiry and either side may hold
// some in the database (INFO keyspace, see findFieldTTLs), each side's
// HSCAN pages are digested together with the expiry instant of every
// field: the HPEXPIRETIME of one page's fields goes in the same pipeline
// as the HSCAN of the next page, so the expiries cost no extra round trip
// (but about half again the digest time, see BenchmarkDigestHashFieldTTLs).
// The target is read so only when it has per-field expiry too; when it
// has not, the source's fields that have an expiry are counted and
// reported (they would never expire on the target).
//
// Comparing within a tolerance, order-insensitively. Besides the content
// digest (field, value), each side folds an expiry digest: the sum of the
// hashes of (field, "no expiry") or (field, floor(instant / tolerance)),
// instants in milliseconds as HPEXPIRETIME gives them.
//   - Equal expiry digests: every field has an expiry on both sides or on
//     neither, and its two instants fall in the same bucket, so they lie
//     less than one tolerance apart: proven, in the same single pass. A
//     copy that carries the instant itself (RESTORE, HPEXPIREAT with the
//     source's HPEXPIRETIME, as the transfer does) gives equal instants and
//     always lands here.
//   - Different expiry digests: a field's expiry was lost or added, or an
//     instant moved; or two instants within the tolerance fall on both
//     sides of a bucket boundary (a copy that carries remaining time is a
//     few milliseconds late). A sum of hashes cannot tell these apart, so
//     the key is then checked field by field: the source is scanned again
//     (HSCAN NOVALUES) and each page's fields have their HPEXPIRETIME read
//     on both sides — a hash field is addressed by name, so no order is
//     needed — and only lost or added expiries, and instants more than the
//     tolerance apart, are counted as differences.
//
// Instants are the servers' own (HPEXPIRETIME), which need no allowance
// for the time elapsed between the reads, unlike the key TTLs read as
// remaining time (PTTL); a clock offset between the two servers is not
// seen here.

// findFieldTTLs learns, per database, where no hash has a field expiry:
// INFO keyspace's subexpiry (Redis 7.4+: hashes with field expiries) is 0,
// or the database holds no key, on every master. Where both sides have
// none, no expiry is read. A side whose INFO says nothing of it may have
// some.
func (v *run) findFieldTTLs(ctx context.Context) {
	if !v.fieldTTL.src {
		return
	}
	var sdbs, ddbs []int
	for _, p := range v.pairs {
		sdbs, ddbs = append(sdbs, p.src), append(ddbs, p.dst)
	}
	v.noFieldTTL.src = noFieldTTL(ctx, v.src, v.smasters, sdbs)
	if v.fieldTTL.dst {
		v.noFieldTTL.dst = noFieldTTL(ctx, v.dst, v.dmasters, ddbs)
	}
}

// readFieldTTLs says whether to read the hash field expiries of the
// source and of the target in the database pair p: on the source when it
// has per-field expiry and either side may have some in p, on the target
// then too when it has per-field expiry.
func (v *run) readFieldTTLs(p dbPair) (src, dst bool) {
	if !v.fieldTTL.src {
		return false, false
	}
	none := v.noFieldTTL.src[p.src] && (!v.fieldTTL.dst || v.noFieldTTL.dst[p.dst])
	return !none, !none && v.fieldTTL.dst
}

// noFieldTTL returns the databases among dbs in which no hash has a field
// expiry on any of the masters; none when INFO cannot tell.
func noFieldTTL(ctx context.Context, c Conn, masters []string, dbs []int) map[int]bool {
	free := map[int]bool{}
	for _, db := range dbs {
		free[db] = true
	}
	for _, addr := range masters {
		node, err := c.Node(addr, 0)
		if err != nil {
			return nil
		}
		text, err := node.Do(ctx, node.B().Info().Section("keyspace").Build()).ToString()
		if err != nil {
			return nil
		}
		for db, n := range subexpiry(text) {
			if n != 0 {
				delete(free, db)
			}
		}
	}
	return free
}

// subexpiry parses INFO keyspace: the subexpiry count of each database
// listed, -1 when its line has none.
func subexpiry(keyspace string) map[int]int64 {
	out := map[int]int64{}
	for line := range strings.Lines(keyspace) {
		name, fields, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "db") {
			continue
		}
		db, err := strconv.Atoi(name[2:])
		if err != nil {
			continue
		}
		out[db] = -1
		for kv := range strings.SplitSeq(fields, ",") {
			if k, val, ok := strings.Cut(kv, "="); ok && k == "subexpiry" {
				if n, err := strconv.ParseInt(val, 10, 64); err == nil {
					out[db] = n
				}
			}
		}
	}
	return out
}

// expiries folds the expiries of one side's hash fields.
type expiries struct {
	bucket  int64 // ms
	d       *digester
	withTTL int64
}

// Tags of the expiry digest's elements.
const (
	tagNoExpiry = 'n'
	tagExpiry   = 'e'
	tagGone     = 'g' // the field went away (expired) between HSCAN and HPEXPIRETIME
)

// expiryBucket is the width of the expiry buckets: the tolerance, in ms.
func (v *run) expiryBucket() int64 {
	return max(v.o.TTLTolerance.Milliseconds(), 1)
}

// fold digests one HSCAN page (field/value pairs) with the expiry instants
// of its fields.
func (x *expiries) fold(content *digester, pairs []string, ats []int64) error {
	if len(ats) != len(pairs)/2 {
		return fmt.Errorf("HPEXPIRETIME: %d replies for %d fields", len(ats), len(pairs)/2)
	}
	for i, at := range ats {
		f := pairs[2*i]
		content.add(f, pairs[2*i+1])
		switch {
		case at >= 0:
			x.withTTL++
			x.d.addTagged(f, tagExpiry, at/x.bucket)
		case at == -1:
			x.d.addTagged(f, tagNoExpiry, 0)
		default:
			x.d.addTagged(f, tagGone, 0)
		}
	}
	return nil
}

// scanHash feeds a hash's field/value pairs, read with HSCAN, into d. With
// x, the expiries of each page's fields are read in the pipeline of the
// next page's HSCAN and folded into x.
func scanHash(ctx context.Context, c valkey.Client, key string, d *digester, x *expiries) error {
	var pending []string // the previous page, waiting for its expiries
	cursor, more := uint64(0), true
	for more || len(pending) > 0 {
		cmds := make(valkey.Commands, 0, 2)
		if more {
			cmds = append(cmds, c.B().Hscan().Key(key).Cursor(cursor).Count(digestChunk).Build())
		}
		if len(pending) > 0 {
			cmds = append(cmds, expireTimes(c, key, pairFields(pending)))
		}
		res := c.DoMulti(ctx, cmds...)
		var page []string
		if more {
			e, err := res[0].AsScanEntry()
			if err != nil {
				return err
			}
			if len(e.Elements)%2 != 0 {
				return fmt.Errorf("HSCAN: %d elements, not field/value pairs", len(e.Elements))
			}
			page, cursor, more = e.Elements, e.Cursor, e.Cursor != 0
		}
		if len(pending) > 0 {
			ats, err := res[len(res)-1].AsIntSlice()
			if err != nil {
				return fmt.Errorf("HPEXPIRETIME: %w", err)
			}
			if err := x.fold(d, pending, ats); err != nil {
				return err
			}
		}
		if x == nil {
			for i := 0; i+1 < len(page); i += 2 {
				d.add(page[i], page[i+1])
			}
			page = nil
		}
		pending = page
	}
	return nil
}

func pairFields(pairs []string) []string {
	out := make([]string, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, pairs[i])
	}
	return out
}

func expireTimes(c valkey.Client, key string, fields []string) valkey.Completed {
	return c.B().Hpexpiretime().Key(key).Fields().Numfields(int64(len(fields))).Field(fields...).Build()
}

// fieldTTLResult is the verdict on a big hash's field expiries.
type fieldTTLResult struct {
	detail string // an IssueTTL detail; "" when no difference was found
	// unresolved: the expiry digests differ, the field-by-field check did
	// not finish within the budget and found nothing certain so far.
	unresolved bool
	err        error // a read error of the field-by-field check
}

// fieldTTLVerdict compares the field expiries of a big hash whose digests
// were read on both sides, checking field by field when the expiry digests
// differ (see the comment at the top of this file).
func (v *run) fieldTTLVerdict(ctx context.Context, b bigKey, s, d digestResult) fieldTTLResult {
	switch {
	case s.expiry == nil:
		return fieldTTLResult{}
	case d.expiry == nil:
		if s.withTTL == 0 {
			return fieldTTLResult{}
		}
		return fieldTTLResult{detail: fmt.Sprintf(
			"%d of %d fields have a TTL on the source; the target has no per-field expiry, so they never expire there", s.withTTL, b.n)}
	case *s.expiry == *d.expiry:
		return fieldTTLResult{}
	}
	diffs, err := v.compareFieldTTLs(ctx, b)
	if err != nil {
		if ctx.Err() != nil && transportErr(err) { // the budget ran out
			if s.withTTL != d.withTTL {
				return fieldTTLResult{detail: fmt.Sprintf("%d fields have a TTL on the source, %d on the target"+
					" (the field-by-field check did not finish within the budget)", s.withTTL, d.withTTL)}
			}
			return fieldTTLResult{unresolved: true}
		}
		return fieldTTLResult{err: err}
	}
	return fieldTTLResult{detail: diffs.detail(v.o.TTLTolerance)}
}

// fieldTTLDiffs counts the field expiries that differ.
type fieldTTLDiffs struct {
	fields               int64 // source fields checked
	lost, added, differs int64
	examples             []string
}

const maxExamples = 3

func (r *fieldTTLDiffs) detail(tol time.Duration) string {
	n := r.lost + r.added + r.differs
	if n == 0 {
		return ""
	}
	var what []string
	for _, c := range []struct {
		n    int64
		text string
	}{{r.lost, "lost their TTL"}, {r.added, "gained one"}, {r.differs, "expire more than " + tol.String() + " apart"}} {
		if c.n > 0 {
			what = append(what, fmt.Sprintf("%d %s", c.n, c.text))
		}
	}
	s := fmt.Sprintf("hash field TTLs differ in %d of %d fields (%s; compared field by field): %s",
		n, r.fields, strings.Join(what, ", "), strings.Join(r.examples, "; "))
	if more := n - int64(len(r.examples)); more > 0 {
		s += fmt.Sprintf("; and %d more", more)
	}
	return s
}

// compareFieldTTLs scans the source's fields of a big hash and reads
// their expiries on both sides, a page at a time.
func (v *run) compareFieldTTLs(ctx context.Context, b bigKey) (fieldTTLDiffs, error) {
	var r fieldTTLDiffs
	scl, err := v.src.Client(b.pair.src)
	if err != nil {
		return r, fmt.Errorf("source: %w", err)
	}
	dcl, err := v.dst.Client(b.pair.dst)
	if err != nil {
		return r, fmt.Errorf("target: %w", err)
	}
	var pending []string // fields of the previous page
	cursor, more := uint64(0), true
	for more || len(pending) > 0 {
		cmds := make(valkey.Commands, 0, 2)
		if more {
			cmds = append(cmds, scl.B().Hscan().Key(b.key).Cursor(cursor).Count(digestChunk).Novalues().Build())
		}
		if len(pending) > 0 {
			cmds = append(cmds, expireTimes(scl, b.key, pending))
		}
		var sres []valkey.ValkeyResult
		var dats []int64
		err := both(
			func() error { sres = scl.DoMulti(ctx, cmds...); return nil },
			func() (err error) {
				if len(pending) > 0 {
					dats, err = dcl.Do(ctx, expireTimes(dcl, b.key, pending)).AsIntSlice()
				}
				return wrap("target: HPEXPIRETIME", err)
			},
		)
		if err != nil {
			return r, err
		}
		var page []string
		if more {
			e, err := sres[0].AsScanEntry()
			if err != nil {
				return r, fmt.Errorf("source: HSCAN: %w", err)
			}
			page, cursor, more = e.Elements, e.Cursor, e.Cursor != 0
		}
		if len(pending) > 0 {
			sats, err := sres[len(sres)-1].AsIntSlice()
			if err != nil {
				return r, fmt.Errorf("source: HPEXPIRETIME: %w", err)
			}
			if len(sats) != len(pending) || len(dats) != len(pending) {
				return r, fmt.Errorf("HPEXPIRETIME: %d and %d replies for %d fields", len(sats), len(dats), len(pending))
			}
			now := time.Now().UnixMilli()
			for i, f := range pending {
				v.compareExpiry(&r, f, sats[i], dats[i], now)
			}
		}
		pending = page
	}
	return r, nil
}

// compareExpiry compares one field's expiry instants (ms; -1: none, -2:
// no such field).
func (v *run) compareExpiry(r *fieldTTLDiffs, field string, s, d, now int64) {
	r.fields++
	if s == -2 || d == -2 {
		return // expired in between, or a field the content digest reports
	}
	tol := v.o.TTLTolerance.Milliseconds()
	var example string
	switch {
	case s == -1 && d == -1:
		return
	case d == -1:
		r.lost++
		example = fmt.Sprintf("TTL lost: the source field expires in %s, the target field never does", ms(s-now))
	case s == -1:
		r.added++
		example = fmt.Sprintf("TTL added: the target field expires in %s, the source field never does", ms(d-now))
	case abs(s-d) <= tol:
		return
	default:
		r.differs++
		rel := "later"
		if d < s {
			rel = "earlier"
		}
		example = fmt.Sprintf("TTL differs: the source field expires in %s, the target field in %s (%s %s; tolerance %s)",
			ms(s-now), ms(d-now), msDur(abs(s-d)), rel, v.o.TTLTolerance)
	}
	if len(r.examples) < maxExamples {
		r.examples = append(r.examples, "field "+v.name(field)+": "+example)
	}
}
