package validation

import (
	"context"
	"hash/maphash"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

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
		r, err := digestKey(ctx, c, "hash", "big:hash", seeds)
		if err != nil || r.elements != fields {
			b.Fatalf("digest: %v, %d fields", err, r.elements)
		}
	}
	b.ReportMetric(float64(fields)*float64(b.N)/b.Elapsed().Seconds(), "fields/s")
}
