package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/kvtest"
	"github.com/kvmigrate/kvmigrate/internal/sample"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds kvmigrate once per test run.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kvmigrate-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "kvmigrate")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = &buildError{out: string(out), err: err}
		}
	})
	require.NoError(t, binErr)
	return binPath
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// cli runs kvmigrate with a private job store and returns stdout, stderr
// and the exit code.
type cli struct {
	t    *testing.T
	home string
	env  []string
}

func newCLI(t *testing.T) *cli {
	return &cli{t: t, home: t.TempDir()}
}

func (c *cli) command(args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	cmd := exec.Command(binary(c.t), args...)
	cmd.Env = append(os.Environ(), "KVMIGRATE_HOME="+c.home)
	cmd.Env = append(cmd.Env, c.env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	return cmd, &out, &errOut
}

func (c *cli) run(args ...string) (string, string, int) {
	c.t.Helper()
	cmd, out, errOut := c.command(args...)
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(c.t, err)
	}
	return out.String(), errOut.String(), code
}

type result struct {
	Job    job.Job     `json:"job"`
	Shards []job.Shard `json:"shards"`
	Error  string      `json:"error"`
}

func TestMigrateCopiesAndPrintsJSON(t *testing.T) {
	ctx := context.Background()
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-8.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.1"))
	n, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 10})
	require.NoError(t, err)
	started := time.Now()
	before := kvtest.Snapshot(ctx, t, src.Client(t))

	c := newCLI(t)
	out, errOut, code := c.run("migrate", "--source", src.URL(), "--target", dst.URL(), "--json")
	require.Equal(t, 0, code, errOut)
	var r result
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	assert.Equal(t, job.StatusSucceeded, r.Job.Status)
	assert.EqualValues(t, n, r.Job.Counters.Copied)
	kvtest.AssertSameData(t, before, kvtest.Snapshot(ctx, t, dst.Client(t)), time.Since(started))

	out, _, code = c.run("jobs")
	require.Equal(t, 0, code)
	assert.Contains(t, out, r.Job.ID)
	assert.Contains(t, out, "succeeded")
}

func TestBadInputGetsAClearErrorAndNoPasswordIsShown(t *testing.T) {
	const secret = "s3cr3t-Pa55"
	srv := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"), kvtest.WithPassword(secret))
	good := srv.URL()
	port := strings.TrimPrefix(srv.Addr(), "127.0.0.1:")
	cases := []struct {
		name     string
		args     []string
		env      []string
		code     int
		contains string
	}{
		{"a malformed URL names the problem", []string{"migrate", "--source", "redis//nohost", "--target", good}, nil, exitUsage, "--source"},
		{"an unknown scheme lists the accepted ones", []string{"migrate", "--source", "http://127.0.0.1:1", "--target", good}, nil, exitUsage, "rediss"},
		{"a bad port is named", []string{"migrate", "--source", "redis://127.0.0.1:99999", "--target", good}, nil, exitUsage, "99999"},
		{"a missing source says which flag", []string{"migrate", "--target", good}, nil, exitUsage, "--source is required"},
		{"an unknown strategy is refused before connecting", []string{"migrate", "--source", good, "--target", good, "--strategy", "fast"}, nil, exitUsage, "strategy"},
		{"a wrong password says authentication failed", []string{"migrate", "--source", "redis://:wrong-" + secret + "@127.0.0.1:" + port, "--target", good}, nil, exitFailed, "authentication"},
		{"a password from the environment is used and not shown", []string{"migrate", "--source", "redis://127.0.0.1:" + port, "--target", "redis://127.0.0.1:" + port + "/1"},
			[]string{"KVMIGRATE_SOURCE_PASSWORD=wrong-" + secret, "KVMIGRATE_TARGET_PASSWORD=" + secret}, exitFailed, "authentication"},
		{"an unreachable host says so", []string{"migrate", "--source", "redis://127.0.0.1:1", "--target", good}, nil, exitFailed, "127.0.0.1:1"},
		{"TLS to a plain server suggests the right scheme", []string{"migrate", "--source", "rediss://:" + secret + "@127.0.0.1:" + port, "--target", good}, nil, exitFailed, "TLS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCLI(t)
			c.env = tc.env
			out, errOut, code := c.run(tc.args...)
			assert.Equal(t, tc.code, code, "stdout: %s\nstderr: %s", out, errOut)
			assert.Contains(t, errOut, tc.contains)
			assert.NotContains(t, out+errOut, secret, "the password leaked")
			// Nothing in the job store holds the password either.
			for _, f := range storeFiles(t, c.home) {
				b, err := os.ReadFile(f)
				require.NoError(t, err)
				assert.NotContains(t, string(b), secret, "password stored in %s", f)
			}
		})
	}
}

func storeFiles(t *testing.T, dir string) []string {
	var files []string
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	return files
}

func TestCrashAndCtrlCThenResumeLoseNothing(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT} {
		t.Run("after "+sig.String(), func(t *testing.T) {
			ctx := context.Background()
			const secret = "pw-crash"
			src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"), kvtest.WithPassword(secret))
			dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"), kvtest.WithPassword(secret))
			_, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 500, Big: true, BigScale: 4})
			require.NoError(t, err)
			started := time.Now()
			before := kvtest.Snapshot(ctx, t, src.Client(t))

			c := newCLI(t)
			c.env = []string{"KVMIGRATE_SOURCE_PASSWORD=" + secret, "KVMIGRATE_TARGET_PASSWORD=" + secret}
			bare := func(url string) string { return strings.Replace(url, ":"+secret+"@", "", 1) }
			cmd, _, errOut := c.command("migrate", "--source", bare(src.URL()), "--target", bare(dst.URL()),
				"--strategy", "commands", "--chunk-keys", "200", "--parallel", "1", "--max-ops", "60000")
			require.NoError(t, cmd.Start())
			// Wait until the first checkpoint is visible on the target.
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				n, _ := dst.Client(t).Do(ctx, dst.Client(t).B().Dbsize().Build()).AsInt64()
				if n > 600 {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			require.NoError(t, cmd.Process.Signal(sig))
			err = cmd.Wait()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "kvmigrate must not finish before the signal; stderr: %s", errOut)
			if sig == syscall.SIGINT {
				assert.Equal(t, exitInterrupted, ee.ExitCode(), errOut.String())
			}
			n, err := dst.Client(t).Do(ctx, dst.Client(t).B().Dbsize().Build()).AsInt64()
			require.NoError(t, err)
			require.Less(t, n, int64(len(before)), "the copy was interrupted")

			out, _, code := c.run("jobs", "--json")
			require.Equal(t, 0, code)
			var jobs []job.Job
			require.NoError(t, json.Unmarshal([]byte(out), &jobs))
			require.Len(t, jobs, 1)
			id := jobs[0].ID
			if sig == syscall.SIGINT {
				assert.Equal(t, job.StatusPaused, jobs[0].Status)
			} else {
				assert.Equal(t, job.StatusRunning, jobs[0].Status, "a killed process leaves its job running")
			}

			out, errText, code := c.run("resume", id, "--json")
			require.Equal(t, 0, code, "%s\n%s", out, errText)
			var r result
			require.NoError(t, json.Unmarshal([]byte(out), &r))
			assert.Equal(t, job.StatusSucceeded, r.Job.Status)
			kvtest.AssertSameData(t, before, kvtest.Snapshot(ctx, t, dst.Client(t)), time.Since(started))
			assert.NotContains(t, out+errText, secret)
			assert.Regexp(t, regexp.MustCompile(`^[0-9a-z]{26}$`), id)
		})
	}
}
