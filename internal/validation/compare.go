package validation

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"
)

// probeBatch is how many keys one probe pipeline carries.
const probeBatch = 200

// probe is what one side says about one key: type, TTL and length, with
// the local times around the pipeline that read the TTL.
type probe struct {
	typ        string
	pttl       int64 // -1: no expiry
	n          int64 // elements; bytes for a string
	sent, recv time.Time
	err        error // an error reply for this key
}

// bigKey is a key whose content is compared by digest.
type bigKey struct {
	pair dbPair
	key  string
	typ  string
	n    int64
	// first: a key of Options.Always, digested ahead of the others.
	first bool
}

// compareSample draws the source sample and compares it key by key. Keys
// too big for a full comparison are returned for the digest phase.
func (v *run) compareSample(ctx context.Context) ([]bigKey, error) {
	keys, exhaustive, err := v.draw(ctx, v.src, false, v.o.Sample)
	if err != nil {
		return nil, err
	}
	v.rep.Sample.Sampled = len(keys)
	v.rep.Sample.Exhaustive = exhaustive
	always, err := v.alwaysKeys(ctx, keys)
	if err != nil {
		return nil, err
	}
	v.rep.Sample.Always = len(always)
	keys = append(keys, always...)
	var big []bigKey
	for _, group := range byPair(keys) {
		p := group[0].pair
		if p.noTarget {
			continue // the key count issue says it all
		}
		scl, err := v.src.Client(p.src)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		dcl, err := v.dst.Client(p.dst)
		if err != nil {
			return nil, fmt.Errorf("target: %w", err)
		}
		for batch := range slices.Chunk(group, probeBatch) {
			names := make([]string, len(batch))
			for i, k := range batch {
				names[i] = k.key
			}
			b, err := v.compareBatch(ctx, p, scl, dcl, names)
			if err != nil {
				return nil, err
			}
			big = append(big, b...)
		}
	}
	return big, nil
}

