package kvtest

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"
)

// TestMain runs more parallel subtests than the default (GOMAXPROCS) unless
// -test.parallel is given: a new cluster spends its first 2 seconds waiting
// (servers keep cluster_state:fail for 2s after they start, and the CLI
// polls once a second), not computing. It fails the run if any server
// outlives the tests.
func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", strconv.Itoa(max(runtime.GOMAXPROCS(0), 8)))
	}
	code := m.Run()
	if kids := childProcesses(); len(kids) > 0 {
		fmt.Fprintf(os.Stderr, "kvtest: processes still running after the tests: %s\n", strings.Join(kids, "; "))
		code = 1
	}
	os.Exit(code)
}

// childProcesses lists "pid name" of this process's children (Linux only).
func childProcesses() []string {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var kids []string
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(b)
		end := strings.LastIndexByte(s, ')')
		if end < 0 {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		kids = append(kids, s[:end+1])
	}
	return kids
}

func TestStandalone(t *testing.T) {
	for _, e := range AllEngines() {
		t.Run(e.Name+" serves SET and GET and reports its engine and version", func(t *testing.T) {
			t.Parallel()
			e := Require(t, e.Name)
			srv := StartServer(t, e)
			c := srv.Client(t)
			ctx := context.Background()

			require.NoError(t, c.Do(ctx, c.B().Set().Key("greeting").Value("hello "+e.Name).Build()).Error())
			got, err := c.Do(ctx, c.B().Get().Key("greeting").Build()).ToString()
			require.NoError(t, err)
			assert.Equal(t, "hello "+e.Name, got)

			info := infoServer(t, c)
			switch e.Kind {
			case "valkey":
				assert.Equal(t, "valkey", info["server_name"])
				assert.True(t, strings.HasPrefix(info["valkey_version"], e.Version+"."),
					"valkey_version %q, want %s.x", info["valkey_version"], e.Version)
				assert.Equal(t, "7.2.4", info["redis_version"], "valkey reports a fixed redis_version for compatibility")
			case "redis":
				assert.NotContains(t, info, "valkey_version")
				assert.NotEqual(t, "valkey", info["server_name"])
				assert.True(t, strings.HasPrefix(info["redis_version"], e.Version+"."),
					"redis_version %q, want %s.x", info["redis_version"], e.Version)
			}
			assert.Equal(t, strconv.Itoa(srv.Port), info["tcp_port"])
			assert.Equal(t, "standalone", info[modeField(e)])
		})

		t.Run(e.Name+" requires AUTH when a password is set", func(t *testing.T) {
			t.Parallel()
			e := Require(t, e.Name)
			srv := StartServer(t, e, WithPassword("s3cret pass"))

			assert.Equal(t, "NOAUTH", errorCode(t, rawCommand(t, srv.Addr(), "PING")))
			_, err := valkey.NewClient(valkey.ClientOption{
				InitAddress: []string{srv.Addr()}, ForceSingleClient: true, DisableCache: true,
			})
			assert.Equal(t, "NOAUTH", valkeyErrorCode(err), "client without password: %v", err)
			_, err = valkey.NewClient(valkey.ClientOption{
				InitAddress: []string{srv.Addr()}, Password: "wrong", ForceSingleClient: true, DisableCache: true,
			})
			assert.Equal(t, "WRONGPASS", valkeyErrorCode(err), "client with a wrong password: %v", err)

			c := srv.Client(t)
			ctx := context.Background()
			require.NoError(t, c.Do(ctx, c.B().Set().Key("k").Value("v").Build()).Error())
			got, err := c.Do(ctx, c.B().Get().Key("k").Build()).ToString()
			require.NoError(t, err)
			assert.Equal(t, "v", got)
			assert.Equal(t, fmt.Sprintf("%s://:s3cret%%20pass@127.0.0.1:%d", e.Kind, srv.Port), srv.URL())
		})

		t.Run(e.Name+" enforces the users of an ACL file", func(t *testing.T) {
			t.Parallel()
			e := Require(t, e.Name)
			srv := StartServer(t, e, WithPassword("adminpw"), WithACL("user alice on >alicepw ~app:* +@all -eval"))
			ctx := context.Background()

			assert.Equal(t, "NOAUTH", errorCode(t, rawCommand(t, srv.Addr(), "PING")), "the default user keeps its password")
			admin := srv.Client(t)
			require.NoError(t, admin.Do(ctx, admin.B().Set().Key("other").Value("1").Build()).Error())

			alice := srv.ClientAs(t, "alice", "alicepw")
			require.NoError(t, alice.Do(ctx, alice.B().Set().Key("app:1").Value("1").Build()).Error())
			err := alice.Do(ctx, alice.B().Set().Key("other").Value("2").Build()).Error()
			assert.Equal(t, "NOPERM", valkeyErrorCode(err), "key outside alice's pattern: %v", err)
			err = alice.Do(ctx, alice.B().Eval().Script("return 1").Numkeys(0).Build()).Error()
			assert.Equal(t, "NOPERM", valkeyErrorCode(err), "EVAL denied to alice: %v", err)
		})

		t.Run(e.Name+" has the configured number of databases", func(t *testing.T) {
			t.Parallel()
			e := Require(t, e.Name)
			srv := StartServer(t, e, WithDatabases(4), WithConfig("maxmemory-policy", "allkeys-lru"))
			c := srv.Client(t)
			ctx := context.Background()

			got, err := c.Do(ctx, c.B().ConfigGet().Parameter("databases").Build()).AsStrMap()
			require.NoError(t, err)
			assert.Equal(t, "4", got["databases"])
			got, err = c.Do(ctx, c.B().ConfigGet().Parameter("maxmemory-policy").Build()).AsStrMap()
			require.NoError(t, err)
			assert.Equal(t, "allkeys-lru", got["maxmemory-policy"])
			assert.Error(t, c.Do(ctx, c.B().Select().Index(4).Build()).Error(), "SELECT 4 with 4 databases")
		})

		t.Run(e.Name+" comes back empty on the same port after a kill and a restart", func(t *testing.T) {
			t.Parallel()
			e := Require(t, e.Name)
			srv := StartServer(t, e)
			port, dir := srv.Port, srv.Dir
			c := srv.Client(t)
			ctx := context.Background()
			require.NoError(t, c.Do(ctx, c.B().Set().Key("k").Value("v").Build()).Error())

			srv.Kill()
			assert.False(t, srv.Running())
			_, err := net.DialTimeout("tcp", srv.Addr(), time.Second)
			assert.Error(t, err, "nothing listens on the port of a killed server")

			srv.Restart(t)
			assert.True(t, srv.Running())
			assert.Equal(t, port, srv.Port)
			assert.Equal(t, dir, srv.Dir)
			c = srv.Client(t)
			pong, err := c.Do(ctx, c.B().Ping().Build()).ToString()
			require.NoError(t, err)
			assert.Equal(t, "PONG", pong)
			n, err := c.Do(ctx, c.B().Dbsize().Build()).AsInt64()
			require.NoError(t, err)
			assert.Zero(t, n, "a killed server comes back empty")

			srv.Stop()
			assert.False(t, srv.Running())
			_, err = net.DialTimeout("tcp", srv.Addr(), time.Second)
			assert.Error(t, err, "nothing listens on the port of a stopped server")
			srv.Stop() // idempotent
		})
	}
}

