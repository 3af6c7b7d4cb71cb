package validation_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/validation"
)

// seedPELs writes a small stream (compared in full) and a big one (its
// metadata compared apart from its digest), both with consumer groups and
// pending entries.
func seedPELs(t *testing.T, c valkey.Client) {
	t.Helper()
	b := c.B()
	var cmds valkey.Commands
	for i := 1; i <= 30; i++ {
		cmds = append(cmds, b.Xadd().Key("pel:small").Id(fmt.Sprintf("%d-0", i)).FieldValue().FieldValue("n", fmt.Sprint(i)).Build())
	}
	cmds = append(cmds,
		b.XgroupCreate().Key("pel:small").Group("g1").Id("0").Build(),
		b.XgroupCreate().Key("pel:small").Group("g2").Id("0").Build(),
		b.Xreadgroup().Group("g1", "c1").Count(10).Streams().Key("pel:small").Id(">").Build(),
		b.Xreadgroup().Group("g1", "c2").Count(10).Streams().Key("pel:small").Id(">").Build(),
		b.Xack().Key("pel:small").Group("g1").Id("1-0", "2-0").Build(),
		b.Xclaim().Key("pel:small").Group("g1").Consumer("c1").MinIdleTime("0").Id("13-0").Retrycount(5).Justid().Build(),
		b.XgroupCreateconsumer().Key("pel:small").Group("g1").Consumer("idle").Build(),
		b.Xreadgroup().Group("g2", "c3").Count(25).Streams().Key("pel:small").Id(">").Build(),
		b.Xack().Key("pel:small").Group("g2").Id("1-0", "2-0", "3-0", "4-0", "5-0", "6-0", "7-0", "8-0", "9-0", "10-0").Build(),
	)
	for i := 1; i <= 2000; i++ {
		cmds = append(cmds, b.Xadd().Key("pel:big").Id(fmt.Sprintf("%d-1", i)).FieldValue().FieldValue("payload", fmt.Sprintf("p%d", i)).Build())
	}
	cmds = append(cmds, b.XgroupCreate().Key("pel:big").Group("workers").Id("0").Build())
	for w := range 4 {
		cmds = append(cmds, b.Xreadgroup().Group("workers", fmt.Sprintf("w%d", w)).Count(150).Streams().Key("pel:big").Id(">").Build())
	}
	for i := 3; i <= 600; i += 3 {
		cmds = append(cmds, b.Xack().Key("pel:big").Group("workers").Id(fmt.Sprintf("%d-1", i)).Build())
	}
	do(t, c, cmds...)
}

func TestValidationComparesStreamPendingEntries(t *testing.T) {
	t.Parallel()
	// Valkey 8.0 to Redis 7.0: the copy uses type commands (RDB 11 > 10).
	src := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	seedPELs(t, src.Client(t))
	copyAll(t, src.URL(), dst.URL())

	rep := validate(t, src.URL(), dst.URL(), validation.Options{})
	require.Empty(t, rep.Issues, "a clean copy")
	require.True(t, rep.Passed)
	require.Equal(t, 1, rep.Sample.Full, "pel:small in full")
	require.Equal(t, 1, rep.Sample.Digest, "pel:big by digest")

	cases := []struct {
		name   string
		damage func(b valkey.Builder) valkey.Completed
		key    string
		detail string
	}{
		{"an acknowledged pending entry of a small stream", func(b valkey.Builder) valkey.Completed {
			return b.Xack().Key("pel:small").Group("g2").Id("25-0").Build()
		}, "pel:small", "consumer group g2: 15 pending entries on the source, 14 on the target"},
		{"the same again: the largest pending ID and the consumer's count differ too", nil,
			"pel:small", "consumer group g2: pending IDs 11-0..25-0 on the source, 11-0..24-0 on the target"},
		{"an acknowledged pending entry in the middle of a big stream", func(b valkey.Builder) valkey.Completed {
			return b.Xack().Key("pel:big").Group("workers").Id("301-1").Build()
		}, "pel:big", "consumer group workers: 400 pending entries on the source, 399 on the target"},
		{"a pending entry moved to another consumer (same count, same IDs)", func(b valkey.Builder) valkey.Completed {
			return b.Xclaim().Key("pel:small").Group("g1").Consumer("c2").MinIdleTime("0").Id("5-0").Justid().Build()
		}, "pel:small", "consumer group g1: consumer c1 holds 9 pending entries on the source, 8 on the target"},
	}
	dc := dst.Client(t)
	for _, tc := range cases {
		if tc.damage != nil {
			do(t, dc, tc.damage(dc.B()))
		}
		rep := validate(t, src.URL(), dst.URL(), validation.Options{})
		assert.False(t, rep.Passed, tc.name)
		found := false
		for _, is := range rep.Issues {
			if is.Key == tc.key && is.Kind == validation.IssueValue {
				assert.Contains(t, is.Detail, tc.detail, tc.name)
				found = true
			}
		}
		assert.True(t, found, "%s: an issue names %s: %+v", tc.name, tc.key, rep.Issues)
	}
}

// TestValidationIgnoresIdleTimes: the same PELs read at different times
// (idle times grown, delivery counts equal) pass.
func TestValidationIgnoresIdleTimes(t *testing.T) {
	t.Parallel()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"))
	seedPELs(t, src.Client(t))
	copyAll(t, src.URL(), dst.URL())
	dc := dst.Client(t)
	// An hour of idle time on the target only.
	do(t, dc, dc.B().Xclaim().Key("pel:small").Group("g1").Consumer("c1").MinIdleTime("0").Id("13-0").
		Idle(3_600_000).Retrycount(5).Justid().Build())
	rep := validate(t, src.URL(), dst.URL(), validation.Options{})
	assert.Empty(t, rep.Issues)
	assert.True(t, rep.Passed)
}