// compareBatch probes keys on both sides, reports missing keys and type,
// TTL and length differences, compares small keys in full and returns
// the big ones.
func (v *run) compareBatch(ctx context.Context, p dbPair, scl, dcl valkey.Client, keys []string) ([]bigKey, error) {
	var sp, dp []probe
	err := both(
		func() (err error) { sp, err = probeKeys(ctx, scl, keys); return wrap("source", err) },
		func() (err error) { dp, err = probeKeys(ctx, dcl, keys); return wrap("target", err) },
	)
	if err != nil {
		return nil, err
	}
	var small []int
	var big []bigKey
	for i, k := range keys {
		s, d := sp[i], dp[i]
		name := v.name(k)
		switch {
		case s.err != nil:
			v.issue(Issue{Kind: IssueRead, DB: p.src, Key: name, Detail: "reading the source: " + s.err.Error()})
			continue
		case s.typ == "none":
			v.rep.Sample.Vanished++ // expired or deleted since it was drawn
			continue
		case d.err != nil:
			v.issue(Issue{Kind: IssueRead, DB: p.src, Key: name, Type: s.typ, Detail: "reading the target: " + d.err.Error()})
			continue
		case d.typ == "none":
			if s.pttl >= 0 && time.Duration(s.pttl)*time.Millisecond <= v.o.TTLTolerance {
				v.rep.Sample.Vanished++ // expiring: gone on the target a moment early
				continue
			}
			v.issue(Issue{Kind: IssueMissing, DB: p.src, Key: name, Type: s.typ,
				Detail: fmt.Sprintf("not on the target (source: %s, %s%s)", s.typ, size(s.typ, s.n), ttlText(s.pttl))})
			continue
		case s.typ != d.typ:
			v.issue(Issue{Kind: IssueType, DB: p.src, Key: name, Type: s.typ,
				Detail: fmt.Sprintf("type differs: %s on the source, %s on the target", s.typ, d.typ)})
			continue
		}
		if detail := v.ttlDiff(s, d, "key"); detail != "" {
			v.issue(Issue{Kind: IssueTTL, DB: p.src, Key: name, Type: s.typ, Detail: detail})
		}
		switch {
		case !knownType(s.typ):
			// A module type (or one newer than this code): type and TTL
			// only; its content has no portable reader.
			v.rep.Sample.CountOnly++
			v.rep.CountOnly = append(v.rep.CountOnly, CountOnly{DB: p.src, Key: name, Type: s.typ, Reason: ReasonUnknownType})
		case s.n != d.n:
			v.issue(Issue{Kind: IssueLength, DB: p.src, Key: name, Type: s.typ,
				Detail: fmt.Sprintf("%s length differs: %s on the source, %s on the target", s.typ, size(s.typ, s.n), size(s.typ, d.n))})
		case s.typ == "string" && s.n <= FullMaxBytes, s.typ != "string" && s.n <= int64(v.o.FullMax):
			small = append(small, i)
		default:
			big = append(big, bigKey{pair: p, key: k, typ: s.typ, n: s.n, first: v.first[KeyRef{DB: p.src, Key: k}]})
		}
	}
	if err := v.compareFull(ctx, p, scl, dcl, keys, sp, small); err != nil {
		return nil, err
	}
	// A big stream's metadata (last ID, groups) is compared here; its
	// entries by digest.
	var streams []int
	for i, b := range big {
		if b.typ == "stream" {
			streams = append(streams, i)
		}
	}
	if len(streams) > 0 {
		names := make([]string, len(streams))
		for j, i := range streams {
			names[j] = big[i].key
		}
		var sm, dm []*streamMeta
		err := both(
			func() (err error) { sm, err = fetchStreamMeta(ctx, scl, names); return wrap("source", err) },
			func() (err error) { dm, err = fetchStreamMeta(ctx, dcl, names); return wrap("target", err) },
		)
		if err != nil {
			return nil, err
		}
		for j, i := range streams {
			for k, m := range []*streamMeta{sm[j], dm[j]} {
				if m.err != nil {
					v.issue(Issue{Kind: IssueRead, DB: p.src, Key: v.name(big[i].key), Type: "stream",
						Detail: "reading the " + []string{"source", "target"}[k] + "'s stream metadata: " + m.err.Error()})
				}
			}
			if detail := v.diffStreamMeta(sm[j], dm[j]); detail != "" {
				v.issue(Issue{Kind: IssueValue, DB: p.src, Key: v.name(big[i].key), Type: "stream", Detail: detail})
			}
		}
	}
	return big, nil
}

// probeKeys reads TYPE and PTTL of every key in one pipeline, then the
// length of each in a second one.
func probeKeys(ctx context.Context, c valkey.Client, keys []string) ([]probe, error) {
	out := make([]probe, len(keys))
	cmds := make(valkey.Commands, 0, 2*len(keys))
	for _, k := range keys {
		cmds = append(cmds, c.B().Type().Key(k).Build(), c.B().Pttl().Key(k).Build())
	}
	sent := time.Now()
	res := c.DoMulti(ctx, cmds...)
	recv := time.Now()
	var lens valkey.Commands
	var idx []int
	for i, k := range keys {
		p := &out[i]
		p.sent, p.recv = sent, recv
		typ, err := res[2*i].ToString()
		if err == nil {
			p.pttl, err = res[2*i+1].AsInt64()
		}
		if err != nil {
			if transportErr(err) {
				return nil, err
			}
			p.err = err
			continue
		}
		p.typ = typ
		if p.pttl == -2 { // expired between the two reads
			p.typ = "none"
		}
		if cmd, ok := lengthCmd(c, p.typ, k); ok {
			lens = append(lens, cmd)
			idx = append(idx, i)
		}
	}
	if len(lens) == 0 {
		return out, nil
	}
	for j, r := range c.DoMulti(ctx, lens...) {
		p := &out[idx[j]]
		n, err := r.AsInt64()
		if err != nil {
			if transportErr(err) {
				return nil, err
			}
			p.err = err
			continue
		}
		p.n = n
	}
	return out, nil
}

func knownType(typ string) bool {
	switch typ {
	case "string", "hash", "list", "set", "zset", "stream":
		return true
	}
	return false
}

