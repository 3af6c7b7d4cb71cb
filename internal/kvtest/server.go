package kvtest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
)

const (
	readyTimeout = 10 * time.Second
	stopTimeout  = 10 * time.Second
	startTries   = 5
	logTailLines = 30

	configFile = "server.conf"
	logFile    = "server.log"
	stdioFile  = "stdio.log" // the server's stdout and stderr: loader and config errors land here
	aclFile    = "users.acl"
)

// errAddrInUse reports that the server could not bind its port (or its
// cluster bus port) because another process holds it.
var errAddrInUse = errors.New("address already in use")

type config struct {
	password  string
	acl       []string
	databases int
	extra     [][2]string
	cluster   bool
	tls       *TLSOptions
}

// Option changes how a server is configured.
type Option func(*config)

// WithPassword protects the default user with a password (requirepass, or
// the default user's line in the ACL file when [WithACL] is also given).
// Clients made by [Server.Client] and [Cluster.Client] authenticate with it,
// and URLs carry it.
func WithPassword(password string) Option {
	return func(c *config) { c.password = password }
}

// WithACL writes an ACL file (aclfile) with the given user lines, in the ACL
// file syntax, e.g. "user alice on >pw ~* +@all -eval". The servers ignore
// requirepass when an ACL file is used and would leave the default user
// without a password, so unless a line defines "user default", kvtest adds
// one: "user default on nopass ~* &* +@all", or ">password" instead of
// nopass with [WithPassword].
func WithACL(lines ...string) Option {
	return func(c *config) { c.acl = append(c.acl, lines...) }
}

// WithConfig adds the directive "key value" to the server's configuration
// file, after kvtest's own directives, so that it overrides them. The value is
// written verbatim: quote it in the configuration file syntax if needed.
func WithConfig(key, value string) Option {
	return func(c *config) { c.extra = append(c.extra, [2]string{key, value}) }
}

// WithDatabases sets the number of logical databases (databases).
func WithDatabases(n int) Option {
	return func(c *config) { c.databases = n }
}

func withCluster() Option {
	return func(c *config) { c.cluster = true }
}

// Server is a redis-server or valkey-server process started by
// [StartServer]. Its methods may be called from several goroutines.
type Server struct {
	// Engine is the engine the server runs.
	Engine Engine
	// Host is the address the server listens on, always "127.0.0.1".
	Host string
	// Port is the server's TCP port (its TLS port with [WithTLS]); it does
	// not change on [Server.Restart].
	Port int
	// PlainPort is the plain-text port of a server that serves TLS on Port
	// and plain text too ([TLSOptions].Plain); 0 otherwise.
	PlainPort int
	// Dir is the server's working directory (a t.TempDir): it holds the
	// configuration file server.conf, the log server.log, the server's
	// stdout and stderr in stdio.log, and dump and cluster files.
	Dir string
	// Password is the default user's password, "" for none.
	Password string
	// TLS holds the certificate files of a server started [WithTLS]; nil
	// for a plain-text server.
	TLS *TLSFiles
	// ClientAuth is true when the server requires client certificates
	// (tls-auth-clients yes).
	ClientAuth bool

	clientTLS *tls.Config // trusts the CA, presents the client certificate; nil without TLS

	mu   sync.Mutex // serializes start, stop and kill
	proc *process   // the running process, nil when stopped
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
}

