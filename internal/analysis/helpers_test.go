package analysis_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
)

// dial connects to url for the length of the test.
func dial(t *testing.T, url string) *endpoint.Conn {
	t.Helper()
	e, err := endpoint.Parse(url)
	require.NoError(t, err)
	c, err := endpoint.Dial(context.Background(), e)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// analyze runs an analysis from src to dst and checks what every report
// must hold.
func analyze(t *testing.T, src, dst string, opts analysis.Options) *analysis.Report {
	t.Helper()
	r, err := analysis.Analyze(context.Background(), dial(t, src), dial(t, dst), opts)
	require.NoError(t, err)
	require.Equal(t, analysis.ReportVersion, r.Version)
	blocking := false
	for _, f := range r.Findings {
		require.NotEmpty(t, f.Message, "finding %s has no message", f.Category)
		blocking = blocking || f.Severity == analysis.Blocking
	}
	require.Equal(t, blocking, r.Blocking, "Blocking says whether a finding is blocking")
	return r
}

// finding returns the only finding of category c, failing the test when
// there is none or several.
func finding(t *testing.T, r *analysis.Report, c analysis.Category) analysis.Finding {
	t.Helper()
	fs := r.Find(c)
	require.Len(t, fs, 1, "findings of %s in %v", c, r.Findings)
	return fs[0]
}

// seedStrings writes n keys prefix:0..n-1 with values of size bytes, in
// pipelines; ttl(i) gives key i's TTL (0: none).
func seedStrings(t *testing.T, c valkey.Client, prefix string, n, size int, ttl func(i int) int64) {
	t.Helper()
	ctx := context.Background()
	val := strings.Repeat("v", size)
	cmds := make(valkey.Commands, 0, 500)
	flush := func() {
		for _, r := range c.DoMulti(ctx, cmds...) {
			require.NoError(t, r.Error())
		}
		cmds = cmds[:0]
	}
	for i := range n {
		k := prefix + ":" + strconv.Itoa(i)
		if ms := ttl(i); ms > 0 {
			cmds = append(cmds, c.B().Set().Key(k).Value(val).Px(time.Duration(ms)*time.Millisecond).Build())
		} else {
			cmds = append(cmds, c.B().Set().Key(k).Value(val).Build())
		}
		if len(cmds) == cap(cmds) {
			flush()
		}
	}
	flush()
}

func noTTL(int) int64 { return 0 }

// do runs one command and fails the test on an error.
func do(t *testing.T, c valkey.Client, cmd ...string) valkey.ValkeyResult {
	t.Helper()
	r := c.Do(context.Background(), c.B().Arbitrary(cmd[0]).Args(cmd[1:]...).Build())
	require.NoError(t, r.Error(), "%v", cmd)
	return r
}

// usedMemory reads INFO used_memory.
func usedMemory(t *testing.T, c valkey.Client) int64 {
	t.Helper()
	s, err := c.Do(context.Background(), c.B().Info().Section("memory").Build()).ToString()
	require.NoError(t, err)
	for line := range strings.SplitSeq(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("INFO memory has no used_memory")
	return 0
}

// requireModule returns the path of a module file that scripts/engines.sh
// extracts into the engines folder ($KVMIGRATE_ENGINES/modules), skipping
// the test when it is missing (failing it with CI=true).
func requireModule(t *testing.T, file string) string {
	t.Helper()
	dir := os.Getenv(kvtest.EnginesEnv)
	if dir == "" {
		wd, err := os.Getwd()
		require.NoError(t, err)
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dir = filepath.Join(d, ".engines")
				break
			}
			require.NotEqual(t, d, filepath.Dir(d), "no go.mod above %s", wd)
		}
	}
	path := filepath.Join(dir, "modules", file)
	if _, err := os.Stat(path); err != nil {
		msg := fmt.Sprintf("module %s is not installed (%v): run scripts/engines.sh", file, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}