func lengthCmd(c valkey.Client, typ, k string) (valkey.Completed, bool) {
	b := c.B()
	switch typ {
	case "string":
		return b.Strlen().Key(k).Build(), true
	case "hash":
		return b.Hlen().Key(k).Build(), true
	case "list":
		return b.Llen().Key(k).Build(), true
	case "set":
		return b.Scard().Key(k).Build(), true
	case "zset":
		return b.Zcard().Key(k).Build(), true
	case "stream":
		return b.Xlen().Key(k).Build(), true
	}
	return valkey.Completed{}, false
}

// ttlDiff compares expiry instants. Each side's instant is known within
// the window of its read (sent..recv plus the PTTL); the two may lie
// TTLTolerance apart beyond that.
func (v *run) ttlDiff(s, d probe, what string) string {
	tol := v.o.TTLTolerance
	switch {
	case s.pttl < 0 && d.pttl < 0:
		return ""
	case s.pttl >= 0 && d.pttl < 0:
		return fmt.Sprintf("TTL lost: the source %s expires in %s, the target %s never does", what, ms(s.pttl), what)
	case s.pttl < 0:
		return fmt.Sprintf("TTL added: the target %s expires in %s, the source %s never does", what, ms(d.pttl), what)
	}
	sLo, sHi := s.sent.Add(msDur(s.pttl)), s.recv.Add(msDur(s.pttl))
	dLo, dHi := d.sent.Add(msDur(d.pttl)), d.recv.Add(msDur(d.pttl))
	if dLo.Sub(sHi) <= tol && sLo.Sub(dHi) <= tol {
		return ""
	}
	return fmt.Sprintf("TTL differs: the source %s expires in %s, the target %s in %s (tolerance %s)",
		what, ms(s.pttl), what, ms(d.pttl), tol)
}

// compareFull fetches the small keys whole on both sides and compares them.
func (v *run) compareFull(ctx context.Context, p dbPair, scl, dcl valkey.Client, keys []string, sp []probe, idx []int) error {
	if len(idx) == 0 {
		return nil
	}
	names := make([]string, len(idx))
	types := make([]string, len(idx))
	for j, i := range idx {
		names[j], types[j] = keys[i], sp[i].typ
	}
	var sv, dv []value
	err := both(
		func() (err error) { sv, err = fetch(ctx, scl, names, types); return wrap("source", err) },
		func() (err error) { dv, err = fetch(ctx, dcl, names, types); return wrap("target", err) },
	)
	if err != nil {
		return err
	}
	// Hash field TTLs: read for hashes when the source has per-field
	// expiry and either side may have some in this database.
	readSrc, readDst := v.readFieldTTLs(p)
	var hashes []int
	if readSrc {
		for j, t := range types {
			if t == "hash" && sv[j].err == nil && dv[j].err == nil && len(sv[j].hash) > 0 {
				hashes = append(hashes, j)
			}
		}
	}
	if len(hashes) > 0 {
		err := both(
			func() error { return wrap("source", fieldTTLs(ctx, scl, names, sv, hashes)) },
			func() error {
				if !readDst {
					return nil
				}
				return wrap("target", fieldTTLs(ctx, dcl, names, dv, hashes))
			},
		)
		if err != nil {
			return err
		}
	}
	for j, k := range names {
		name := v.name(k)
		switch {
		case sv[j].err != nil:
			v.issue(Issue{Kind: IssueRead, DB: p.src, Key: name, Type: types[j], Detail: "reading the source: " + sv[j].err.Error()})
			continue
		case dv[j].err != nil:
			v.issue(Issue{Kind: IssueRead, DB: p.src, Key: name, Type: types[j], Detail: "reading the target: " + dv[j].err.Error()})
			continue
		}
		v.rep.Sample.Full++
		if detail := v.diffValue(types[j], sv[j], dv[j]); detail != "" {
			v.issue(Issue{Kind: IssueValue, DB: p.src, Key: name, Type: types[j], Detail: detail})
		}
		if types[j] == "hash" && sv[j].fieldTTL != nil {
			if detail := v.diffFieldTTLs(sv[j], dv[j]); detail != "" {
				v.issue(Issue{Kind: IssueTTL, DB: p.src, Key: name, Type: "hash", Detail: detail})
			}
		}
	}
	return nil
}