func TestCluster(t *testing.T) {
	for _, e := range AllEngines() {
		t.Run(e.Name+" starts a 3-master cluster", func(t *testing.T) {
			t.Parallel()
			e := Require(t, e.Name)
			cl := StartCluster(t, e, 3)
			require.Len(t, cl.Nodes, 3)
			assert.Equal(t, fmt.Sprintf("%s://127.0.0.1:%d?cluster=true", e.Kind, cl.Nodes[0].Port), cl.URL())

			c := cl.Client(t)
			ctx := context.Background()
			cmds := make(valkey.Commands, 0, 100)
			for i := range 100 {
				cmds = append(cmds, c.B().Set().Key(fmt.Sprintf("key:%d", i)).Value(strconv.Itoa(i)).Build())
			}
			for i, r := range c.DoMulti(ctx, cmds...) {
				require.NoError(t, r.Error(), "SET key:%d", i)
			}
			got, err := c.Do(ctx, c.B().Get().Key("key:42").Build()).ToString()
			require.NoError(t, err)
			assert.Equal(t, "42", got)

			total := int64(0)
			for _, node := range cl.Nodes {
				nc := node.Client(t)
				n, err := nc.Do(ctx, nc.B().Dbsize().Build()).AsInt64()
				require.NoError(t, err)
				assert.Positive(t, n, "keys on %s", node.Addr())
				total += n
				info := infoServer(t, nc)
				assert.Equal(t, "cluster", info[modeField(e)])
			}
			assert.EqualValues(t, 100, total)
		})

		t.Run(e.Name+" starts a 3-master cluster with a password", func(t *testing.T) {
			t.Parallel()
			e := Require(t, e.Name)
			cl := StartCluster(t, e, 3, WithPassword("pw"))
			assert.Equal(t, fmt.Sprintf("%s://:pw@127.0.0.1:%d?cluster=true", e.Kind, cl.Nodes[0].Port), cl.URL())
			for _, node := range cl.Nodes {
				assert.Equal(t, "NOAUTH", errorCode(t, rawCommand(t, node.Addr(), "PING")), node.Addr())
			}

			c := cl.Client(t)
			ctx := context.Background()
			for i := range 10 {
				require.NoError(t, c.Do(ctx, c.B().Set().Key(fmt.Sprintf("k%d", i)).Value("v").Build()).Error())
			}
			total := int64(0)
			for _, node := range cl.Nodes {
				nc := node.Client(t)
				n, err := nc.Do(ctx, nc.B().Dbsize().Build()).AsInt64()
				require.NoError(t, err)
				total += n
			}
			assert.EqualValues(t, 10, total)
		})
	}
}

