package workflow_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/validation"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// seedUsers writes 100 keys of five types in turn into db: 50 named
// user:TYPE:i and 50 named other:TYPE:i.
func seedUsers(t *testing.T, c valkey.Client) {
	t.Helper()
	var cmds valkey.Commands
	for _, prefix := range []string{"user:", "other:"} {
		for i := range 50 {
			b := c.B()
			v := "v" + strconv.Itoa(i)
			switch i % 5 {
			case 0:
				cmds = append(cmds, b.Set().Key(prefix+"string:"+strconv.Itoa(i)).Value(v).Build())
			case 1:
				cmds = append(cmds, b.Hset().Key(prefix+"hash:"+strconv.Itoa(i)).FieldValue().FieldValue("f", v).Build())
			case 2:
				cmds = append(cmds, b.Rpush().Key(prefix+"list:"+strconv.Itoa(i)).Element(v, "x").Build())
			case 3:
				cmds = append(cmds, b.Sadd().Key(prefix+"set:"+strconv.Itoa(i)).Member(v, "m").Build())
			case 4:
				cmds = append(cmds, b.Zadd().Key(prefix+"zset:"+strconv.Itoa(i)).ScoreMember().ScoreMember(1, v).Build())
			}
		}
	}
	for _, r := range c.DoMulti(context.Background(), cmds...) {
		require.NoError(t, r.Error())
	}
}

// A run with a copy filter copies the keys it selects and validates those
// only: the job succeeds, and the stored report says its counts are of
// the filtered keys.
func TestRunValidatesTheKeysItsFilterSelects(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	seedUsers(t, src.ClientDB(t, 0))
	seedUsers(t, src.ClientDB(t, 2))

	for _, tc := range []struct {
		name            string
		filter          job.Options
		srcDB, dstDB    int
		want            validation.Filter
		copied, counted int64
	}{
		{"--match user:* in every database", job.Options{Match: "user:*"}, 0, 0, validation.Filter{Match: "user:*"}, 100, 50},
		{"--type hash", job.Options{Type: "hash"}, 0, 0, validation.Filter{Type: "hash"}, 40, 20},
		{"--match user:* --type zset from db 2 to db 5", job.Options{Match: "user:*", Type: "zset"}, 2, 5,
			validation.Filter{Match: "user:*", Type: "zset"}, 10, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
			store := openStore(t)
			l := &workflow.Local{Store: store}
			srcURL, dstURL := src.URL(), dst.URL()
			if tc.srcDB != 0 || tc.dstDB != 0 {
				srcURL, dstURL = fmt.Sprintf("%s/%d", srcURL, tc.srcDB), fmt.Sprintf("%s/%d", dstURL, tc.dstDB)
			}
			out, err := l.Run(ctx, workflow.RunRequest{
				Request:  workflow.Request{Source: parse(t, srcURL), Target: parse(t, dstURL), Options: tc.filter},
				Analysis: analysis.Options{Sample: analysis.MinSample},
			})
			require.NoError(t, err)
			assert.Equal(t, job.StatusSucceeded, out.Job.Status, out.Job.Error)
			assert.EqualValues(t, tc.copied, out.Job.Counters.Copied)
			require.NotNil(t, out.Validation)
			assert.True(t, out.Validated)
			assert.True(t, out.Validation.Passed, "%+v", out.Validation.Issues)
			assert.Equal(t, &tc.want, out.Validation.Filter)
			var counted int64
			for _, c := range out.Validation.KeyCounts {
				assert.Equal(t, c.Source, c.Target, "db %d", c.SourceDB)
				if tc.srcDB != 0 || tc.dstDB != 0 {
					assert.Equal(t, []int{tc.srcDB, tc.dstDB}, []int{c.SourceDB, c.TargetDB}, "one database, mapped")
				}
				counted += c.Source
			}
			assert.Equal(t, tc.counted*int64(len(out.Validation.KeyCounts)), counted, "the matching keys of each database")

			stored, err := store.Report(ctx, out.Job.ID, job.ReportValidation)
			require.NoError(t, err)
			assert.Contains(t, string(stored), `"filter":{`)
			assert.Contains(t, string(stored), `"passed":true`)
		})
	}
}