// value is a whole small value as read from one side.
type value struct {
	str    string
	hash   map[string]string
	list   []string // a list's elements; a set's members, sorted
	zset   []valkey.ZScore
	stream []entry
	meta   *streamMeta
	// fieldTTL maps hash fields to their remaining TTL (ms), read in the
	// window sent..recv; nil when not read.
	fieldTTL   map[string]int64
	sent, recv time.Time
	err        error
}

type entry struct {
	id     string
	fields []string
}

type streamMeta struct {
	lastID, maxDeletedID string
	entriesAdded         int64
	groups               []group
	err                  error
}

type group struct {
	name, lastDelivered string
	entriesRead         int64 // -1: not reported
	consumers           int64
	pending             int64 // XINFO GROUPS
	pel                 *pelSummary
}

// pelSummary is the summary form of XPENDING key group: the PEL's size,
// its smallest and largest IDs and how many entries each consumer holds.
// Idle times are not compared: they change.
type pelSummary struct {
	count      int64
	minID      string
	maxID      string
	byConsumer map[string]int64
}

// fetch reads small values whole, one pipeline per side.
func fetch(ctx context.Context, c valkey.Client, keys, types []string) ([]value, error) {
	b := c.B()
	var cmds valkey.Commands
	start := make([]int, len(keys))
	for i, k := range keys {
		start[i] = len(cmds)
		switch types[i] {
		case "string":
			cmds = append(cmds, b.Get().Key(k).Build())
		case "hash":
			cmds = append(cmds, b.Hgetall().Key(k).Build())
		case "list":
			cmds = append(cmds, b.Lrange().Key(k).Start(0).Stop(-1).Build())
		case "set":
			cmds = append(cmds, b.Smembers().Key(k).Build())
		case "zset":
			cmds = append(cmds, b.Zrange().Key(k).Min("0").Max("-1").Withscores().Build())
		case "stream":
			cmds = append(cmds, b.Xrange().Key(k).Start("-").End("+").Build(),
				b.XinfoStream().Key(k).Build(), b.XinfoGroups().Key(k).Build())
		}
	}
	res := c.DoMulti(ctx, cmds...)
	out := make([]value, len(keys))
	for i := range keys {
		r := res[start[i]]
		v := &out[i]
		var err error
		switch types[i] {
		case "string":
			v.str, err = r.ToString()
		case "hash":
			v.hash, err = r.AsStrMap()
		case "list":
			v.list, err = r.AsStrSlice()
		case "set":
			v.list, err = r.AsStrSlice()
			slices.Sort(v.list)
		case "zset":
			v.zset, err = r.AsZScores()
			slices.SortFunc(v.zset, func(a, b valkey.ZScore) int { return strings.Compare(a.Member, b.Member) })
		case "stream":
			v.stream, err = streamEntries(r)
			if err == nil {
				v.meta = streamMetaOf(res[start[i]+1], res[start[i]+2])
				err = v.meta.err
			}
		default:
			err = fmt.Errorf("type %q is not compared", types[i])
		}
		if err != nil {
			if transportErr(err) {
				return nil, err
			}
			v.err = err
		}
	}
	var sk []string
	var sm []*streamMeta
	for i := range keys {
		if out[i].meta != nil && out[i].err == nil {
			sk, sm = append(sk, keys[i]), append(sm, out[i].meta)
		}
	}
	if err := readPELs(ctx, c, sk, sm); err != nil {
		return nil, err
	}
	for i := range out {
		if m := out[i].meta; m != nil && out[i].err == nil && m.err != nil {
			out[i].err = m.err
		}
	}
	return out, nil
}

