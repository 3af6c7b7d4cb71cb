package validation

import (
	"context"
	"hash/maphash"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
)

func TestAllocate(t *testing.T) {
	shards := func(keys ...int64) []shard {
		var out []shard
		for _, k := range keys {
			out = append(out, shard{keys: k})
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		keys       []int64
		want       int
		quota      []int64
		exhaustive bool
	}{
		{"no more keys than wanted: every key", []int64{10, 0, 30}, 500, []int64{10, 0, 30}, true},
		{"in proportion to the key counts", []int64{1000, 3000, 1000}, 500, []int64{100, 300, 100}, false},
		{"largest remainders round up to the wanted total", []int64{1000, 1000, 1000}, 500, []int64{167, 167, 166}, false},
		{"a tiny shard still gets one key, an empty one none", []int64{1_000_000, 3, 0}, 100, []int64{100, 1, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, ex := allocate(shards(tc.keys...), tc.want)
			assert.Equal(t, tc.quota, q)
			assert.Equal(t, tc.exhaustive, ex)
		})
	}
}

func TestDiscrepancy(t *testing.T) {
	assert.Equal(t, 0.0, discrepancy(0, 0))
	assert.Equal(t, 0.0, discrepancy(0, 10))
	assert.Equal(t, 100.0, discrepancy(3, 0), "keys on an empty source's target")
	assert.Equal(t, 1.0, discrepancy(1, 100))
	assert.Equal(t, 33.3333, discrepancy(1, 3))
}

func TestNames(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"user:17", "user:17"},
		{"ünïcødé key", "ünïcødé key"},
		{"a\x00b", `"a\x00b"`},
		{"line\r\n", `"line\r\n"`},
		{"\xff\xfe", `"\xff\xfe"`},
		{"", `""`},
		{`"quoted"`, `"\"quoted\""`},
	} {
		assert.Equal(t, tc.want, DisplayName(tc.in), "%q", tc.in)
	}
	assert.Equal(t, strings.Repeat("k", 120)+"…(300 bytes)", DisplayName(strings.Repeat("k", 300)))
	assert.Equal(t, "sha256:e0bd240d05731a8a830ac46264dbd855", RedactName("user:17"), "the first 16 bytes of SHA-256(name), in hex")
}

func TestDigester(t *testing.T) {
	seeds := [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}
	sum := func(ordered bool, elems ...[]string) [2]uint64 {
		d := newDigester(seeds, ordered)
		for _, e := range elems {
			d.add(e...)
		}
		return d.sum128()
	}
	a, b, c := []string{"f1", "v1"}, []string{"f2", "v2"}, []string{"f3", "v3"}
	assert.Equal(t, sum(false, a, b, c), sum(false, c, a, b), "hashes and sets: any order")
	assert.NotEqual(t, sum(true, a, b, c), sum(true, c, a, b), "lists, streams, sorted sets: in order")
	assert.NotEqual(t, sum(false, []string{"ab", "c"}), sum(false, []string{"a", "bc"}), "parts are framed")
	assert.NotEqual(t, sum(false, a, b), sum(false, a, []string{"f2", "v3"}), "one value changed")
	assert.NotEqual(t, sum(false, a, a, b), sum(false, a, b), "a duplicate changes the digest (and the count catches it)")
}

func TestDigestQueue(t *testing.T) {
	var big []bigKey
	for _, n := range []int64{500, 101, 9_000_000, 3000, 120_000, 101} {
		big = append(big, bigKey{key: strconv.FormatInt(n, 10), n: n})
	}
	q := newDigestQueue(big)
	take := func(lane int) string {
		b, ok := q.next(lane)
		require.True(t, ok)
		return b.key
	}
	// Four workers start at once: lane 0 on the largest key, so that a
	// budget too short for the whole sample does not always leave the
	// biggest keys compared by count only.
	assert.Equal(t, []string{"9000000", "101", "101", "500"}, []string{take(0), take(1), take(2), take(3)})
	assert.Equal(t, "120000", take(0), "lane 0 goes on from the top")
	assert.Equal(t, "3000", take(1), "the others from the bottom")
	_, ok := q.next(0)
	assert.False(t, ok, "every key handed out once")
	_, ok = q.next(2)
	assert.False(t, ok)
	assert.Equal(t, "500", big[0].key, "the caller's slice is left as it was")
}

func TestSubexpiry(t *testing.T) {
	got := subexpiry("# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0,subexpiry=1\r\n" +
		"db3:keys=9,expires=1,avg_ttl=5,subexpiry=0\r\ndb5:keys=1,expires=0,avg_ttl=0\r\n")
	assert.Equal(t, map[int]int64{0: 1, 3: 0, 5: -1}, got, "a line without subexpiry (Valkey 8, Redis 7.0) may have some")
}

