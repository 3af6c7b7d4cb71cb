package analysis_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
)

// seedApp writes app:* keys: strings only, or strings and one key of each
// compound type (a stream with a consumer group).
func seedApp(t *testing.T, c valkey.Client, compound, big bool) {
	t.Helper()
	seedStrings(t, c, "app:s", 20, 10, noTTL)
	if big {
		// Above the DUMP/RESTORE bound (2,000 elements): copied through a
		// temporary key, whatever the path.
		args := []string{"HSET", "app:big"}
		for i := range 3000 {
			args = append(args, fmt.Sprintf("f%d", i), "v")
		}
		do(t, c, args...)
	}
	if !compound {
		return
	}
	do(t, c, "HSET", "app:h", "f", "v")
	do(t, c, "RPUSH", "app:l", "a", "b")
	do(t, c, "SADD", "app:set", "m")
	do(t, c, "ZADD", "app:z", "1", "m")
	do(t, c, "XADD", "app:x", "*", "f", "v")
	do(t, c, "XGROUP", "CREATE", "app:x", "g", "0")
}

// preflightFindings returns the acl_preflight findings of a severity.
func preflightFindings(r *analysis.Report, sev analysis.Severity) []analysis.Finding {
	var out []analysis.Finding
	for _, f := range r.Find(analysis.CategoryACLPreflight) {
		if f.Severity == sev {
			out = append(out, f)
		}
	}
	return out
}