// readPELs reads, in one pipeline, the XPENDING summary of every group of
// metas that has pending entries (XINFO GROUPS says how many: a stream
// without pending entries costs nothing more). A read error is the
// stream's.
func readPELs(ctx context.Context, c valkey.Client, keys []string, metas []*streamMeta) error {
	var cmds valkey.Commands
	type ref struct{ m, g int }
	var refs []ref
	for i, m := range metas {
		if m.err != nil {
			continue
		}
		for j, g := range m.groups {
			if g.pending > 0 {
				cmds = append(cmds, c.B().Xpending().Key(keys[i]).Group(g.name).Build())
				refs = append(refs, ref{i, j})
			}
		}
	}
	if len(cmds) == 0 {
		return nil
	}
	for n, r := range c.DoMulti(ctx, cmds...) {
		m := metas[refs[n].m]
		p, err := pelSummaryOf(r)
		if err != nil {
			if transportErr(err) {
				return err
			}
			if m.err == nil {
				m.err = fmt.Errorf("XPENDING %s: %w", m.groups[refs[n].g].name, err)
			}
			continue
		}
		m.groups[refs[n].g].pel = p
	}
	return nil
}

// pelSummaryOf reads XPENDING's summary: [count, min, max, [[consumer,
// count], ...]] (min, max and the consumers are nil when nothing is
// pending).
func pelSummaryOf(r valkey.ValkeyResult) (*pelSummary, error) {
	arr, err := r.ToArray()
	if err != nil {
		return nil, err
	}
	if len(arr) != 4 {
		return nil, fmt.Errorf("unexpected XPENDING reply (%d elements)", len(arr))
	}
	p := &pelSummary{byConsumer: map[string]int64{}}
	if p.count, err = arr[0].AsInt64(); err != nil {
		return nil, err
	}
	p.minID, p.maxID = text(arr[1]), text(arr[2])
	if arr[3].IsNil() {
		return p, nil
	}
	consumers, err := arr[3].ToArray()
	if err != nil {
		return nil, err
	}
	for _, cm := range consumers {
		pair, err := cm.ToArray()
		if err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("unexpected XPENDING consumer")
		}
		n, err := pair[1].AsInt64()
		if err != nil {
			return nil, err
		}
		p.byConsumer[text(pair[0])] = n
	}
	return p, nil
}

func streamEntries(r valkey.ValkeyResult) ([]entry, error) {
	arr, err := r.ToArray()
	if err != nil {
		return nil, err
	}
	out := make([]entry, 0, len(arr))
	for _, m := range arr {
		parts, err := m.ToArray()
		if err != nil || len(parts) != 2 {
			return nil, fmt.Errorf("unexpected XRANGE entry")
		}
		id, err := parts[0].ToString()
		if err != nil {
			return nil, err
		}
		fields, err := parts[1].AsStrSlice()
		if err != nil {
			return nil, err
		}
		out = append(out, entry{id: id, fields: fields})
	}
	return out, nil
}

func fetchStreamMeta(ctx context.Context, c valkey.Client, keys []string) ([]*streamMeta, error) {
	cmds := make(valkey.Commands, 0, 2*len(keys))
	for _, k := range keys {
		cmds = append(cmds, c.B().XinfoStream().Key(k).Build(), c.B().XinfoGroups().Key(k).Build())
	}
	res := c.DoMulti(ctx, cmds...)
	out := make([]*streamMeta, len(keys))
	for i := range keys {
		out[i] = streamMetaOf(res[2*i], res[2*i+1])
		if err := out[i].err; err != nil && transportErr(err) {
			return nil, err
		}
	}
	if err := readPELs(ctx, c, keys, out); err != nil {
		return nil, err
	}
	return out, nil
}

func streamMetaOf(info, groups valkey.ValkeyResult) *streamMeta {
	m := &streamMeta{entriesAdded: -1}
	im, err := info.AsMap()
	if err != nil {
		m.err = err
		return m
	}
	m.lastID = text(im["last-generated-id"])
	m.maxDeletedID = text(im["max-deleted-entry-id"])
	if e, ok := im["entries-added"]; ok {
		m.entriesAdded, _ = e.AsInt64()
	}
	arr, err := groups.ToArray()
	if err != nil {
		m.err = err
		return m
	}
	for _, g := range arr {
		gm, err := g.AsMap()
		if err != nil {
			m.err = err
			return m
		}
		gr := group{name: text(gm["name"]), lastDelivered: text(gm["last-delivered-id"]), entriesRead: -1}
		if e, ok := gm["entries-read"]; ok && !e.IsNil() {
			gr.entriesRead, _ = e.AsInt64()
		}
		if c, ok := gm["consumers"]; ok {
			gr.consumers, _ = c.AsInt64()
		}
		if p, ok := gm["pending"]; ok {
			gr.pending, _ = p.AsInt64()
		}
		m.groups = append(m.groups, gr)
	}
	slices.SortFunc(m.groups, func(a, b group) int { return strings.Compare(a.name, b.name) })
	return m
}

