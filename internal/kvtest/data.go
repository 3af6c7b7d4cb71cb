package kvtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"
)

// ClientDB is [Server.Client] on database db.
func (s *Server) ClientDB(t testing.TB, db int) valkey.Client {
	t.Helper()
	c, err := valkey.NewClient(valkey.ClientOption{
		InitAddress:       []string{s.Addr()},
		Password:          s.Password,
		SelectDB:          db,
		ForceSingleClient: true,
		DisableCache:      true,
		TLSConfig:         s.clientTLS,
	})
	require.NoError(t, err, "connect to %s db %d", s.Addr(), db)
	t.Cleanup(c.Close)
	return c
}

// Value is what the independent reader saw of one key.
type Value struct {
	Type string
	// Len is the element count (bytes for strings).
	Len int
	// Digest is a SHA-256 of a canonical form of the whole value
	// (order-insensitive for hashes and sets, score-exact for sorted sets,
	// ID-exact for streams, with stream metadata and groups).
	Digest string
	// PTTL in milliseconds; -1 for no expiry.
	PTTL int64
	// FieldTTLs counts hash fields with an expiry (Redis 7.4+).
	FieldTTLs int
	// Pending counts a stream's pending entries over all its groups.
	Pending int
	// PEL is a SHA-256 of every group's pending entries list: per group
	// (by name) each entry's ID, consumer and delivery count, in ID order
	// (read with the extended XPENDING). Idle times are left out: they
	// change. Empty for other types.
	PEL string
}

// Snapshot reads every key of the database c is connected to, with plain
// whole-value commands (HGETALL, LRANGE 0 -1, SMEMBERS, ZRANGE WITHSCORES,
// XRANGE, XINFO): an independent reader, sharing no code with the copier.
// For a cluster client it scans every node. Keys are map keys.
func Snapshot(ctx context.Context, t testing.TB, c valkey.Client) map[string]Value {
	t.Helper()
	out := map[string]Value{}
	for _, node := range c.Nodes() {
		role, err := node.Do(ctx, node.B().Role().Build()).ToArray()
		require.NoError(t, err)
		if r, _ := role[0].ToString(); r != "master" {
			continue
		}
		var cursor uint64
		for {
			page, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Count(1000).Build()).AsScanEntry()
			require.NoError(t, err)
			for _, k := range page.Elements {
				if v, ok := readValue(ctx, t, node, k); ok {
					out[k] = v
				}
			}
			if cursor = page.Cursor; cursor == 0 {
				break
			}
		}
	}
	return out
}

func readValue(ctx context.Context, t testing.TB, c valkey.Client, k string) (Value, bool) {
	t.Helper()
	b := c.B()
	typ, err := c.Do(ctx, b.Type().Key(k).Build()).ToString()
	require.NoError(t, err)
	if typ == "none" {
		return Value{}, false
	}
	v := Value{Type: typ}
	h := sha256.New()
	put := func(parts ...string) {
		for _, p := range parts {
			fmt.Fprintf(h, "%d:%s;", len(p), p)
		}
	}
	switch typ {
	case "string":
		s, err := c.Do(ctx, b.Get().Key(k).Build()).ToString()
		require.NoError(t, err)
		v.Len = len(s)
		put(s)
	case "hash":
		m, err := c.Do(ctx, b.Hgetall().Key(k).Build()).AsStrMap()
		require.NoError(t, err)
		fields := sortedKeys(m)
		for _, f := range fields {
			put(f, m[f])
		}
		v.Len = len(m)
		v.FieldTTLs = fieldTTLs(ctx, c, k, fields)
	case "list":
		l, err := c.Do(ctx, b.Lrange().Key(k).Start(0).Stop(-1).Build()).AsStrSlice()
		require.NoError(t, err)
		put(l...)
		v.Len = len(l)
	case "set":
		s, err := c.Do(ctx, b.Smembers().Key(k).Build()).AsStrSlice()
		require.NoError(t, err)
		sort.Strings(s)
		put(s...)
		v.Len = len(s)
	case "zset":
		arr, err := c.Do(ctx, b.Zrange().Key(k).Min("0").Max("-1").Withscores().Build()).ToArray()
		require.NoError(t, err)
		for _, pair := range arr {
			p, err := pair.ToArray()
			require.NoError(t, err)
			m, _ := p[0].ToString()
			sc, err := p[1].AsFloat64()
			require.NoError(t, err)
			put(m, strconv.FormatFloat(sc, 'g', -1, 64))
		}
		v.Len = len(arr)
	case "stream":
		entries, err := c.Do(ctx, b.Xrange().Key(k).Start("-").End("+").Build()).ToArray()
		require.NoError(t, err)
		for _, e := range entries {
			p, err := e.ToArray()
			require.NoError(t, err)
			id, _ := p[0].ToString()
			fv, err := p[1].AsStrSlice()
			require.NoError(t, err)
			put(id)
			put(fv...)
		}
		v.Len = len(entries)
		info, err := c.Do(ctx, b.XinfoStream().Key(k).Build()).AsMap()
		require.NoError(t, err)
		for _, f := range []string{"last-generated-id", "max-deleted-entry-id", "entries-added"} {
			if m, ok := info[f]; ok {
				s, _ := m.ToString()
				if s == "" {
					n, _ := m.AsInt64()
					s = strconv.FormatInt(n, 10)
				}
				put(f, s)
			}
		}
		groups, err := c.Do(ctx, b.XinfoGroups().Key(k).Build()).ToArray()
		require.NoError(t, err)
		pel := sha256.New()
		for _, g := range groups {
			gm, err := g.AsMap()
			require.NoError(t, err)
			name, last := gm["name"], gm["last-delivered-id"]
			ns, _ := name.ToString()
			ls, _ := last.ToString()
			put("group", ns, ls)
			if read, ok := gm["entries-read"]; ok && !read.IsNil() {
				n, _ := read.AsInt64()
				put("entries-read", strconv.FormatInt(n, 10))
			}
			// Consumer names, those with nothing pending included.
			consumers, err := c.Do(ctx, b.XinfoConsumers().Key(k).Group(ns).Build()).ToArray()
			require.NoError(t, err)
			names := make([]string, 0, len(consumers))
			for _, cm := range consumers {
				m, err := cm.AsMap()
				require.NoError(t, err)
				cn := m["name"]
				s, _ := cn.ToString()
				names = append(names, s)
			}
			sort.Strings(names)
			put("consumers")
			put(names...)
			fmt.Fprintf(pel, "group %d:%s;", len(ns), ns)
			v.Pending += pendingEntries(ctx, t, c, k, ns, func(id, consumer string, deliveries int64) {
				fmt.Fprintf(pel, "%s %d:%s %d;", id, len(consumer), consumer, deliveries)
			})
		}
		v.PEL = hex.EncodeToString(pel.Sum(nil))
	default:
		t.Fatalf("kvtest: key %q has type %q the reader does not know", k, typ)
	}
	v.Digest = hex.EncodeToString(h.Sum(nil))
	pttl, err := c.Do(ctx, b.Pttl().Key(k).Build()).AsInt64()
	require.NoError(t, err)
	v.PTTL = pttl
	return v, true
}

