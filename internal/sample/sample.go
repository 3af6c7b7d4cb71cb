// Package sample writes sample datasets to a Redis or Valkey server: every
// type, awkward binary names and values, with and without TTLs, and big
// keys. The demo, the benchmarks and the tests use it.
package sample

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/valkey-io/valkey-go"
)

// Binary is a set of awkward byte strings used in key names and values:
// NUL, CR/LF, 0xFF, invalid UTF-8, braces, glob characters, empty.
var Binary = []string{
	"", "\x00", "a\x00b", "\r\n", "line1\r\nline2", "\xff\xfe\xfd", "\xc3\x28",
	"{", "}", "}{", "{tag}", "*?[]", " spaced ", "ünïcødé", strings.Repeat("x", 300),
}

// Options shape a sample dataset.
type Options struct {
	Prefix string // prepended to every key name
	// PerType is how many keys of each type and TTL flavour (default 5).
	PerType int
	// Big adds the big keys: a 200k-field hash, a 500k-element list,
	// 50k-member set and sorted set, a 20k-entry stream with a group.
	Big bool
	// BigScale divides the big key sizes (for quicker tests), default 1.
	BigScale int
}

// Seed writes keys of every type, with binary names and values, with and
// without TTLs, through c (any client: standalone, cluster, any db), and
// returns how many keys it wrote.
func Seed(ctx context.Context, c valkey.Client, o Options) (int, error) {
	if o.PerType == 0 {
		o.PerType = 5
	}
	if o.BigScale == 0 {
		o.BigScale = 1
	}
	var cmds valkey.Commands
	keys := 0
	b := c.B()
	for i := 0; i < o.PerType; i++ {
		for _, ttl := range []bool{false, true} {
			bin := Binary[i%len(Binary)]
			name := func(kind string) string {
				return fmt.Sprintf("%s%s:%d:%v:%s", o.Prefix, kind, i, ttl, bin)
			}
			k := name("string")
			cmds = append(cmds, b.Set().Key(k).Value(bin+strconv.Itoa(i)).Build())
			k = name("emptystring")
			cmds = append(cmds, b.Set().Key(k).Value("").Build())
			k = name("hash")
			cmds = append(cmds, b.Hset().Key(k).FieldValue().FieldValue(bin, bin).FieldValue("f\x00"+bin, "").FieldValue("n", strconv.Itoa(i)).Build())
			k = name("list")
			cmds = append(cmds, b.Rpush().Key(k).Element(bin, "", bin, "\x00", strconv.Itoa(i)).Build())
			k = name("set")
			cmds = append(cmds, b.Sadd().Key(k).Member(bin, "", "\xff", strconv.Itoa(i)).Build())
			k = name("zset")
			cmds = append(cmds, b.Arbitrary("ZADD").Keys(k).Args("-inf", "minus-inf", "inf", "plus-inf",
				"0.1", bin, "1e-300", "tiny", "-2.5e+300", "huge", "3", "").Build())
			k = name("stream")
			cmds = append(cmds, b.Arbitrary("XADD").Keys(k).Args("1-1", "f", bin, "f", "dup-field").Build(),
				b.Arbitrary("XADD").Keys(k).Args("1-2", bin, "").Build(),
				b.Arbitrary("XADD").Keys(k).Args("5-0", "x", "y").Build(),
				b.Xdel().Key(k).Id("1-2").Build(),
				b.XgroupCreate().Key(k).Group("g1").Id("1-1").Build())
			keys += 7
			if ttl {
				for _, kind := range []string{"string", "emptystring", "hash", "list", "set", "zset", "stream"} {
					cmds = append(cmds, b.Pexpire().Key(name(kind)).Milliseconds(int64(3_600_000+i*1000)).Build())
				}
			}
		}
	}
	if err := doAll(ctx, c, cmds); err != nil {
		return 0, err
	}
	if o.Big {
		n, err := SeedBig(ctx, c, o.Prefix, o.BigScale)
		if err != nil {
			return keys, err
		}
		keys += n
	}
	return keys, nil
}

func doAll(ctx context.Context, c valkey.Client, cmds valkey.Commands) error {
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

// SeedBig writes the five big keys (sizes divided by scale).
func SeedBig(ctx context.Context, c valkey.Client, prefix string, scale int) (int, error) {
	b := c.B()
	var err error
	do := func(cmds valkey.Commands) {
		if err == nil {
			err = doAll(ctx, c, cmds)
		}
	}
	const page = 1000
	fill := func(n int, mk func(lo, hi int) valkey.Completed) {
		var cmds valkey.Commands
		for lo := 0; lo < n; lo += page {
			cmds = append(cmds, mk(lo, min(lo+page, n)))
			if len(cmds) == 50 {
				do(cmds)
				cmds = cmds[:0]
			}
		}
		do(cmds)
	}
	fill(200_000/scale, func(lo, hi int) valkey.Completed {
		fv := b.Hset().Key(prefix + "big:hash").FieldValue()
		for i := lo; i < hi; i++ {
			fv = fv.FieldValue("field\x00"+strconv.Itoa(i), "value-"+strconv.Itoa(i*7))
		}
		return fv.Build()
	})
	fill(500_000/scale, func(lo, hi int) valkey.Completed {
		el := make([]string, 0, hi-lo)
		for i := lo; i < hi; i++ {
			el = append(el, "item\r\n"+strconv.Itoa(i))
		}
		return b.Rpush().Key(prefix + "big:list").Element(el...).Build()
	})
	fill(50_000/scale, func(lo, hi int) valkey.Completed {
		el := make([]string, 0, hi-lo)
		for i := lo; i < hi; i++ {
			el = append(el, "member\xff"+strconv.Itoa(i))
		}
		return b.Sadd().Key(prefix + "big:set").Member(el...).Build()
	})
	fill(50_000/scale, func(lo, hi int) valkey.Completed {
		args := make([]string, 0, 2*(hi-lo))
		for i := lo; i < hi; i++ {
			args = append(args, strconv.FormatFloat(float64(i)/3, 'g', -1, 64), "m"+strconv.Itoa(i))
		}
		return b.Arbitrary("ZADD").Keys(prefix + "big:zset").Args(args...).Build()
	})
	var cmds valkey.Commands
	for i := 1; i <= 20_000/scale; i++ {
		cmds = append(cmds, b.Arbitrary("XADD").Keys(prefix+"big:stream").Args(fmt.Sprintf("%d-0", i), "n", strconv.Itoa(i), "payload", "\x00\xff").Build())
		if len(cmds) == 1000 {
			do(cmds)
			cmds = cmds[:0]
		}
	}
	cmds = append(cmds, b.XgroupCreate().Key(prefix+"big:stream").Group("readers").Id(fmt.Sprintf("%d-0", 10_000/scale)).Build())
	do(cmds)
	return 5, err
}