func text(m valkey.ValkeyMessage) string {
	if s, err := m.ToString(); err == nil {
		return s
	}
	if n, err := m.AsInt64(); err == nil {
		return strconv.FormatInt(n, 10)
	}
	return ""
}

// fieldTTLs reads HPTTL of every field of the hashes at idx.
func fieldTTLs(ctx context.Context, c valkey.Client, keys []string, vals []value, idx []int) error {
	cmds := make(valkey.Commands, 0, len(idx))
	fields := make([][]string, len(idx))
	for j, i := range idx {
		fields[j] = make([]string, 0, len(vals[i].hash))
		for f := range vals[i].hash {
			fields[j] = append(fields[j], f)
		}
		slices.Sort(fields[j])
		cmds = append(cmds, c.B().Hpttl().Key(keys[i]).Fields().Numfields(int64(len(fields[j]))).Field(fields[j]...).Build())
	}
	sent := time.Now()
	res := c.DoMulti(ctx, cmds...)
	recv := time.Now()
	for j, i := range idx {
		ttls, err := res[j].AsIntSlice()
		if err != nil {
			if transportErr(err) {
				return err
			}
			vals[i].err = fmt.Errorf("HPTTL: %w", err)
			continue
		}
		m := make(map[string]int64, len(ttls))
		for n, t := range ttls {
			if n < len(fields[j]) {
				m[fields[j][n]] = t
			}
		}
		vals[i].fieldTTL, vals[i].sent, vals[i].recv = m, sent, recv
	}
	return nil
}

func (v *run) diffFieldTTLs(s, d value) string {
	var withTTL []string
	for f, t := range s.fieldTTL {
		if t >= 0 {
			withTTL = append(withTTL, f)
		}
	}
	if len(withTTL) == 0 && d.fieldTTL == nil {
		return ""
	}
	slices.Sort(withTTL)
	if d.fieldTTL == nil {
		return fmt.Sprintf("%d fields have a TTL on the source; the target has no per-field expiry, so they never expire there", len(withTTL))
	}
	var diffs []string
	fields := make([]string, 0, len(s.fieldTTL))
	for f := range s.fieldTTL {
		fields = append(fields, f)
	}
	slices.Sort(fields)
	for _, f := range fields {
		st, dt := s.fieldTTL[f], d.fieldTTL[f]
		sp := probe{pttl: st, sent: s.sent, recv: s.recv}
		dp := probe{pttl: dt, sent: d.sent, recv: d.recv}
		if st == -2 || dt == -2 { // expired in between
			continue
		}
		if detail := v.ttlDiff(sp, dp, "field"); detail != "" {
			diffs = append(diffs, "field "+v.name(f)+": "+detail)
		}
	}
	return summarize(diffs, "hash field TTLs differ")
}

