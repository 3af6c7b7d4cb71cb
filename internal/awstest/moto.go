// Package awstest runs AWS APIs locally for tests: moto's server (PyPI
// `moto[server]`) as a plain process on a loopback port, and an aws.Config
// that can only reach it (static dummy credentials, endpoint override), so a
// test never talks to AWS and needs no account.
package awstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

const (
	// MotoVersion is the moto release the tests are written against; make test
	// installs it.
	MotoVersion = "5.1.22"
	// PythonEnv names the interpreter that runs moto (default python3).
	PythonEnv = "KVMIGRATE_PYTHON"
	// Region is the region of the Config that tests use.
	Region = "us-east-1"

	startTries   = 3
	readyTimeout = 30 * time.Second
	stopTimeout  = 5 * time.Second
	logTailBytes = 16 << 10
)

// InstallHint is the command that installs the pinned moto.
var InstallHint = "python3 -m pip install 'moto[server]==" + MotoVersion + "'"

// StartMoto starts moto's server on a free port of 127.0.0.1, waits until it
// answers HTTP, and returns its URL ("http://127.0.0.1:PORT"). The server is stopped when the test ends; if
// the test failed, the end of its log is logged first. Every call starts a
// new, empty server: tests that share one isolate themselves (a table per
// test, say).
//
// When moto is not installed the test is skipped with the command that
// installs it, except when the CI environment variable is "true", where it
// fails: CI must never silently skip the tests of an AWS store.
func StartMoto(t testing.TB) string {
	t.Helper()
	python := pythonBin()
	version, err := motoVersion(python)
	if err != nil {
		msg := fmt.Sprintf("awstest: moto's server cannot run with %s (%v); install it: %s (or set %s to an interpreter that has it)",
			python, err, InstallHint, PythonEnv)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if version != MotoVersion {
		t.Logf("awstest: moto %s is installed; the tests are pinned to %s (%s)", version, MotoVersion, InstallHint)
	}

	m := &motoServer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("awstest: moto on %s, end of its log:\n%s", m.url, m.log.String())
		}
		m.stop()
	})
	for range startTries {
		if err = m.start(python); !errors.Is(err, errExited) {
			break
		}
	}
	if err != nil {
		t.Fatalf("awstest: start moto: %v\nend of its log:\n%s", err, m.log.String())
	}
	return m.url
}

// Config returns an aws.Config whose clients send every request to endpoint
// (BaseEndpoint) in Region, signed with static dummy credentials. It reads
// no environment, profile or metadata service, so nothing reaches AWS.
func Config(endpoint string) aws.Config {
	return aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIAIOSFODNN7EXAMPLE", "test-secret", ""),
		BaseEndpoint: aws.String(endpoint),
	}
}

func pythonBin() string {
	if p := os.Getenv(PythonEnv); p != "" {
		return p
	}
	return "python3"
}

var versions sync.Map // python binary -> versionResult

type versionResult struct {
	version string
	err     error
}

// motoVersion returns the version of moto that python imports, once per
// interpreter and test binary. It imports moto.server, which needs the
// [server] extra (flask, werkzeug...).
func motoVersion(python string) (string, error) {
	if v, ok := versions.Load(python); ok {
		r := v.(versionResult)
		return r.version, r.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", "import moto, moto.server; print(moto.__version__)")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	r := versionResult{version: strings.TrimSpace(string(out))}
	if err != nil {
		r.err = err
		last := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(last, '\n'); i >= 0 {
			last = last[i+1:]
		}
		if last != "" {
			r.err = fmt.Errorf("%w: %s", err, last)
		}
	}
	versions.Store(python, r)
	return r.version, r.err
}

// serverScript runs what `python3 -m moto.server -H HOST -p PORT` runs (the
// same app and werkzeug server, threaded) with one difference: requests are
// handled one at a time. moto's backends take no locks, so two concurrent
// UpdateItem ADDs on one item can lose an increment, and a transaction can
// interleave with other writes; DynamoDB makes each of them atomic, and the
// tests rely on that.
const serverScript = `
import os, sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

host, port = sys.argv[1], int(sys.argv[2])
os.environ.setdefault("MOTO_PORT", str(port))
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()

def serialized(environ, start_response):
    with lock:
        return list(app(environ, start_response))

run_simple(host, port, serialized, threaded=True)
`

// errExited: the server process ended before it was ready (a port taken
// between choosing it and binding it, most likely).
var errExited = errors.New("moto server exited before it was ready")

type motoServer struct {
	url  string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process is reaped
	log  TailBuffer
}

func (m *motoServer) start(python string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	m.url = "http://127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(python, "-c", serverScript, "127.0.0.1", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = &m.log, &m.log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start moto's server: %w", python, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	m.cmd, m.done = cmd, done

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			m.cmd = nil
			return fmt.Errorf("%w (%s)", errExited, cmd.ProcessState)
		default:
		}
		resp, err := client.Get(m.url + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.stop()
	return fmt.Errorf("moto on %s did not answer within %s", m.url, readyTimeout)
}

// stop kills the process group and waits for the process to be reaped.
func (m *motoServer) stop() {
	if m.cmd == nil {
		return
	}
	pid := m.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-m.done
	}
	m.cmd = nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// TailBuffer keeps the last 16 KiB written to it: the end of a child
// process's log for a failure message (moto logs every request). The zero
// value is ready; it is safe for concurrent use.
type TailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *TailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - logTailBytes; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *TailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
