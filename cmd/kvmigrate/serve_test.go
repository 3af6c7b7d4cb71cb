package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
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

func TestServeRunsMigrationsOverHTTP(t *testing.T) {
	ctx := context.Background()
	const password = "srv-tgt-Pw9"
	const secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:kvmigrate/target-AbCdEf"
	src := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"))
	dst := kvtest.StartServer(t, kvtest.Require(t, "valkey-8.0"), kvtest.WithPassword(password))
	n, err := sample.Seed(ctx, src.Client(t), sample.Options{PerType: 5})
	require.NoError(t, err)

	c := newCLI(t)
	secrets := filepath.Join(t.TempDir(), "secrets.json")
	require.NoError(t, os.WriteFile(secrets, []byte(`{"`+secret+`": {"username": "default", "password": "`+password+`"}}`), 0o600))
	cmd, _, _ := c.command("serve", "--addr", "127.0.0.1:0", "--secrets", secrets)
	errOut := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = nil, errOut
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, errOut.String())
	m := regexp.MustCompile(`on (http://\S+) `).FindStringSubmatch(line)
	require.NotNil(t, m, line)
	base := m[1]

	body, _ := json.Marshal(map[string]any{
		"source": map[string]any{"url": "redis://" + src.Addr()},
		"target": map[string]any{"url": "valkey://default@" + dst.Addr(), "secretArn": secret},
		"mode":   "command",
	})
	resp, err := http.Post(base+"/migrations", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	var v struct {
		ID       string       `json:"id"`
		Status   job.Status   `json:"status"`
		Error    string       `json:"error"`
		Counters job.Counters `json:"counters"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/migrations/" + v.ID)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&v) == nil && v.Status.Terminal()
	}, 60*time.Second, 50*time.Millisecond)
	assert.Equal(t, job.StatusSucceeded, v.Status, v.Error)
	assert.EqualValues(t, n, v.Counters.Copied)

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	require.NoError(t, cmd.Wait(), "Ctrl-C shuts the server down cleanly: %s", errOut.String())
	assert.NotContains(t, errOut.String(), password)

	out, _, code := c.run("jobs")
	require.Equal(t, 0, code)
	assert.Contains(t, out, v.ID, "the job is in the local job store")
}

func TestServeRefusesABadSecretsFile(t *testing.T) {
	c := newCLI(t)
	bad := filepath.Join(t.TempDir(), "secrets.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"arn": "hunter22"}`), 0o600))
	_, errOut, code := c.run("serve", "--secrets", bad)
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "--secrets")
	assert.NotContains(t, errOut, "hunter22")
}

// syncBuffer is a bytes.Buffer that a child's output can be copied into
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