// StartServer starts a server of engine e on a free port of 127.0.0.1, in a
// new temporary directory, with persistence off (save "", appendonly no),
// and waits until it answers PING (over TLS with [WithTLS]). The test fails
// if it does not start within 10 seconds; the message includes the end of
// the server's log. The server is stopped when the test and its subtests
// end; if the test failed, the end of its log is logged first.
func StartServer(t testing.TB, e Engine, opts ...Option) *Server {
	t.Helper()
	var cfg config
	for _, opt := range opts {
		opt(&cfg)
	}
	s := &Server{Engine: e, Host: "127.0.0.1", Dir: t.TempDir(), Password: cfg.password}
	if cfg.tls != nil {
		s.TLS, s.ClientAuth = cfg.tls.Files, cfg.tls.ClientAuth
		if s.TLS == nil {
			s.TLS = NewTLSFiles(t, s.Dir)
		}
		var err error
		if s.clientTLS, err = s.TLS.ClientConfig(); err != nil {
			t.Fatalf("kvtest: TLS client configuration for %s: %v", e.Name, err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kvtest: %s on %s, end of its log:\n%s", e.Name, s.Addr(), s.logTail())
		}
		s.Stop()
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for range startTries {
		if s.Port, err = freePort(s.Host); err != nil {
			break
		}
		if cfg.tls != nil && cfg.tls.Plain {
			if s.PlainPort, err = freePort(s.Host); err != nil {
				break
			}
		}
		if err = s.writeConfig(cfg); err != nil {
			break
		}
		if err = s.launch(); !errors.Is(err, errAddrInUse) {
			break
		}
	}
	if errors.Is(err, errNoTLS) {
		unavailable(t, fmt.Sprintf("kvtest: %s cannot serve TLS: %v (%s); TLS tests need a server built with TLS (BUILD_TLS=yes)\nend of its log:\n%s",
			e.Name, err, e.ServerBin, s.logTail()))
	}
	if err != nil {
		t.Fatalf("kvtest: start %s in %s: %v\nend of its log:\n%s", e.Name, s.Dir, err, s.logTail())
	}
	return s
}

// Addr returns "host:port".
func (s *Server) Addr() string {
	return net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
}

// URL returns the server's URL with the engine's scheme, redis:// or
// valkey://, and the default user's password if there is one:
// "redis://:pw@127.0.0.1:port". For a server started [WithTLS] it is the
// TLS URL the endpoint package accepts: rediss:// or valkeys:// with
// tls_ca, and tls_cert and tls_key when the server requires client
// certificates: "rediss://:pw@127.0.0.1:port?tls_ca=/dir/ca.pem".
func (s *Server) URL() string {
	return s.urlWith()
}

// PlainAddr returns "host:port" of the plain-text port: [Server.Addr] for a
// plain-text server, the address of [Server.PlainPort] for a server that
// serves TLS and plain text, "" for a server that serves TLS only.
func (s *Server) PlainAddr() string {
	switch {
	case s.TLS == nil:
		return s.Addr()
	case s.PlainPort == 0:
		return ""
	}
	return net.JoinHostPort(s.Host, strconv.Itoa(s.PlainPort))
}

// PlainURL is [Server.URL] for [Server.PlainAddr]: a redis:// or valkey://
// URL without TLS options; "" for a server that serves TLS only.
func (s *Server) PlainURL() string {
	addr := s.PlainAddr()
	if addr == "" {
		return ""
	}
	return s.userURL(s.Engine.Kind, addr).String()
}

// urlWith returns URL with the query options first before the TLS ones.
func (s *Server) urlWith(query ...string) string {
	scheme := s.Engine.Kind
	if s.TLS != nil {
		scheme += "s"
		query = append(query[:len(query):len(query)], s.TLS.urlQuery(s.ClientAuth)...)
	}
	u := s.userURL(scheme, s.Addr())
	u.RawQuery = strings.Join(query, "&")
	return u.String()
}

func (s *Server) userURL(scheme, addr string) *url.URL {
	u := &url.URL{Scheme: scheme, Host: addr}
	if s.Password != "" {
		u.User = url.UserPassword("", s.Password)
	}
	return u
}

// TLSConfig returns the TLS client configuration kvtest's clients use:
// it trusts the server's CA and presents the client certificate. nil for a
// plain-text server. Do not modify it.
func (s *Server) TLSConfig() *tls.Config {
	return s.clientTLS
}

// Client returns a single-connection valkey-go client to the server (no
// client-side cache), authenticated as the default user when the server has
// a password. It is closed when the test ends.
func (s *Server) Client(t testing.TB) valkey.Client {
	t.Helper()
	return s.ClientAs(t, "", s.Password)
}

// ClientAs is [Server.Client] authenticated as the given ACL user; an empty
// user means the default user.
func (s *Server) ClientAs(t testing.TB, user, password string) valkey.Client {
	t.Helper()
	c, err := s.newClient(user, password)
	if err != nil {
		t.Fatalf("kvtest: connect to %s %s: %v", s.Engine.Name, s.Addr(), err)
	}
	t.Cleanup(c.Close)
	return c
}

func (s *Server) newClient(user, password string) (valkey.Client, error) {
	return valkey.NewClient(valkey.ClientOption{
		InitAddress:       []string{s.Addr()},
		Username:          user,
		Password:          password,
		ForceSingleClient: true,
		DisableCache:      true,
		TLSConfig:         s.clientTLS,
	})
}

// Stop shuts the server down gracefully (SIGTERM, which does not save since
// saving is off) and waits for it to exit, killing it after 10 seconds. It
// does nothing if the server is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop(syscall.SIGTERM)
}

// Kill kills the server (SIGKILL, as in a crash) and waits for it to exit. It
// does nothing if the server is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop(syscall.SIGKILL)
}

