package shake

import (
	"testing"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/shake/shaketest"
)

// The supervisor's process tests cannot run redis-shake: it cannot be
// installed on these machines. They run shaketest's stand-in instead: this
// test binary, started again, which ONLY REPLAYS a real redis-shake v4.2.0
// capture from testdata/fixtures with its timing compressed (10ms per
// logged second) and its exit status, connects nowhere and copies nothing.
// See package shaketest for how it handles signals. The real binary runs
// in TestIntegrationRealRedisShake when REDIS_SHAKE_PATH is set.
func TestMain(m *testing.M) { shaketest.Main(m) }

// fakeOptions runs the stand-in for scenario with cfg.
func fakeOptions(t *testing.T, scenario string, cfg Config) RunOptions {
	t.Helper()
	bin, env := shaketest.Command(t, scenario)
	return RunOptions{
		Config:      cfg,
		Binary:      bin,
		Env:         env,
		Grace:       2 * time.Second,
		ReportEvery: 50 * time.Millisecond,
	}
}
