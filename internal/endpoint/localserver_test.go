package endpoint

// A minimal stand-in for internal/kvtest, written while that harness was
// being written in parallel. TODO(lead): replace startLocalServer and
// startLocalCluster with kvtest.StartServer / kvtest.StartCluster.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// localEngine is a server kind installed by scripts/engines.sh.
type localEngine struct {
	Name   string // "redis-7.0", "valkey-8.1", ...
	Server string // path of <kind>-server
	CLI    string // path of <kind>-cli
}

var localEngineNames = []string{"redis-7.0", "valkey-8.0", "redis-8.0", "valkey-8.1"}

// localEngines returns the installed engines; with none installed the
// test is skipped (failed when CI=true).
func localEngines(t *testing.T) []localEngine {
	t.Helper()
	dir := os.Getenv("KVMIGRATE_ENGINES")
	if dir == "" {
		abs, err := filepath.Abs("../../.engines")
		if err != nil {
			t.Fatal(err)
		}
		dir = abs
	}
	var out []localEngine
	for _, name := range localEngineNames {
		kind, _, _ := strings.Cut(name, "-")
		e := localEngine{
			Name:   name,
			Server: filepath.Join(dir, name, "bin", kind+"-server"),
			CLI:    filepath.Join(dir, name, "bin", kind+"-cli"),
		}
		if _, err := os.Stat(e.Server); err == nil {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		msg := fmt.Sprintf("no Redis/Valkey engines under %s: run scripts/engines.sh (or make engines)", dir)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return out
}

// firstEngine returns the first installed engine (Redis 7.0 normally).
func firstEngine(t *testing.T) localEngine { return localEngines(t)[0] }

// localServer is one running redis-server/valkey-server.
type localServer struct {
	Engine   localEngine
	Port     int
	Password string
	TLS      bool
	Dir      string
}

func (s *localServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// cli runs the engine's CLI against s and returns its trimmed output.
func (s *localServer) cli(t *testing.T, args ...string) string {
	t.Helper()
	base := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.Port)}
	if s.Password != "" {
		base = append(base, "-a", s.Password, "--no-auth-warning")
	}
	out, err := exec.Command(s.Engine.CLI, append(base, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", s.Engine.CLI, args, err, out)
	}
	return strings.TrimSpace(string(out))
}

type serverConfig struct {
	password string
	tls      *tlsFiles // serve TLS only, on Port
	cluster  bool
	args     []string
}

type serverOption func(*serverConfig)

func withPassword(pw string) serverOption { return func(c *serverConfig) { c.password = pw } }
func withTLSOnly(f *tlsFiles) serverOption {
	return func(c *serverConfig) { c.tls = f }
}
func withArgs(args ...string) serverOption {
	return func(c *serverConfig) { c.args = append(c.args, args...) }
}
func withClusterEnabled() serverOption { return func(c *serverConfig) { c.cluster = true } }

// startLocalServer starts a server of engine e on a free port in a temp
// dir, waits until it answers, and stops it when the test ends.
func startLocalServer(t *testing.T, e localEngine, opts ...serverOption) *localServer {
	t.Helper()
	var cfg serverConfig
	for _, o := range opts {
		o(&cfg)
	}
	s := &localServer{Engine: e, Port: freePort(t), Password: cfg.password, TLS: cfg.tls != nil, Dir: t.TempDir()}
	args := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s.Dir, "--daemonize", "no"}
	if cfg.tls != nil {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(s.Port),
			"--tls-cert-file", cfg.tls.ServerCert, "--tls-key-file", cfg.tls.ServerKey,
			"--tls-ca-cert-file", cfg.tls.CA, "--tls-auth-clients", "optional")
	} else {
		args = append(args, "--port", strconv.Itoa(s.Port))
	}
	if cfg.password != "" {
		args = append(args, "--requirepass", cfg.password)
	}
	if cfg.cluster {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(s.Dir, "nodes.conf"),
			"--cluster-node-timeout", "5000")
		if cfg.password != "" {
			args = append(args, "--masterauth", cfg.password)
		}
	}
	args = append(args, cfg.args...)
	var out bytes.Buffer
	cmd := exec.Command(e.Server, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", e.Server, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for !s.ready() {
		select {
		case <-exited:
			t.Fatalf("%s exited:\n%s", e.Name, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s on %s not ready after 10s:\n%s", e.Name, s.Addr(), out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// ready reports whether s answers: PING in plain text, a TLS handshake
// for a TLS server.
func (s *localServer) ready() bool {
	if s.TLS {
		return speaksTLS(context.Background(), Endpoint{Host: "127.0.0.1", Port: s.Port})
	}
	return speaksPlainRESP(context.Background(), s.Addr())
}

// freePort returns a port that is free, and whose cluster bus port
// (port+10000) is free too.
func freePort(t *testing.T) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port > 55000 {
			continue
		}
		bus, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		if err != nil {
			continue
		}
		bus.Close()
		return port
	}
	t.Fatal("no free port pair found")
	return 0
}

// startLocalCluster starts 3 masters of engine e and joins them with
// `--cluster create ... --cluster-replicas 0`, waiting for cluster_state:ok.
func startLocalCluster(t *testing.T, e localEngine, password string) []*localServer {
	t.Helper()
	var nodes []*localServer
	args := []string{"--cluster", "create"}
	for range 3 {
		n := startLocalServer(t, e, withPassword(password), withClusterEnabled())
		nodes = append(nodes, n)
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if password != "" {
		args = append(args, "-a", password, "--no-auth-warning")
	}
	if out, err := exec.Command(e.CLI, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s --cluster create: %v\n%s", e.CLI, err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range nodes {
		for !strings.Contains(n.cli(t, "cluster", "info"), "cluster_state:ok") {
			if time.Now().After(deadline) {
				t.Fatalf("cluster on %s not ok after 30s", n.Addr())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes
}