// Restart starts the server again on the same port, in the same directory and
// with the same configuration, after stopping it gracefully if it is still
// running. As saving is off, a standalone server comes back empty (unless a
// test saved explicitly); a cluster node keeps its identity and slots from
// its cluster configuration file. The test fails if the server does not
// start.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop(syscall.SIGTERM)
	// The port is ours, but another process may have grabbed it (or the
	// bus port) meanwhile as an ephemeral port: wait for it a little.
	var err error
	for range startTries * 4 {
		if err = s.launch(); !errors.Is(err, errAddrInUse) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("kvtest: restart %s on %s: %v\nend of its log:\n%s", s.Engine.Name, s.Addr(), err, s.logTail())
	}
}

// Running reports whether the server process is running (it may not be ready
// yet, or shutting down).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return false
	}
	select {
	case <-s.proc.done:
		return false
	default:
		return true
	}
}

// stop signals the process group and waits for the process to be reaped,
// escalating to SIGKILL after stopTimeout. s.mu must be held.
func (s *Server) stop(sig syscall.Signal) {
	p := s.proc
	if p == nil {
		return
	}
	s.proc = nil
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, sig)
	select {
	case <-p.done:
		return
	case <-time.After(stopTimeout):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-p.done
}

func (s *Server) writeConfig(cfg config) error {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("# written by kvtest")
	line("bind %s", s.Host)
	if cfg.tls == nil {
		line("port %d", s.Port)
	} else {
		line("port %d", s.PlainPort) // 0: no plain-text port
		line("tls-port %d", s.Port)
		line("tls-cert-file %s", quote(s.TLS.ServerCert))
		line("tls-key-file %s", quote(s.TLS.ServerKey))
		line("tls-ca-cert-file %s", quote(s.TLS.CA))
		line("tls-auth-clients %s", yesNo(s.ClientAuth))
		line("tls-replication yes")
		if cfg.cluster {
			line("tls-cluster yes")
		}
	}
	line("daemonize no")
	line("dir %s", quote(s.Dir))
	line("logfile %s", quote(filepath.Join(s.Dir, logFile)))
	line(`save ""`)
	line("appendonly no")
	if cfg.databases > 0 {
		line("databases %d", cfg.databases)
	}
	switch {
	case len(cfg.acl) > 0:
		if err := s.writeACL(cfg); err != nil {
			return err
		}
		line("aclfile %s", quote(filepath.Join(s.Dir, aclFile)))
	case cfg.password != "":
		line("requirepass %s", quote(cfg.password))
	}
	if cfg.cluster {
		line("cluster-enabled yes")
		line("cluster-config-file nodes.conf")
		line("cluster-node-timeout 5000")
		if cfg.password != "" {
			line("masterauth %s", quote(cfg.password))
		}
	}
	for _, kv := range cfg.extra {
		line("%s %s", kv[0], kv[1])
	}
	return os.WriteFile(filepath.Join(s.Dir, configFile), []byte(b.String()), 0o600)
}

