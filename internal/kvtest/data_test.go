package kvtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"
)

// errorsOf records Errorf calls instead of failing the test.
type errorsOf struct {
	testing.TB
	errs []string
}

func (e *errorsOf) Helper() {}
func (e *errorsOf) Errorf(format string, args ...any) {
	e.errs = append(e.errs, fmt.Sprintf(format, args...))
}

// seedPEL writes a stream whose group has pending entries held by two
// consumers with different delivery counts, an acknowledged part and a
// consumer with nothing pending.
func seedPEL(t *testing.T, c valkey.Client) {
	t.Helper()
	b := c.B()
	cmds := valkey.Commands{b.Flushdb().Build()}
	for i := 1; i <= 10; i++ {
		cmds = append(cmds, b.Xadd().Key("s").Id(fmt.Sprintf("%d-0", i)).FieldValue().FieldValue("n", fmt.Sprint(i)).Build())
	}
	cmds = append(cmds,
		b.XgroupCreate().Key("s").Group("g").Id("0").Build(),
		b.Xreadgroup().Group("g", "a").Count(4).Streams().Key("s").Id(">").Build(),
		b.Xreadgroup().Group("g", "b").Count(4).Streams().Key("s").Id(">").Build(),
		b.Xack().Key("s").Group("g").Id("1-0").Build(),
		b.Xclaim().Key("s").Group("g").Consumer("a").MinIdleTime("0").Id("2-0").Retrycount(4).Justid().Build(),
		b.XgroupCreateconsumer().Key("s").Group("g").Consumer("idle").Build(),
	)
	for _, r := range c.DoMulti(context.Background(), cmds...) {
		require.NoError(t, r.Error())
	}
}

func TestSnapshotComparesStreamPendingEntries(t *testing.T) {
	srv := StartServer(t, Require(t, "redis-7.0"))
	ctx := context.Background()
	src, dst := srv.ClientDB(t, 0), srv.ClientDB(t, 1)
	seedPEL(t, src)
	want := Snapshot(ctx, t, src)

	cases := []struct {
		name   string
		damage func(b valkey.Builder) valkey.Completed
		same   bool
	}{
		{"the same stream, groups and pending entries match", nil, true},
		{"only idle times differ: they are not compared", func(b valkey.Builder) valkey.Completed {
			return b.Xclaim().Key("s").Group("g").Consumer("a").MinIdleTime("0").Id("2-0").Idle(3_600_000).Retrycount(4).Justid().Build()
		}, true},
		{"a pending entry acknowledged", func(b valkey.Builder) valkey.Completed {
			return b.Xack().Key("s").Group("g").Id("3-0").Build()
		}, false},
		{"a delivery count differs", func(b valkey.Builder) valkey.Completed {
			return b.Xclaim().Key("s").Group("g").Consumer("a").MinIdleTime("0").Id("2-0").Retrycount(5).Justid().Build()
		}, false},
		{"a pending entry held by another consumer", func(b valkey.Builder) valkey.Completed {
			return b.Xclaim().Key("s").Group("g").Consumer("b").MinIdleTime("0").Id("2-0").Retrycount(4).Justid().Build()
		}, false},
		{"a consumer with nothing pending missing", func(b valkey.Builder) valkey.Completed {
			return b.XgroupDelconsumer().Key("s").Group("g").Consumername("idle").Build()
		}, false},
		{"entries-read differs", func(b valkey.Builder) valkey.Completed {
			return b.XgroupSetid().Key("s").Group("g").Id("8-0").Entriesread(3).Build()
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seedPEL(t, dst)
			if tc.damage != nil {
				require.NoError(t, dst.Do(ctx, tc.damage(dst.B())).Error())
			}
			got := Snapshot(ctx, t, dst)
			rec := &errorsOf{TB: t}
			ok := AssertSameData(rec, want, got, time.Second)
			assert.Equal(t, tc.same, ok, "AssertSameData: %q", rec.errs)
			assert.Equal(t, tc.same, len(rec.errs) == 0, "errors reported: %q", rec.errs)
		})
	}
}
