package kvtest

import (
	"context"
	"strconv"
	"testing"

	"github.com/valkey-io/valkey-go"
)

// BigKeys are the big keys SeedSmallAndBig writes, with their element
// counts.
var BigKeys = map[string]int64{"big:hash": 50_000, "big:list": 100_000, "big:set": 20_000, "big:zset": 20_000}

// SeedSmallAndBig writes 20,000 small strings small:i and the four
// BigKeys: a 50,000-field hash (field:i → value:i), a 100,000-element list
// (el:i), a 20,000-member set and sorted set (m:i, score i/3) — a keyspace
// of many small keys and a few huge ones, which a random sample of a few
// hundred keys almost never draws.
func SeedSmallAndBig(t testing.TB, c valkey.Client) {
	t.Helper()
	var cmds valkey.Commands
	flush := func() {
		for i, r := range c.DoMulti(context.Background(), cmds...) {
			if err := r.Error(); err != nil {
				t.Fatalf("kvtest: seed command %d: %v", i, err)
			}
		}
		cmds = cmds[:0]
	}
	for i := range 20_000 {
		cmds = append(cmds, c.B().Set().Key("small:"+strconv.Itoa(i)).Value("v"+strconv.Itoa(i)).Build())
		if len(cmds) == 1000 {
			flush()
		}
	}
	for i := 0; i < 50_000; i += 1000 {
		h := c.B().Hset().Key("big:hash").FieldValue()
		for j := i; j < i+1000; j++ {
			h = h.FieldValue("field:"+strconv.Itoa(j), "value:"+strconv.Itoa(j))
		}
		cmds = append(cmds, h.Build())
	}
	for i := 0; i < 100_000; i += 1000 {
		els := make([]string, 1000)
		for j := range els {
			els[j] = "el:" + strconv.Itoa(i+j)
		}
		cmds = append(cmds, c.B().Rpush().Key("big:list").Element(els...).Build())
	}
	for i := 0; i < 20_000; i += 1000 {
		ms := make([]string, 1000)
		z := c.B().Zadd().Key("big:zset").ScoreMember()
		for j := range ms {
			ms[j] = "m:" + strconv.Itoa(i+j)
			z = z.ScoreMember(float64(i+j)/3, ms[j])
		}
		cmds = append(cmds, c.B().Sadd().Key("big:set").Member(ms...).Build(), z.Build())
	}
	flush()
}