func (s *Server) writeACL(cfg config) error {
	lines := cfg.acl
	hasDefault := false
	for _, l := range lines {
		f := strings.Fields(l)
		hasDefault = hasDefault || len(f) >= 2 && f[0] == "user" && f[1] == "default"
	}
	if !hasDefault {
		pass := "nopass"
		if cfg.password != "" {
			pass = ">" + cfg.password
		}
		lines = append([]string{"user default on " + pass + " ~* &* +@all"}, lines...)
	}
	return os.WriteFile(filepath.Join(s.Dir, aclFile), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// quote quotes v for a redis.conf line.
func quote(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// launch starts the server process with the configuration in s.Dir and waits
// until it is ready. On failure the process is gone. s.mu must be held.
func (s *Server) launch() error {
	logPath := filepath.Join(s.Dir, logFile)
	stdioPath := filepath.Join(s.Dir, stdioFile)
	// Only what this run writes counts: the files survive restarts.
	logStart, stdioStart := fileSize(logPath), fileSize(stdioPath)
	stdio, err := os.OpenFile(stdioPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer stdio.Close()
	cmd := exec.Command(s.Engine.ServerBin, filepath.Join(s.Dir, configFile))
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = stdio, stdio
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	s.proc = p
	if err := s.waitReady(p, logStart, stdioStart); err != nil {
		s.stop(syscall.SIGKILL)
		return err
	}
	return nil
}

// waitReady waits until this run of the server has logged that it accepts
// connections (so that another server that holds the port is not mistaken
// for it) and answers PING, the process exits, or readyTimeout passes.
func (s *Server) waitReady(p *process, logStart, stdioStart int64) error {
	logPath := filepath.Join(s.Dir, logFile)
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		logged := readFrom(logPath, logStart)
		select {
		case <-p.done:
			logged = readFrom(logPath, logStart)
			stdio := readFrom(filepath.Join(s.Dir, stdioFile), stdioStart)
			if bytes.Contains(logged, []byte("Address already in use")) || bytes.Contains(stdio, []byte("Address already in use")) {
				if s.PlainPort != 0 {
					return fmt.Errorf("port %d, %d or %d: %w", s.Port, s.PlainPort, s.Port+clusterBusSkew, errAddrInUse)
				}
				return fmt.Errorf("port %d or %d: %w", s.Port, s.Port+clusterBusSkew, errAddrInUse)
			}
			if s.TLS != nil && (noTLSSupport(logged) || noTLSSupport(stdio)) {
				return errNoTLS
			}
			return fmt.Errorf("server exited before it was ready: %v", p.cmd.ProcessState)
		default:
		}
		var pingErr error
		if bytes.Contains(logged, []byte("Ready to accept connections")) {
			if pingErr = s.ping(); pingErr == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if pingErr != nil {
				return fmt.Errorf("server not ready after %v (no PONG on %s: %w)", readyTimeout, s.Addr(), pingErr)
			}
			return fmt.Errorf("server not ready after %v (no PONG on %s)", readyTimeout, s.Addr())
		}
		<-tick.C
	}
}

// ping pings the server on Port, over TLS if it serves TLS, and on its
// plain-text port too if it serves both.
func (s *Server) ping() error {
	if s.clientTLS == nil {
		return ping(s.Addr())
	}
	if err := pingTLS(s.Addr(), s.clientTLS); err != nil {
		return fmt.Errorf("over TLS: %w", err)
	}
	if s.PlainPort != 0 {
		return ping(s.PlainAddr())
	}
	return nil
}

// ping sends PING on a new connection and accepts PONG, or NOAUTH from a
// server that requires a password: either way it is serving commands.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	return pingReply(reply)
}

func pingReply(reply string) error {
	if strings.HasPrefix(reply, "+PONG") || strings.HasPrefix(reply, "-NOAUTH") {
		return nil
	}
	return fmt.Errorf("PING: %s", strings.TrimSpace(reply))
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func readFrom(path string, offset int64) []byte {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return nil
	}
	return b[offset:]
}

// logTail returns the last lines of the server's log and its stdout/stderr.
func (s *Server) logTail() string {
	var b strings.Builder
	for _, name := range []string{logFile, stdioFile} {
		data := bytes.TrimRight(readFrom(filepath.Join(s.Dir, name), 0), "\n")
		if len(data) == 0 {
			continue
		}
		lines := strings.Split(string(data), "\n")
		if len(lines) > logTailLines {
			lines = lines[len(lines)-logTailLines:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", name, strings.Join(lines, "\n"))
	}
	if b.Len() == 0 {
		return "(empty)"
	}
	return b.String()
}