// diffValue compares two whole values of type typ; "" when equal.
func (v *run) diffValue(typ string, s, d value) string {
	switch typ {
	case "string":
		return diffString(s.str, d.str)
	case "hash":
		var diffs []string
		for _, f := range sortedKeys(s.hash) {
			dv, ok := d.hash[f]
			switch {
			case !ok:
				diffs = append(diffs, "field "+v.name(f)+" missing on the target")
			case dv != s.hash[f]:
				diffs = append(diffs, "field "+v.name(f)+" value differs ("+diffString(s.hash[f], dv)+")")
			}
		}
		for _, f := range sortedKeys(d.hash) {
			if _, ok := s.hash[f]; !ok {
				diffs = append(diffs, "field "+v.name(f)+" only on the target")
			}
		}
		return summarize(diffs, "hash differs")
	case "list":
		for i := range max(len(s.list), len(d.list)) {
			if i >= len(s.list) || i >= len(d.list) || s.list[i] != d.list[i] {
				return fmt.Sprintf("list element %d differs (%d elements on both sides)", i, len(s.list))
			}
		}
	case "set":
		sm, dm := toSet(s.list), toSet(d.list)
		var diffs []string
		for _, m := range s.list {
			if !dm[m] {
				diffs = append(diffs, "member "+v.name(m)+" missing on the target")
			}
		}
		for _, m := range d.list {
			if !sm[m] {
				diffs = append(diffs, "member "+v.name(m)+" only on the target")
			}
		}
		return summarize(diffs, "set differs")
	case "zset":
		dm := make(map[string]float64, len(d.zset))
		for _, z := range d.zset {
			dm[z.Member] = z.Score
		}
		sm := make(map[string]bool, len(s.zset))
		var diffs []string
		for _, z := range s.zset {
			sm[z.Member] = true
			ds, ok := dm[z.Member]
			switch {
			case !ok:
				diffs = append(diffs, "member "+v.name(z.Member)+" missing on the target")
			case math.Float64bits(ds) != math.Float64bits(z.Score):
				if v.o.RedactKeys {
					diffs = append(diffs, "score of member "+v.name(z.Member)+" differs")
				} else {
					diffs = append(diffs, fmt.Sprintf("score of member %s differs: %s on the source, %s on the target",
						v.name(z.Member), fmtScore(z.Score), fmtScore(ds)))
				}
			}
		}
		for _, z := range d.zset {
			if !sm[z.Member] {
				diffs = append(diffs, "member "+v.name(z.Member)+" only on the target")
			}
		}
		return summarize(diffs, "sorted set differs")
	case "stream":
		for i := range max(len(s.stream), len(d.stream)) {
			switch {
			case i >= len(s.stream) || i >= len(d.stream):
				return fmt.Sprintf("stream entry %d differs", i)
			case s.stream[i].id != d.stream[i].id:
				return fmt.Sprintf("stream entry %d: ID %s on the source, %s on the target", i, s.stream[i].id, d.stream[i].id)
			case !slices.Equal(s.stream[i].fields, d.stream[i].fields):
				return fmt.Sprintf("stream entry %s: fields or values differ", s.stream[i].id)
			}
		}
		return v.diffStreamMeta(s.meta, d.meta)
	}
	return ""
}

func (v *run) diffStreamMeta(s, d *streamMeta) string {
	if s == nil || d == nil {
		return ""
	}
	if s.err != nil || d.err != nil {
		return "" // the callers report read errors
	}
	var diffs []string
	if s.lastID != d.lastID {
		diffs = append(diffs, fmt.Sprintf("last-generated-id %s on the source, %s on the target", s.lastID, d.lastID))
	}
	if s.entriesAdded >= 0 && d.entriesAdded >= 0 && s.entriesAdded != d.entriesAdded {
		diffs = append(diffs, fmt.Sprintf("entries-added %d on the source, %d on the target", s.entriesAdded, d.entriesAdded))
	}
	if s.maxDeletedID != "" && d.maxDeletedID != "" && s.maxDeletedID != d.maxDeletedID {
		diffs = append(diffs, fmt.Sprintf("max-deleted-entry-id %s on the source, %s on the target", s.maxDeletedID, d.maxDeletedID))
	}
	dg := map[string]group{}
	for _, g := range d.groups {
		dg[g.name] = g
	}
	for _, g := range s.groups {
		t, ok := dg[g.name]
		delete(dg, g.name)
		gname := v.name(g.name)
		switch {
		case !ok:
			diffs = append(diffs, "consumer group "+gname+" missing on the target")
		case g.lastDelivered != t.lastDelivered:
			diffs = append(diffs, fmt.Sprintf("consumer group %s: last-delivered-id %s on the source, %s on the target", gname, g.lastDelivered, t.lastDelivered))
		case g.entriesRead >= 0 && t.entriesRead >= 0 && g.entriesRead != t.entriesRead:
			diffs = append(diffs, fmt.Sprintf("consumer group %s: entries-read %d on the source, %d on the target", gname, g.entriesRead, t.entriesRead))
		case g.consumers != t.consumers:
			diffs = append(diffs, fmt.Sprintf("consumer group %s: %d consumers on the source, %d on the target", gname, g.consumers, t.consumers))
		}
		if ok {
			diffs = append(diffs, v.diffPEL(gname, g, t)...)
		}
	}
	for _, name := range sortedKeys(dg) {
		diffs = append(diffs, "consumer group "+v.name(name)+" only on the target")
	}
	return summarize(diffs, "stream metadata differs")
}

