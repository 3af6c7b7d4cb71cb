package shake

import (
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// The supervisor's process tests cannot run redis-shake: it cannot be
// installed on these machines. They run a stand-in instead: this test
// binary, re-executed with KVMIGRATE_FAKESHAKE=<scenario>. The stand-in
// only replays a real redis-shake v4.2.0 capture from testdata/fixtures
// (<scenario>.stdout.log, ANSI colours and binary bytes included) with the
// capture's timing compressed (one logged second lasts FAKESHAKE_SECOND,
// 10ms by default) and ends with the exit status of fixtureExit. Like
// redis-shake it takes the configuration file as its only argument and
// fails as redis-shake does when it cannot read it as TOML; it does not
// connect anywhere or copy anything. The real binary runs in
// TestIntegrationRealRedisShake when REDIS_SHAKE_PATH is set.
//
// Signals: a capture that was stopped with Ctrl-C holds "Got signal" lines.
// The stand-in replays up to the first one, then waits for SIGTERM or
// SIGINT before it goes on, as redis-shake did (valkey-to-redis-sync needed
// a second signal, which the supervisor never sends: its grace period runs
// out and it kills the stand-in). A signal that comes earlier skips to that
// point of the capture. A capture without a signal installs no handler, so
// a signal ends the stand-in (the default action).
const (
	fakeEnv         = "KVMIGRATE_FAKESHAKE"
	fakeFixturesEnv = "FAKESHAKE_FIXTURES"
	fakeSecondEnv   = "FAKESHAKE_SECOND"
)

// fixtureExit is the exit status each capture ended with.
var fixtureExit = map[string]struct {
	code int
	why  string
}{
	"scan-full":              {0, "ran to \"all done\""},
	"sync-rdb-aof":           {0, "stopped by SIGINT, then \"all done\""},
	"sync-rdb-aof-interval1": {0, "stopped by SIGINT, then \"all done\""},
	"valkey-to-redis-scan":   {1, "exit 1, recorded in the fixtures' README"},
	"bad-password":           {1, "not recorded: the same error path (an ERR record with a stack trace, then exit) as valkey-to-redis-scan"},
	"unreachable-target":     {1, "not recorded: the same error path as valkey-to-redis-scan"},
	"valkey-to-redis-sync":   {0, "not recorded, and never reached here: the second signal it waits for never comes"},
}

func TestMain(m *testing.M) {
	if scenario := os.Getenv(fakeEnv); scenario != "" {
		os.Exit(fakeShake(scenario))
	}
	os.Exit(m.Run())
}

func fakeShake(scenario string) int {
	exit, ok := fixtureExit[scenario]
	if !ok {
		fmt.Fprintf(os.Stderr, "fakeshake: no capture named %q\n", scenario)
		return 2
	}
	// redis-shake v4: one argument, the configuration, read as TOML.
	if len(os.Args) != 2 {
		fmt.Println("Usage: redis-shake [config file]")
		return 1
	}
	conf, err := os.ReadFile(os.Args[1])
	if err == nil {
		var v map[string]any
		_, err = toml.Decode(string(conf), &v)
	}
	if err != nil {
		fmt.Printf("%s ERR failed to read config file: %v\n", time.Now().Format(time.DateTime), err)
		return 1
	}
	capture, err := os.ReadFile(filepath.Join(os.Getenv(fakeFixturesEnv), scenario+".stdout.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeshake:", err)
		return 2
	}
	second, err := time.ParseDuration(os.Getenv(fakeSecondEnv))
	if err != nil {
		second = 10 * time.Millisecond
	}

	lines := strings.SplitAfter(string(capture), "\n")
	var sigs chan os.Signal
	if bytes.Contains(capture, []byte("Got signal:")) {
		sigs = make(chan os.Signal, 4)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	}
	var prev time.Time
	early := false // a signal came before the capture's
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if line == "" {
			continue
		}
		if sigs != nil && strings.Contains(line, "Got signal:") {
			if !early {
				<-sigs // replay the signal's consequences only once it comes
			}
			early = false
		} else if t, ok := lineTime(line); ok {
			if !prev.IsZero() && t.After(prev) {
				select {
				case <-time.After(time.Duration(t.Sub(prev)/time.Second) * second):
				case <-sigs: // nil without a handler: never
					i = nextSignalLine(lines, i) - 1 // skip ahead to the recorded signal
					prev, early = time.Time{}, true
					continue
				}
			}
			prev = t
		}
		os.Stdout.WriteString(line)
	}
	return exit.code
}

// lineTime reads the timestamp of a console line (colours stripped).
func lineTime(line string) (time.Time, bool) {
	plain := ansiRE.ReplaceAllString(line, "")
	if len(plain) < len(time.DateTime) {
		return time.Time{}, false
	}
	t, err := time.Parse(time.DateTime, plain[:len(time.DateTime)])
	return t, err == nil
}

func nextSignalLine(lines []string, from int) int {
	for j := from; j < len(lines); j++ {
		if strings.Contains(lines[j], "Got signal:") {
			return j
		}
	}
	return len(lines)
}

// fakeOptions runs the stand-in for scenario with cfg.
func fakeOptions(t *testing.T, scenario string, cfg Config) RunOptions {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("locate the test binary: %v", err)
	}
	fixtures, err := filepath.Abs(filepath.Join("testdata", "fixtures"))
	if err != nil {
		t.Fatal(err)
	}
	return RunOptions{
		Config: cfg,
		Binary: exe,
		Env: []string{
			fakeEnv + "=" + scenario,
			fakeFixturesEnv + "=" + fixtures,
			fakeSecondEnv + "=10ms",
		},
		Grace:       2 * time.Second,
		ReportEvery: 50 * time.Millisecond,
	}
}
