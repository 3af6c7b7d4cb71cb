// Package shaketest is a stand-in for redis-shake in tests, which cannot
// run the real one: it cannot be installed on these machines.
//
// The stand-in ONLY REPLAYS a real redis-shake v4.2.0 capture from
// internal/shake/testdata/fixtures (<scenario>.stdout.log, ANSI colours and
// binary bytes included) with the capture's timing compressed, and ends
// with the exit status the capture ended with. It does not connect to any
// server and copies NO DATA: tests that run it assert on what kvmigrate
// makes of redis-shake (stages, progress, exit codes, the cutover flow,
// the job record), never on the data on the target. Like redis-shake it
// takes the configuration file as its only argument and fails as
// redis-shake does when that is not TOML. The real binary runs in
// internal/shake's TestIntegrationRealRedisShake when REDIS_SHAKE_PATH is
// set.
//
// The stand-in is the test binary itself, started again: a package that
// uses it calls Main from its TestMain. Command returns the binary and the
// environment for shake.RunOptions; Binary writes a small script that sets
// that environment, for code that finds redis-shake by path
// ($REDIS_SHAKE_PATH) or runs it with an empty environment.
//
// Signals: a capture that was stopped with Ctrl-C holds "Got signal"
// lines. The stand-in replays up to the first one, then waits for SIGTERM
// or SIGINT before it goes on, as redis-shake did (valkey-to-redis-sync
// needed a second signal, which the supervisor never sends: its grace
// period runs out and it kills the stand-in). A signal that comes earlier
// skips to that point of the capture. A capture without a signal installs
// no handler, so a signal ends the stand-in (the default action).
package shaketest

import (
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// Environment of the stand-in.
const (
	envScenario = "KVMIGRATE_FAKESHAKE"
	envFixtures = "FAKESHAKE_FIXTURES"
	envSecond   = "FAKESHAKE_SECOND"
)

// DefaultSecond is how long one second of a capture lasts in the replay.
const DefaultSecond = 10 * time.Millisecond

// captures are the scenarios, with the exit status each capture ended with.
var captures = map[string]struct {
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

// Scenarios lists the captures the stand-in can replay.
func Scenarios() []string {
	var s []string
	for name := range captures {
		s = append(s, name)
	}
	slices.Sort(s)
	return s
}

// ExitCode is the exit status the stand-in ends scenario with when it
// replays it to the end.
func ExitCode(scenario string) int { return captures[scenario].code }

// Main runs the stand-in and exits when this process was started as one
// (by Command or Binary); otherwise it runs the tests. Call it from
// TestMain: func TestMain(m *testing.M) { shaketest.Main(m) }.
func Main(m *testing.M) {
	if scenario := os.Getenv(envScenario); scenario != "" {
		os.Exit(replay(scenario))
	}
	os.Exit(m.Run())
}

// StandIn reports whether this process was started as the stand-in (for a
// TestMain that does more than Main: call Main first when it is).
func StandIn() bool { return os.Getenv(envScenario) != "" }

// Option changes how the stand-in replays.
type Option func(*settings)

type settings struct{ second time.Duration }

// Second makes one second of the capture last d (default DefaultSecond).
func Second(d time.Duration) Option { return func(s *settings) { s.second = d } }

// Command returns the stand-in for scenario: the binary to run (this test
// binary) and its whole environment (shake.RunOptions.Env).
func Command(t testing.TB, scenario string, opts ...Option) (binary string, env []string) {
	t.Helper()
	if _, ok := captures[scenario]; !ok {
		t.Fatalf("shaketest: no capture named %q (have %v)", scenario, Scenarios())
	}
	s := settings{second: DefaultSecond}
	for _, o := range opts {
		o(&s)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("shaketest: locate the test binary: %v", err)
	}
	return exe, []string{
		envScenario + "=" + scenario,
		envFixtures + "=" + fixturesDir(t),
		envSecond + "=" + s.second.String(),
	}
}

// Binary writes an executable script named redis-shake, in a directory of
// its own under t.TempDir(), that runs the stand-in for scenario whatever
// environment it is given, and returns its path: for $REDIS_SHAKE_PATH, or
// shake.RunOptions.Binary with no Env.
func Binary(t testing.TB, scenario string, opts ...Option) string {
	t.Helper()
	exe, env := Command(t, scenario, opts...)
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# kvmigrate test stand-in for redis-shake: replays the capture " + scenario + ", copies nothing.\n")
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "%s=%s; export %s\n", name, shellQuote(value), name)
	}
	fmt.Fprintf(&b, "exec %s \"$@\"\n", shellQuote(exe))
	dir, err := os.MkdirTemp(t.TempDir(), "fakeshake")
	if err != nil {
		t.Fatalf("shaketest: %v", err)
	}
	path := filepath.Join(dir, "redis-shake")
	if err := os.WriteFile(path, []byte(b.String()), 0o700); err != nil {
		t.Fatalf("shaketest: write the stand-in script: %v", err)
	}
	return path
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// fixturesDir is internal/shake/testdata/fixtures, found from this file.
func fixturesDir(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("shaketest: cannot locate the fixtures")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "testdata", "fixtures")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("shaketest: fixtures: %v", err)
	}
	return dir
}

// replay is the stand-in's main.
func replay(scenario string) int {
	capt, ok := captures[scenario]
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
	data, err := os.ReadFile(filepath.Join(os.Getenv(envFixtures), scenario+".stdout.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeshake:", err)
		return 2
	}
	second, err := time.ParseDuration(os.Getenv(envSecond))
	if err != nil {
		second = DefaultSecond
	}

	lines := strings.SplitAfter(string(data), "\n")
	var sigs chan os.Signal
	if bytes.Contains(data, []byte("Got signal:")) {
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
	return capt.code
}

// ansiRE matches the ANSI escape sequences of the console captures.
var ansiRE = regexp.MustCompile("\x1b\\[[0-9;:?<=>]*[ -/]*[@-~]")

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