// diffPEL compares the pending entries lists of two groups of one name
// by their XPENDING summaries: size, smallest and largest ID, entries per
// consumer. Idle times and delivery counts are not compared.
func (v *run) diffPEL(gname string, s, d group) []string {
	sp, dp := s.pel, d.pel
	if sp == nil {
		sp = &pelSummary{count: s.pending}
	}
	if dp == nil {
		dp = &pelSummary{count: d.pending}
	}
	var diffs []string
	if sp.count != dp.count {
		diffs = append(diffs, fmt.Sprintf("consumer group %s: %d pending entries on the source, %d on the target", gname, sp.count, dp.count))
	}
	if s.pel == nil || d.pel == nil {
		return diffs // counts only: a side with nothing pending was not read
	}
	if sp.minID != dp.minID || sp.maxID != dp.maxID {
		diffs = append(diffs, fmt.Sprintf("consumer group %s: pending IDs %s..%s on the source, %s..%s on the target", gname, sp.minID, sp.maxID, dp.minID, dp.maxID))
	}
	for _, c := range sortedKeys(sp.byConsumer) {
		if n, m := sp.byConsumer[c], dp.byConsumer[c]; n != m {
			diffs = append(diffs, fmt.Sprintf("consumer group %s: consumer %s holds %d pending entries on the source, %d on the target", gname, v.name(c), n, m))
		}
	}
	for _, c := range sortedKeys(dp.byConsumer) {
		if _, ok := sp.byConsumer[c]; !ok {
			diffs = append(diffs, fmt.Sprintf("consumer group %s: consumer %s holds %d pending entries on the target, none on the source", gname, v.name(c), dp.byConsumer[c]))
		}
	}
	return diffs
}

// diffString says where two strings first differ, without their content.
func diffString(s, d string) string {
	if s == d {
		return ""
	}
	i := 0
	for i < len(s) && i < len(d) && s[i] == d[i] {
		i++
	}
	if len(s) == len(d) {
		return fmt.Sprintf("differs from byte %d on (%d bytes on both sides)", i, len(s))
	}
	return fmt.Sprintf("differs from byte %d on (%d bytes on the source, %d on the target)", i, len(s), len(d))
}

// summarize joins up to 3 differences and counts the rest.
func summarize(diffs []string, what string) string {
	switch {
	case len(diffs) == 0:
		return ""
	case len(diffs) <= 3:
		return what + ": " + strings.Join(diffs, "; ")
	}
	return fmt.Sprintf("%s: %s; and %d more differences", what, strings.Join(diffs[:3], "; "), len(diffs)-3)
}

func toSet(s []string) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, x := range s {
		m[x] = true
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func fmtScore(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// size describes a length for humans: "12 bytes", "3 fields".
func size(typ string, n int64) string {
	unit := map[string]string{"string": "bytes", "hash": "fields", "list": "elements", "set": "members", "zset": "members", "stream": "entries"}[typ]
	if unit == "" {
		unit = "elements"
	}
	return fmt.Sprintf("%d %s", n, unit)
}

func ttlText(pttl int64) string {
	if pttl < 0 {
		return ""
	}
	return ", expires in " + ms(pttl)
}

func ms(pttl int64) string {
	d := msDur(pttl)
	if d >= time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(time.Millisecond).String()
}

func msDur(n int64) time.Duration { return time.Duration(n) * time.Millisecond }

// both runs a and b at once and returns the first error.
func both(a, b func() error) error {
	var wg sync.WaitGroup
	var errB error
	wg.Add(1)
	go func() {
		defer wg.Done()
		errB = b()
	}()
	errA := a()
	wg.Wait()
	if errA != nil {
		return errA
	}
	return errB
}

func wrap(sideName string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", sideName, err)
}
