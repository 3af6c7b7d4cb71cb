package analysis

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// A captured INFO modules section (Valkey 8.1 with valkey-json and
// valkey-bloom), read when MODULE LIST is denied.
func TestParseInfoModulesReadsEveryModuleLine(t *testing.T) {
	const info = "# Modules\r\n" +
		"module:name=json,ver=10002,api=1,filters=0,usedby=[],using=[],options=[handle-io-errors]\r\n" +
		"module:name=bf,ver=10000,api=1,filters=0,usedby=[],using=[],options=[]\r\n"
	assert.Equal(t, []Module{{Name: "bf", Version: 10000}, {Name: "json", Version: 10002}}, parseInfoModules(info))
	assert.Equal(t, []Module{}, parseInfoModules("# Modules\r\n"))
}

func TestDeniedCommandNamesTheCommandOfANopermReply(t *testing.T) {
	err := errString("NOPERM User ro has no permissions to run the 'config|get' command")
	assert.Equal(t, "CONFIG GET", deniedCommand(err, "X"))
	assert.Equal(t, "X", deniedCommand(errString("NOPERM something else"), "X"))
}

type errString string

func (e errString) Error() string { return string(e) }

func TestTTLBucketsHaveExactBoundaries(t *testing.T) {
	const h = int64(3_600_000)
	var b Buckets
	for _, pttl := range []int64{-1, 0, h - 1, h, 24*h - 1, 24 * h, 7*24*h - 1, 7 * 24 * h, 30 * 24 * h} {
		addTTL(&b, pttl)
	}
	assert.Equal(t, Buckets{None: 1, Under1h: 2, Under24h: 2, Under7d: 2, Over7d: 2}, b)
}

func TestQuotasSplitTheSampleByKeyCount(t *testing.T) {
	a := &analyzer{opts: Options{Sample: 1000}}
	plan := []shardPlan{{keys: 5000}, {keys: 3000}, {keys: 2000}, {keys: 1}}
	a.share(plan)
	total := 0
	for _, p := range plan {
		total += p.quota
	}
	assert.Equal(t, 1000, total)
	assert.InDelta(t, 500, plan[0].quota, 1)
	assert.InDelta(t, 300, plan[1].quota, 1)
	assert.InDelta(t, 200, plan[2].quota, 1)
	assert.Equal(t, 1, plan[3].quota, "every shard is sampled")
}

func TestThePreflightTableIsCutAfterAFewRows(t *testing.T) {
	p := &ACLPreflight{Checked: true, User: "mig", Commands: 40}
	for i := range 33 {
		p.Denied = append(p.Denied, ACLDenial{Command: fmt.Sprintf("CMD%d", i), Key: "__kvmigrate_tmp_x", TempKey: true, Need: NeedRequired, Reason: "no permissions"})
	}
	var b strings.Builder
	writePreflight(&b, "target", p)
	out := b.String()
	assert.Contains(t, out, "33 of 40 commands of the copy checked are denied")
	assert.Contains(t, out, "CMD11")
	assert.NotContains(t, out, "CMD12 ")
	assert.Contains(t, out, "… and 21 more (--json lists them all)")

	p.Denied = p.Denied[:13] // one over: listed, not summed up
	b.Reset()
	writePreflight(&b, "target", p)
	assert.Contains(t, b.String(), "CMD12")
	assert.NotContains(t, b.String(), "more")
}
