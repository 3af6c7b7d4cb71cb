package shaketest_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/shake"
	"github.com/kvmigrate/kvmigrate/internal/shake/shaketest"
)

func TestMain(m *testing.M) { shaketest.Main(m) }

func config(t *testing.T, mode shake.Mode) shake.Config {
	parse := func(u string) endpoint.Endpoint {
		e, err := endpoint.Parse(u)
		require.NoError(t, err)
		return e
	}
	return shake.Config{Mode: mode, Source: parse("redis://127.0.0.1:1?cluster=false"),
		Target: parse("redis://127.0.0.1:2?cluster=false"), Dir: filepath.Join(t.TempDir(), "shake")}
}

// The script runs the stand-in whatever environment it gets: the
// supervisor gives redis-shake an empty one.
func TestBinaryReplaysTheCaptureWithAnEmptyEnvironment(t *testing.T) {
	res, err := shake.Run(context.Background(), shake.RunOptions{
		Config: config(t, shake.ModeScan), Binary: shaketest.Binary(t, "scan-full", shaketest.Second(time.Millisecond)),
	})
	require.NoError(t, err)
	assert.Equal(t, shake.StageDone, res.Status.Stage)
	assert.Equal(t, int64(958214), res.Status.Progress.WriteCount)
	assert.Equal(t, shaketest.ExitCode("scan-full"), res.ExitCode)
}

func TestEveryStdoutCaptureIsAScenario(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "fixtures", "*.stdout.log"))
	require.NoError(t, err)
	var names []string
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".stdout.log"))
	}
	assert.ElementsMatch(t, names, shaketest.Scenarios(), "each capture has its exit status")
}