func TestURL(t *testing.T) {
	tests := []struct {
		name string
		srv  *Server
		want string
	}{
		{"a redis server without a password has a plain redis URL",
			&Server{Engine: Engine{Kind: "redis"}, Host: "127.0.0.1", Port: 6379}, "redis://127.0.0.1:6379"},
		{"a valkey server has a valkey URL",
			&Server{Engine: Engine{Kind: "valkey"}, Host: "127.0.0.1", Port: 7000}, "valkey://127.0.0.1:7000"},
		{"a password is escaped in the URL",
			&Server{Engine: Engine{Kind: "redis"}, Host: "127.0.0.1", Port: 1, Password: "p@ss/w:rd"}, "redis://:p%40ss%2Fw%3Ard@127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.srv.URL())
		})
	}
}

func TestRequire(t *testing.T) {
	t.Run("a missing engine skips the test outside CI with a hint to install it", func(t *testing.T) {
		t.Setenv(EnginesEnv, t.TempDir())
		t.Setenv("CI", "")
		r := RunTB(func(tb testing.TB) { Require(tb, "redis-7.0") })
		assert.Contains(t, r.SkipMsg, "scripts/engines.sh")
		assert.Empty(t, r.FatalMsg)
	})
	t.Run("a missing engine fails the test in CI", func(t *testing.T) {
		t.Setenv(EnginesEnv, t.TempDir())
		t.Setenv("CI", "true")
		r := RunTB(func(tb testing.TB) { Require(tb, "valkey-8.1") })
		assert.Contains(t, r.FatalMsg, "scripts/engines.sh")
		assert.Empty(t, r.SkipMsg)
	})
	t.Run("an unknown engine fails the test", func(t *testing.T) {
		r := RunTB(func(tb testing.TB) { Require(tb, "redis-6.2") })
		assert.Contains(t, r.FatalMsg, "unknown engine")
	})
	t.Run("an installed engine is returned with its binaries", func(t *testing.T) {
		dir := t.TempDir()
		t.Setenv(EnginesEnv, dir)
		bin := filepath.Join(dir, "valkey-8.0", "bin")
		require.NoError(t, os.MkdirAll(bin, 0o755))
		for _, name := range []string{"valkey-server", "valkey-cli"} {
			require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), 0o755))
		}
		var got Engine
		r := RunTB(func(tb testing.TB) { got = Require(tb, "valkey-8.0") })
		require.Empty(t, r.FatalMsg)
		require.Empty(t, r.SkipMsg)
		assert.Equal(t, Engine{
			Name: "valkey-8.0", Kind: "valkey", Version: "8.0",
			ServerBin: filepath.Join(bin, "valkey-server"), CLIBin: filepath.Join(bin, "valkey-cli"),
		}, got)
	})
}

// modeField names the INFO field that tells standalone from cluster mode:
// Valkey renamed redis_mode to server_mode.
func modeField(e Engine) string {
	if e.Kind == "valkey" {
		return "server_mode"
	}
	return "redis_mode"
}

func infoServer(t *testing.T, c valkey.Client) map[string]string {
	t.Helper()
	s, err := c.Do(context.Background(), c.B().Info().Section("server").Build()).ToString()
	require.NoError(t, err)
	info := map[string]string{}
	for _, line := range strings.Split(s, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(k, "#") {
			info[k] = v
		}
	}
	return info
}

// rawCommand sends one command on a new connection and returns the first
// line of the reply.
func rawCommand(t *testing.T, addr string, args ...string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(2*time.Second)))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_, err = conn.Write([]byte(b.String()))
	require.NoError(t, err)
	line, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, err)
	return strings.TrimSpace(line)
}

// errorCode returns the error code of a raw RESP error reply ("-NOAUTH ..."
// gives "NOAUTH"), or "" for other replies.
func errorCode(t *testing.T, reply string) string {
	t.Helper()
	if !strings.HasPrefix(reply, "-") {
		return ""
	}
	code, _, _ := strings.Cut(reply[1:], " ")
	return code
}

// valkeyErrorCode returns the server error code carried by err, "" if err is
// not a server error.
func valkeyErrorCode(err error) string {
	verr, ok := valkey.IsValkeyErr(err)
	if !ok {
		return ""
	}
	code, _, _ := strings.Cut(verr.Error(), " ")
	return code
}

func TestStartServerPortTaken(t *testing.T) {
	t.Run("a server whose port is taken reports that the address is in use", func(t *testing.T) {
		e := Require(t, "redis-7.0")
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		s := &Server{Engine: e, Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port, Dir: t.TempDir()}
		require.NoError(t, s.writeConfig(config{}))
		s.mu.Lock()
		defer s.mu.Unlock()
		err = s.launch()
		assert.ErrorIs(t, err, errAddrInUse)
		assert.Nil(t, s.proc, "a server that failed to start is not left running")
	})
}
