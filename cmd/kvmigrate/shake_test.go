package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/shake"
	"github.com/kvmigrate/kvmigrate/internal/shake/shaketest"
)

// The redis-shake mode tests run kvmigrate with $REDIS_SHAKE_PATH pointing
// at shaketest's stand-in, which only replays real redis-shake logs and
// copies NO DATA. They check the job's stages, progress, exit codes and the
// cutover flow against real (empty) servers, never copied data.
func TestMain(m *testing.M) { shaketest.Main(m) }

// shakeCLI is a CLI whose redis-shake is the stand-in replaying capture.
func shakeCLI(t *testing.T, capture string) *cli {
	c := newCLI(t)
	c.env = []string{shake.PathEnv + "=" + shaketest.Binary(t, capture)}
	return c
}

// started runs kvmigrate in the background.
type started struct {
	cmd         *exec.Cmd
	out, errOut *syncBuffer
	done        chan struct{}
	err         error
}

func (c *cli) start(args ...string) *started {
	c.t.Helper()
	cmd, _, _ := c.command(args...)
	s := &started{cmd: cmd, out: &syncBuffer{}, errOut: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.out, s.errOut
	require.NoError(c.t, cmd.Start())
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	c.t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

// waitFor waits until stderr contains what, and returns the job id the
// run printed.
func (s *started) waitFor(t *testing.T, what string) string {
	t.Helper()
	re := regexp.MustCompile(`job ([0-9a-z]{26}): redis-shake`)
	require.Eventually(t, func() bool { return strings.Contains(s.errOut.String(), what) }, 30*time.Second, 10*time.Millisecond,
		"waiting for %q; stderr:\n%s", what, s.errOut.String())
	m := re.FindStringSubmatch(s.errOut.String())
	require.NotNil(t, m, "the job id in stderr:\n%s", s.errOut.String())
	return m[1]
}

func (s *started) exit(t *testing.T) int {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("kvmigrate did not end; stderr:\n%s", s.errOut.String())
	}
	if ee, ok := s.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	require.NoError(t, s.err)
	return 0
}

func shakeJob(t *testing.T, c *cli, id string) job.Job {
	t.Helper()
	out, errOut, code := c.run("jobs", id, "--json")
	require.Equal(t, 0, code, errOut)
	var r struct {
		Job job.Job `json:"job"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	return r.Job
}

func TestShakeScanMigrateAndRun(t *testing.T) {
	e := kvtest.Require(t, "redis-7.0")
	src, dst := kvtest.StartServer(t, e), kvtest.StartServer(t, e)
	c := shakeCLI(t, "scan-full")

	out, errOut, code := c.run("migrate", "--mode", "redis_shake", "--source", src.URL(), "--target", dst.URL(), "--json")
	require.Equal(t, 0, code, errOut)
	var r result
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	assert.Equal(t, job.StatusSucceeded, r.Job.Status)
	assert.Equal(t, job.ModeRedisShake, r.Job.Mode)
	assert.Equal(t, "copied", r.Job.Stage)
	assert.Equal(t, int64(958214), r.Job.Progress.Keys, "the last progress is in the job record")

	out, errOut, code = c.run("run", "--mode", "redis_shake", "--source", src.URL(), "--target", dst.URL())
	require.Equal(t, 0, code, "%s\n%s", out, errOut)
	assert.Contains(t, out, "succeeded")
	assert.Contains(t, out, "redis-shake (redis_shake): stage validated, 958214 entries written")
	assert.Contains(t, errOut, "redis-shake: initial_sync (scanning)", "the stage is shown")
	assert.Regexp(t, `\d+% scanned · \d+ keys · \d+ ops/s`, errOut, "keys and ops/s are shown")
}

func TestShakeSyncCutoverFromASecondProcess(t *testing.T) {
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"))
	c := shakeCLI(t, "sync-rdb-aof")

	run := c.start("run", "--mode", "redis_shake_sync", "--source", src.URL(), "--target", dst.URL())
	id := run.waitFor(t, "ready for cutover")
	errText := run.errOut.String()
	assert.Contains(t, errText, "initial_sync (syncing_rdb) · RDB ", "the RDB bytes of the initial sync are shown")
	assert.Contains(t, errText, "replicating · ")
	assert.Contains(t, errText, "diff 0 B")

	_, errOut, code := c.run("cutover", "01jzzzzzzzzzzzzzzzzzzzzzzz")
	assert.Equal(t, exitFailed, code)
	assert.Contains(t, errOut, "not found", "the running process answers for the job it does not know")

	out, errOut, code := c.run("cutover", id)
	require.Equal(t, 0, code, "%s\n%s", out, errOut)
	assert.Contains(t, out, "cutover requested")
	assert.Contains(t, out, "job "+id+": succeeded (validated)")

	require.Equal(t, 0, run.exit(t), "stdout:\n%s\nstderr:\n%s", run.out.String(), run.errOut.String())
	assert.Contains(t, run.out.String(), "stage validated")
	j := shakeJob(t, c, id)
	assert.Equal(t, job.StatusSucceeded, j.Status)
	assert.Equal(t, "validated", j.Stage)
	assert.Equal(t, job.ModeRedisShakeSync, j.Mode)
	assert.Empty(t, j.Request)
	assert.Equal(t, int64(30<<20), j.Progress.RDBBytesTotal)

	_, errOut, code = c.run("cutover", id)
	assert.Equal(t, exitFailed, code)
	assert.Contains(t, errOut, "no kvmigrate process runs it")
}

func TestShakeSyncCtrlC(t *testing.T) {
	e := kvtest.Require(t, "valkey-8.0")
	src, dst := kvtest.StartServer(t, e), kvtest.StartServer(t, e)

	t.Run("with --cutover-on-signal cuts over and validates", func(t *testing.T) {
		c := shakeCLI(t, "sync-rdb-aof")
		run := c.start("run", "--mode", "redis_shake_sync", "--cutover-on-signal", "--source", src.URL(), "--target", dst.URL())
		id := run.waitFor(t, "ready for cutover")
		require.NoError(t, run.cmd.Process.Signal(syscall.SIGINT))
		require.Equal(t, 0, run.exit(t), "stderr:\n%s", run.errOut.String())
		assert.Contains(t, run.errOut.String(), "cutting over job "+id)
		j := shakeJob(t, c, id)
		assert.Equal(t, job.StatusSucceeded, j.Status)
		assert.Equal(t, "validated", j.Stage)
	})
	t.Run("without a terminal aborts without validating", func(t *testing.T) {
		c := shakeCLI(t, "sync-rdb-aof")
		run := c.start("migrate", "--mode", "redis_shake_sync", "--source", src.URL(), "--target", dst.URL())
		id := run.waitFor(t, "replicating")
		require.NoError(t, run.cmd.Process.Signal(syscall.SIGINT))
		assert.Equal(t, exitInterrupted, run.exit(t), "stderr:\n%s", run.errOut.String())
		assert.Contains(t, run.errOut.String(), "aborting job "+id)
		j := shakeJob(t, c, id)
		assert.Equal(t, job.StatusCancelled, j.Status)
		assert.Contains(t, j.Error, "without a cutover")
	})
}

func TestShakeModeRefusedBeforeAnythingStarts(t *testing.T) {
	if _, err := os.Stat(shake.SystemPath); err == nil {
		t.Skip(shake.SystemPath + " exists on this machine: the lookup would find it")
	}
	c := newCLI(t)
	c.env = []string{shake.PathEnv + "=", "HOME=" + t.TempDir()}
	_, errOut, code := c.run("migrate", "--mode", "redis_shake_sync", "--source", "redis://127.0.0.1:1", "--target", "redis://127.0.0.1:2")
	assert.Equal(t, exitUsage, code)
	for _, place := range []string{"$REDIS_SHAKE_PATH", shake.SystemPath, ".kvmigrate/bin/redis-shake"} {
		assert.Contains(t, errOut, place, "the error names where redis-shake is looked for")
	}
	out, _, code := c.run("jobs", "--json")
	require.Equal(t, 0, code)
	assert.JSONEq(t, "[]", out, "no job was created")

	c = shakeCLI(t, "scan-full")
	cases := []struct {
		args     []string
		contains string
	}{
		{[]string{"--mode", "redis_shake", "--type", "hash"}, "type"},
		{[]string{"--mode", "rsync"}, "--mode"},
		{[]string{"--mode", "redis_shake", "--cutover-on-signal"}, "--cutover-on-signal"},
		{[]string{"--cutover-on-signal"}, "--cutover-on-signal"},
	}
	for _, tc := range cases {
		args := append([]string{"migrate", "--source", "redis://127.0.0.1:1", "--target", "redis://127.0.0.1:2"}, tc.args...)
		_, errOut, code := c.run(args...)
		assert.Equal(t, exitUsage, code, "%v: %s", tc.args, errOut)
		assert.Contains(t, errOut, tc.contains, "%v", tc.args)
	}
}
