package workflow_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/sample"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// A whole run (analysis, copy, validation) between two TLS-only servers,
// each with its own CA, the target also requiring a client certificate.
func TestRunOverTLS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const srcPW, dstPW = "src-tls-pw", "dst-tls-pw"
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"), kvtest.WithPassword(srcPW), kvtest.WithTLS(kvtest.TLSOptions{}))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"), kvtest.WithPassword(dstPW), kvtest.WithTLS(kvtest.TLSOptions{ClientAuth: true}))
	require.NotEqual(t, src.TLS.CA, dst.TLS.CA)
	n0, err := sample.Seed(ctx, src.ClientDB(t, 0), sample.Options{PerType: 10})
	require.NoError(t, err)
	n2, err := sample.Seed(ctx, src.ClientDB(t, 2), sample.Options{PerType: 2})
	require.NoError(t, err)
	started := time.Now()
	before0 := kvtest.Snapshot(ctx, t, src.ClientDB(t, 0))
	before2 := kvtest.Snapshot(ctx, t, src.ClientDB(t, 2))

	source, target := parse(t, src.URL()), parse(t, dst.URL())
	require.True(t, source.TLS.Enabled && target.TLS.Enabled, "%s → %s", source, target)
	require.NotEmpty(t, target.TLS.CertFile, "the target is dialed with a client certificate")
	store := openStore(t)
	l := &workflow.Local{Store: store}
	out, err := l.Run(ctx, workflow.RunRequest{
		Request:  workflow.Request{Source: source, Target: target, ChunkKeys: 25},
		Analysis: analysis.Options{Sample: analysis.MinSample},
	})
	require.NoError(t, err)
	require.NotNil(t, out.Report)
	assert.False(t, out.Report.Blocking, "%v", out.Report.Findings)
	assert.True(t, out.Validated, "the validation step ran over TLS and passed")
	assert.Equal(t, job.StatusSucceeded, out.Job.Status)
	assert.EqualValues(t, n0+n2, out.Job.Counters.Copied)

	kvtest.AssertSameData(t, before0, kvtest.Snapshot(ctx, t, dst.ClientDB(t, 0)), time.Since(started))
	kvtest.AssertSameData(t, before2, kvtest.Snapshot(ctx, t, dst.ClientDB(t, 2)), time.Since(started))

	j, err := store.Get(ctx, out.Job.ID)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(j.Source, "rediss://"), j.Source)
	assert.True(t, strings.HasPrefix(j.Target, "valkeys://"), j.Target)
	assert.Contains(t, j.Target, "tls_cert=", "the stored endpoint keeps its TLS options")
	for _, s := range []string{j.Source, j.Target} {
		assert.NotContains(t, s, srcPW)
		assert.NotContains(t, s, dstPW)
	}
}

// The same between two 3-master clusters that speak only TLS, to clients
// and on their cluster bus.
func TestRunOverTLSBetweenClusters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := kvtest.StartCluster(t, kvtest.Require(t, "redis-7.0"), 3, kvtest.WithPassword("pw"), kvtest.WithTLS(kvtest.TLSOptions{}))
	dst := kvtest.StartCluster(t, kvtest.Require(t, "valkey-8.0"), 3, kvtest.WithTLS(kvtest.TLSOptions{}))
	n, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 10})
	require.NoError(t, err)
	started := time.Now()
	before := kvtest.Snapshot(ctx, t, src.Client(t))

	store := openStore(t)
	l := &workflow.Local{Store: store}
	out, err := l.Run(ctx, workflow.RunRequest{
		Request:  workflow.Request{Source: parse(t, src.URL()), Target: parse(t, dst.URL()), ChunkKeys: 25},
		Analysis: analysis.Options{Sample: analysis.MinSample},
	})
	require.NoError(t, err)
	assert.True(t, out.Validated)
	assert.Equal(t, job.StatusSucceeded, out.Job.Status)
	assert.EqualValues(t, n, out.Job.Counters.Copied)
	kvtest.AssertSameData(t, before, kvtest.Snapshot(ctx, t, dst.Client(t)), time.Since(started))

	// One shard per source master, named by its TLS port: the only one
	// the nodes serve.
	var nodes []string
	for _, s := range out.Shards {
		nodes = append(nodes, s.Node)
	}
	var want []string
	for _, node := range src.Nodes {
		want = append(want, node.Addr())
	}
	assert.ElementsMatch(t, want, nodes)
}

// TLS spoken to a plain-text port, or plain text to a TLS port, fails the
// job at once with an error that names the endpoint, says which scheme to
// use, and shows no password.
func TestRunWithTheWrongSchemeForAPortSaysWhichToUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const secret = "tls-mixup-pw"
	// One server of each engine with a plain and a TLS port.
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"), kvtest.WithPassword(secret), kvtest.WithTLS(kvtest.TLSOptions{Plain: true}))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"), kvtest.WithPassword(secret), kvtest.WithTLS(kvtest.TLSOptions{Plain: true}))
	n, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 1})
	require.NoError(t, err)
	require.Positive(t, n)

	tlsToPlain := "rediss://:" + secret + "@" + src.PlainAddr() + "?tls_ca=" + src.TLS.CA
	plainToTLS := "valkey://:" + secret + "@" + dst.Addr()
	for _, tc := range []struct {
		name           string
		source, target string
		names          string // the endpoint the error names
		want           string // the advice
	}{
		{"a rediss:// source on a plain-text port is told to use redis://", tlsToPlain, dst.URL(), src.PlainAddr(), "use redis:// instead of rediss://"},
		{"a valkey:// target on a TLS port is told to use valkeys://", src.URL(), plainToTLS, dst.Addr(), "use valkeys:// instead of valkey://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := openStore(t)
			l := &workflow.Local{Store: store}
			out, err := l.Run(ctx, workflow.RunRequest{
				Request:  workflow.Request{Source: parse(t, tc.source), Target: parse(t, tc.target)},
				Analysis: analysis.Options{Sample: analysis.MinSample},
			})
			require.ErrorIs(t, err, endpoint.ErrTLS)
			assert.NotErrorIs(t, err, context.DeadlineExceeded, "found out at once, not by a timeout")
			assert.Contains(t, err.Error(), tc.names)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), secret)

			j, err := store.Get(ctx, out.Job.ID)
			require.NoError(t, err)
			assert.Equal(t, job.StatusFailed, j.Status)
			assert.Contains(t, j.Error, tc.want, "the job records the advice")
			assert.NotContains(t, j.Error, secret)
			assert.Zero(t, j.Counters.Copied)
		})
	}
	assert.Zero(t, dbsize(t, dst), "nothing was written to the target")
}