// pendingEntries hands each entry of a group's PEL to f, in ID order,
// reading XPENDING key group start + 1000 page by page; it returns how
// many there were.
func pendingEntries(ctx context.Context, t testing.TB, c valkey.Client, k, group string, f func(id, consumer string, deliveries int64)) int {
	t.Helper()
	n := 0
	start := "-"
	for {
		page, err := c.Do(ctx, c.B().Xpending().Key(k).Group(group).Start(start).End("+").Count(1000).Build()).ToArray()
		require.NoError(t, err)
		for _, e := range page {
			p, err := e.ToArray()
			require.NoError(t, err)
			require.Len(t, p, 4, "XPENDING entry")
			id, _ := p[0].ToString()
			consumer, _ := p[1].ToString()
			deliveries, err := p[3].AsInt64()
			require.NoError(t, err)
			f(id, consumer, deliveries)
			start = "(" + id
		}
		n += len(page)
		if len(page) < 1000 {
			return n
		}
	}
}

func fieldTTLs(ctx context.Context, c valkey.Client, k string, fields []string) int {
	n := 0
	for len(fields) > 0 {
		part := fields[:min(len(fields), 1000)]
		fields = fields[len(part):]
		ats, err := c.Do(ctx, c.B().Hpexpiretime().Key(k).Fields().Numfields(int64(len(part))).Field(part...).Build()).AsIntSlice()
		if err != nil { // the server has no field TTLs
			return 0
		}
		for _, at := range ats {
			if at > 0 {
				n++
			}
		}
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// AssertSameData checks that dst holds exactly the keys of src with the
// same type and value, and a TTL equal to the source's within tolerance
// (the time the copy took). Keys only on dst are errors too.
func AssertSameData(t testing.TB, src, dst map[string]Value, tolerance time.Duration) bool {
	t.Helper()
	ok := true
	for _, k := range sortedKeys(src) {
		s := src[k]
		d, found := dst[k]
		if !found {
			ok = assert.Failf(t, "key missing on the target", "%q (%s)", k, s.Type) && ok
			continue
		}
		if s.Type != d.Type || s.Len != d.Len || s.Digest != d.Digest {
			ok = assert.Failf(t, "value differs", "%q: source %s len %d, target %s len %d (digests %.8s/%.8s)",
				k, s.Type, s.Len, d.Type, d.Len, s.Digest, d.Digest) && ok
			continue
		}
		if s.Pending != d.Pending || s.PEL != d.PEL {
			ok = assert.Failf(t, "stream pending entries differ", "%q: %d pending on the source, %d on the target (PEL digests %.8s/%.8s)",
				k, s.Pending, d.Pending, s.PEL, d.PEL) && ok
		}
		if s.FieldTTLs != d.FieldTTLs {
			ok = assert.Failf(t, "hash field TTLs differ", "%q: %d fields with TTL on the source, %d on the target", k, s.FieldTTLs, d.FieldTTLs) && ok
		}
		switch {
		case s.PTTL == -1 && d.PTTL == -1:
		case s.PTTL == -1 || d.PTTL == -1:
			ok = assert.Failf(t, "TTL differs", "%q: source PTTL %d, target PTTL %d", k, s.PTTL, d.PTTL) && ok
		default:
			// The target was read after the source, so its TTL can only
			// be lower, by at most the time between the two reads.
			diff := time.Duration(s.PTTL-d.PTTL) * time.Millisecond
			if diff < -50*time.Millisecond || diff > tolerance {
				ok = assert.Failf(t, "TTL differs", "%q: source PTTL %d, target PTTL %d (tolerance %v)", k, s.PTTL, d.PTTL, tolerance) && ok
			}
		}
	}
	for _, k := range sortedKeys(dst) {
		if _, found := src[k]; !found {
			ok = assert.Failf(t, "extra key on the target", "%q (%s)", k, dst[k].Type) && ok
		}
	}
	return ok
}