// TestFieldTTLVerdictOutOfBudget: when the expiry digests of a big hash
// differ and the budget runs out before the field-by-field check ends,
// the key is left unresolved, unless the counts of fields with an expiry
// already differ.
func TestFieldTTLVerdictOutOfBudget(t *testing.T) {
	srv := kvtest.StartServer(t, kvtest.Require(t, "redis-8.0"))
	e, err := endpoint.Parse(srv.URL())
	require.NoError(t, err)
	conn, err := endpoint.Dial(context.Background(), e)
	require.NoError(t, err)
	t.Cleanup(conn.Close)
	c := srv.Client(t)
	for _, r := range c.DoMulti(context.Background(),
		c.B().Hset().Key("h").FieldValue().FieldValue("a", "1").FieldValue("b", "2").Build(),
		c.B().Hpexpire().Key("h").Milliseconds(3_600_000).Fields().Numfields(1).Field("a").Build()) {
		require.NoError(t, r.Error())
	}
	v := &run{src: conn, dst: conn, o: Options{}.withDefaults(), rep: &Report{}}
	b := bigKey{key: "h", typ: "hash", n: 2}
	x, y := [2]uint64{1, 2}, [2]uint64{3, 4}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := v.fieldTTLVerdict(ctx, b, digestResult{expiry: &x, withTTL: 1}, digestResult{expiry: &y, withTTL: 1})
	assert.Equal(t, fieldTTLResult{}, r, "in time: checked field by field, and the same key on both sides does not differ")

	done, stop := context.WithTimeout(context.Background(), time.Minute)
	stop()
	r = v.fieldTTLVerdict(done, b, digestResult{expiry: &x, withTTL: 1}, digestResult{expiry: &y, withTTL: 1})
	assert.Equal(t, fieldTTLResult{unresolved: true}, r)
	r = v.fieldTTLVerdict(done, b, digestResult{expiry: &x, withTTL: 1}, digestResult{expiry: &y, withTTL: 0})
	assert.Equal(t, "1 fields have a TTL on the source, 0 on the target (the field-by-field check did not finish within the budget)", r.detail)
	assert.False(t, r.unresolved)
	r = v.fieldTTLVerdict(done, b, digestResult{expiry: &x, withTTL: 1}, digestResult{expiry: &x, withTTL: 1})
	assert.Equal(t, fieldTTLResult{}, r, "equal expiry digests need no field-by-field check")
}

// BenchmarkDigestHash50k digests a 50,000-field hash on one local server:
// go test -run '^$' -bench DigestHash50k ./internal/validation/
func BenchmarkDigestHash50k(b *testing.B) {
	srv := kvtest.StartServer(b, kvtest.Require(b, "valkey-8.0"))
	c := srv.Client(b)
	ctx := context.Background()
	const fields = 50_000
	var cmds valkey.Commands
	for lo := 0; lo < fields; lo += 1000 {
		fv := c.B().Hset().Key("big:hash").FieldValue()
		for i := lo; i < lo+1000; i++ {
			fv = fv.FieldValue("field\x00"+strconv.Itoa(i), "value-"+strconv.Itoa(i*7))
		}
		cmds = append(cmds, fv.Build())
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		require.NoError(b, r.Error())
	}
	seeds := [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}
	b.ResetTimer()
	for b.Loop() {
		r, err := digestKey(ctx, c, "hash", "big:hash", seeds, 0)
		if err != nil || r.elements != fields {
			b.Fatalf("digest: %v, %d fields", err, r.elements)
		}
	}
	b.ReportMetric(float64(fields)*float64(b.N)/b.Elapsed().Seconds(), "fields/s")
}

// BenchmarkDigestHashFieldTTLs digests the same 50,000-field hash, two
// fields in three with an expiry, on one local Redis 8.0, without and with
// the field expiries (HPEXPIRETIME of each HSCAN page in the pipeline of
// the next page's HSCAN). Each iteration digests it both ways, in
// alternating order, so that both see the same load on a shared machine;
// ns/op is the pair, off-ms and on-ms one digest each, on/off their ratio:
// go test -run '^$' -bench DigestHashFieldTTLs -benchtime 40x -count 6 ./internal/validation/
func BenchmarkDigestHashFieldTTLs(b *testing.B) {
	srv := kvtest.StartServer(b, kvtest.Require(b, "redis-8.0"))
	c := srv.Client(b)
	ctx := context.Background()
	const fields = 50_000
	var cmds valkey.Commands
	for lo := 0; lo < fields; lo += 1000 {
		fv := c.B().Hset().Key("big:hash").FieldValue()
		for i := lo; i < lo+1000; i++ {
			fv = fv.FieldValue("field\x00"+strconv.Itoa(i), "value-"+strconv.Itoa(i*7))
		}
		cmds = append(cmds, fv.Build())
	}
	at := time.Now().Add(time.Hour).UnixMilli()
	for i := range fields {
		if i%3 != 2 {
			cmds = append(cmds, c.B().Hpexpireat().Key("big:hash").UnixTimeMilliseconds(at+int64(i)).
				Fields().Numfields(1).Field("field\x00"+strconv.Itoa(i)).Build())
		}
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		require.NoError(b, r.Error())
	}
	seeds := [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}
	digest := func(bucket int64) time.Duration {
		t0 := time.Now()
		r, err := digestKey(ctx, c, "hash", "big:hash", seeds, bucket)
		if err != nil || r.elements != fields {
			b.Fatalf("digest: %v, %d fields", err, r.elements)
		}
		if bucket > 0 && r.withTTL != fields-fields/3 {
			b.Fatalf("%d fields with a TTL", r.withTTL)
		}
		return time.Since(t0)
	}
	on := DefaultTTLTolerance.Milliseconds()
	var off, with time.Duration
	n := 0
	for b.Loop() {
		if n%2 == 0 {
			off += digest(0)
			with += digest(on)
		} else {
			with += digest(on)
			off += digest(0)
		}
		n++
	}
	b.ReportMetric(off.Seconds()*1000/float64(n), "off-ms")
	b.ReportMetric(with.Seconds()*1000/float64(n), "on-ms")
	b.ReportMetric(float64(with)/float64(off), "on/off")
}