// The ACL pre-flight asks ACL DRYRUN whether each side's user may run the
// commands of the copy, on a sampled key and on a temporary key.
func TestACLPreflightNamesWhatTheCopyMayNotDo(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// srcACL and dstACL: the user "mig" (password pw) the side's URL
		// connects as; "" connects as the default user.
		srcACL, dstACL string
		compound, big  bool
		check          func(t *testing.T, r *analysis.Report)
	}{
		{
			name: "a target user without RESTORE gets a warning naming RESTORE", dstACL: "user mig on >pw ~app:* ~__kvmigrate_tmp_* +@all -restore", compound: true,
			check: func(t *testing.T, r *analysis.Report) {
				assert.False(t, r.Blocking, "%v", r.Findings)
				ws := preflightFindings(r, analysis.Warning)
				require.Len(t, ws, 1, "%v", r.Findings)
				assert.Equal(t, []string{"RESTORE"}, ws[0].Data["commands"])
				assert.Equal(t, "target", ws[0].Data["side"])
				assert.Equal(t, "mig", ws[0].Data["user"])
				assert.Equal(t, "ACL SETUSER mig +restore", ws[0].Data["rule"])
				assert.Contains(t, ws[0].Message, "fast path")
				assert.NotContains(t, ws[0].Message, "pw")
			},
		},
		{
			name: "a target user limited to app:* gets a warning on the temporary keys when no key seen needs one", dstACL: "user mig on >pw ~app:* +@all", compound: true,
			check: func(t *testing.T, r *analysis.Report) {
				assert.Empty(t, preflightFindings(r, analysis.Blocking), "small compound keys are restored or written whole: %v", r.Findings)
				ws := preflightFindings(r, analysis.Warning)
				require.Len(t, ws, 1, "%v", r.Findings)
				assert.Equal(t, "__kvmigrate_tmp_*", ws[0].Data["keyPattern"])
				assert.Contains(t, ws[0].Message, "no key the analysis saw needs one")
			},
		},
		{
			name: "a target user limited to app:* is blocked on the temporary keys of a big key", dstACL: "user mig on >pw ~app:* +@all", compound: true, big: true,
			check: func(t *testing.T, r *analysis.Report) {
				bs := preflightFindings(r, analysis.Blocking)
				require.Len(t, bs, 1, "%v", r.Findings)
				f := bs[0]
				assert.Equal(t, "__kvmigrate_tmp_*", f.Data["keyPattern"])
				assert.Equal(t, "ACL SETUSER mig ~__kvmigrate_tmp_*", f.Data["rule"])
				assert.Contains(t, f.Data["commands"], "HSET")
				assert.Contains(t, f.Data["commands"], "XADD")
				assert.Contains(t, f.Data["commands"], "EVAL", "EVAL names the temporary key")
				assert.Contains(t, f.Message, "__kvmigrate_tmp_*")
				assert.Equal(t, "app:big", f.Data["needingKey"])
				assert.True(t, r.Blocking)
				var denied []string
				for _, d := range r.Target.Preflight.Denied {
					denied = append(denied, d.Key)
					assert.True(t, d.TempKey, "only the temporary keys are denied: %+v", d)
				}
				assert.NotEmpty(t, denied)
			},
		},
		{
			name: "a target user limited to app:* is fine when the source has only strings there", dstACL: "user mig on >pw ~app:* +@all",
			check: func(t *testing.T, r *analysis.Report) {
				assert.Empty(t, r.Find(analysis.CategoryACLPreflight))
				assert.False(t, r.Blocking, "%v", r.Findings)
				require.NotNil(t, r.Target.Preflight)
				assert.True(t, r.Target.Preflight.Checked)
				assert.Equal(t, "mig", r.Target.Preflight.User)
				assert.Positive(t, r.Target.Preflight.Commands)
			},
		},
		{
			name: "a target user without SET is blocked", dstACL: "user mig on >pw ~* +@all -set",
			check: func(t *testing.T, r *analysis.Report) {
				bs := preflightFindings(r, analysis.Blocking)
				require.Len(t, bs, 1, "%v", r.Findings)
				assert.Equal(t, []string{"SET"}, bs[0].Data["commands"])
				assert.Equal(t, "ACL SETUSER mig +set", bs[0].Data["rule"])
				assert.Contains(t, bs[0].Message, "app:s:")
				assert.True(t, r.Blocking)
			},
		},
		{
			name: "a target user without EVAL gets a warning: PEXPIRE then RENAME", dstACL: "user mig on >pw ~* +@all -eval -evalsha", compound: true,
			check: func(t *testing.T, r *analysis.Report) {
				assert.False(t, r.Blocking, "%v", r.Findings)
				ws := preflightFindings(r, analysis.Warning)
				require.Len(t, ws, 1, "%v", r.Findings)
				assert.Equal(t, []string{"EVALSHA", "EVAL"}, ws[0].Data["commands"])
				assert.Contains(t, ws[0].Message, "PEXPIRE")
			},
		},
		{
			name: "a source user without DUMP gets a warning naming DUMP", srcACL: "user mig on >pw ~* +@all -dump", compound: true,
			check: func(t *testing.T, r *analysis.Report) {
				assert.False(t, r.Blocking, "%v", r.Findings)
				ws := preflightFindings(r, analysis.Warning)
				require.Len(t, ws, 1, "%v", r.Findings)
				assert.Equal(t, "source", ws[0].Data["side"])
				assert.Equal(t, []string{"DUMP"}, ws[0].Data["commands"])
				assert.Equal(t, "ACL SETUSER mig +dump", ws[0].Data["rule"])
			},
		},
		{
			name: "a source user without HSCAN is blocked when hashes are copied", srcACL: "user mig on >pw ~* +@all -hscan", compound: true,
			check: func(t *testing.T, r *analysis.Report) {
				bs := preflightFindings(r, analysis.Blocking)
				require.Len(t, bs, 1, "%v", r.Findings)
				assert.Equal(t, []string{"HSCAN"}, bs[0].Data["commands"])
				assert.Equal(t, "source", bs[0].Data["side"])
			},
		},
		{
			name: "a caller that may not run ACL DRYRUN gets an info, not an error", dstACL: "user mig on >pw ~* +@all -acl|dryrun", compound: true,
			check: func(t *testing.T, r *analysis.Report) {
				f := finding(t, r, analysis.CategoryACLPreflight)
				assert.Equal(t, analysis.Info, f.Severity)
				assert.Contains(t, f.Message, "could not be checked")
				assert.Equal(t, "target", f.Data["side"])
				require.NotNil(t, r.Target.Preflight)
				assert.False(t, r.Target.Preflight.Checked)
				assert.True(t, r.Source.Preflight.Checked, "the source is still checked")
			},
		},
		{
			name: "the default user may run everything: no finding", compound: true,
			check: func(t *testing.T, r *analysis.Report) {
				assert.Empty(t, r.Find(analysis.CategoryACLPreflight))
				for _, p := range []*analysis.ACLPreflight{r.Source.Preflight, r.Target.Preflight} {
					require.NotNil(t, p)
					assert.True(t, p.Checked)
					assert.Equal(t, "default", p.User)
					assert.Empty(t, p.Denied)
					assert.Greater(t, p.Commands, 10, "every type's commands are checked")
				}
			},
		},
	}
	for _, engine := range []string{"redis-7.0", "valkey-8.1"} {
		for _, tc := range cases {
			t.Run(engine+": "+tc.name, func(t *testing.T) {
				t.Parallel()
				srcEngine, dstEngine := "redis-7.0", engine
				if tc.srcACL != "" {
					srcEngine, dstEngine = engine, "valkey-8.1"
				}
				var srcOpts, dstOpts []kvtest.Option
				if tc.srcACL != "" {
					srcOpts = append(srcOpts, kvtest.WithACL(tc.srcACL))
				}
				if tc.dstACL != "" {
					dstOpts = append(dstOpts, kvtest.WithACL(tc.dstACL))
				}
				src := kvtest.StartServer(t, kvtest.Require(t, srcEngine), srcOpts...)
				dst := kvtest.StartServer(t, kvtest.Require(t, dstEngine), dstOpts...)
				seedApp(t, src.Client(t), tc.compound, tc.big)
				srcURL, dstURL := src.URL(), dst.URL()
				if tc.srcACL != "" {
					srcURL = "redis://mig:pw@" + src.Addr()
				}
				if tc.dstACL != "" {
					dstURL = "redis://mig:pw@" + dst.Addr()
				}
				r := analyze(t, srcURL, dstURL, analysis.Options{})
				require.EqualValues(t, 20+map[bool]int{true: 5}[tc.compound]+map[bool]int{true: 1}[tc.big], r.Sample.Sampled)
				tc.check(t, r)

				var text bytes.Buffer
				require.NoError(t, r.WriteText(&text))
				assert.Contains(t, text.String(), "ACL pre-flight (target")
				for _, f := range r.Find(analysis.CategoryACLPreflight) {
					assert.Contains(t, text.String(), f.Message)
				}
			})
		}
	}
}

