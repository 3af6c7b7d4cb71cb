package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/sample"
	"github.com/kvmigrate/kvmigrate/internal/validation"
)

func TestValidate(t *testing.T) {
	const secret = "v4lid4te-pw"
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"), kvtest.WithPassword(secret))
	for _, s := range []*kvtest.Server{src, dst} {
		for _, db := range []int{0, 2} {
			_, err := sample.Seed(ctx, s.ClientDB(t, db), sample.Options{PerType: 3})
			require.NoError(t, err)
		}
	}
	c := newCLI(t)
	c.env = []string{"KVMIGRATE_TARGET_PASSWORD=" + secret}
	target := "valkey://" + dst.Addr() // the password comes from the environment

	t.Run("identical sides pass with exit code 0 and a JSON report", func(t *testing.T) {
		out, errOut, code := c.run("validate", "--source", src.URL(), "--target", target, "--json")
		require.Equal(t, exitOK, code, "%s\n%s", out, errOut)
		var rep validation.Report
		require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
		assert.True(t, rep.Passed)
		require.Len(t, rep.KeyCounts, 2, "every database in use")
		assert.Equal(t, []int64{42, 42}, []int64{rep.KeyCounts[1].Source, rep.KeyCounts[1].Target})
		assert.Equal(t, 84, rep.Sample.Full)
		assert.NotContains(t, out+errOut, secret)
	})

	k := "string:1:true:\x00" // sample.Seed's name for a string with a TTL and a NUL
	dc := dst.ClientDB(t, 2)
	require.NoError(t, dc.Do(ctx, dc.B().Del().Key(k).Build()).Error())

	t.Run("a missing key fails with exit code 1 and is named in the report", func(t *testing.T) {
		out, errOut, code := c.run("validate", "--source", src.URL(), "--target", target)
		assert.Equal(t, exitFailed, code, "%s\n%s", out, errOut)
		assert.Contains(t, out, "validation FAILED")
		assert.Contains(t, out, `missing    db 2  "string:1:true:\x00": not on the target (source: string, 2 bytes, expires in`)
		assert.Contains(t, errOut, "validation failed: 2 issues, key counts differ by 1.19 %")
		assert.NotContains(t, out+errOut, secret)
	})

	t.Run("one database by URL, keys redacted", func(t *testing.T) {
		out, errOut, code := c.run("validate", "--source", src.URL()+"/2", "--target", target+"/2", "--json", "--redact-keys", "--sample", "100")
		assert.Equal(t, exitFailed, code, errOut)
		var rep validation.Report
		require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
		require.Len(t, rep.KeyCounts, 1)
		assert.Equal(t, 2, rep.KeyCounts[0].SourceDB)
		assert.Equal(t, 100, rep.Sample.Requested)
		assert.True(t, rep.Sample.Exhaustive, "42 keys, fewer than 100: all compared")
		assert.NotContains(t, out, "string:1", "no key names")
		assert.Contains(t, out, validation.RedactName(k))
	})

	t.Run("bad input is refused with exit code 2 before connecting", func(t *testing.T) {
		for _, args := range [][]string{
			{"validate", "--target", target},
			{"validate", "--source", src.URL(), "--target", target, "--sample", "0"},
			{"validate", "--source", "http://x:1", "--target", target},
		} {
			_, errOut, code := c.run(args...)
			assert.Equal(t, exitUsage, code, strings.Join(args, " ")+": "+errOut)
		}
	})
}

// validate on its own (after a migrate) finds the source's largest keys
// with the analysis's big-key sweep and compares them besides its random
// sample: a change deep in a big hash is caught, which the sample alone
// (--largest 0) almost never does.
func TestValidateComparesTheSourcesLargestKeys(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	kvtest.SeedSmallAndBig(t, src.Client(t))
	kvtest.SeedSmallAndBig(t, dst.Client(t))
	dc := dst.Client(t)
	require.NoError(t, dc.Do(ctx, dc.B().Hset().Key("big:hash").FieldValue().FieldValue("field:41234", "changed").Build()).Error())
	c := newCLI(t)

	out, errOut, code := c.run("validate", "--source", src.URL(), "--target", dst.URL(), "--json")
	require.Equal(t, exitFailed, code, "%s\n%s", out, errOut)
	var rep validation.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	assert.GreaterOrEqual(t, rep.Sample.Always, len(kvtest.BigKeys), "the big keys were added to the sample")
	require.Len(t, rep.Issues, 1, "%+v", rep.Issues)
	assert.Equal(t, "big:hash", rep.Issues[0].Key)

	// Its exit code is not asserted: the random sample may, rarely, draw
	// big:hash.
	out, errOut, _ = c.run("validate", "--source", src.URL(), "--target", dst.URL(), "--json", "--largest", "0")
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out+errOut)
	assert.Zero(t, rep.Sample.Always, "--largest 0: the sample only")
}