// ACL users are per node: a cluster target whose masters disagree has the
// denial named with the master that makes it.
func TestACLPreflightChecksEveryMasterOfACluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	seedApp(t, src.Client(t), true, false)
	dst := kvtest.StartCluster(t, kvtest.Require(t, "valkey-8.1"), 3, kvtest.WithACL("user mig on >pw ~* &* +@all"))
	odd := dst.Nodes[1]
	oc := odd.Client(t)
	require.NoError(t, oc.Do(ctx, oc.B().Arbitrary("ACL", "SETUSER").Args("mig", "-restore").Build()).Error())

	r := analyze(t, src.URL(), "valkey://mig:pw@"+dst.Nodes[0].Addr()+"?cluster=true", analysis.Options{})
	require.NotNil(t, r.Target.Preflight)
	require.True(t, r.Target.Preflight.Checked, r.Target.Preflight.Note)
	require.Len(t, r.Target.Preflight.Denied, 1, "%+v", r.Target.Preflight.Denied)
	d := r.Target.Preflight.Denied[0]
	assert.Equal(t, "RESTORE", d.Command)
	assert.Equal(t, []string{odd.Addr()}, d.Nodes)
	ws := preflightFindings(r, analysis.Warning)
	require.Len(t, ws, 1, "%v", r.Findings)
	assert.Contains(t, ws[0].Message, "refused only by the master(s) "+odd.Addr())
	assert.Equal(t, []string{odd.Addr()}, ws[0].Data["nodes"])
}
