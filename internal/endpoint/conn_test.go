package endpoint

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/kvtest"
)

const serverPassword = "s3cr3t!pw"

func mustParse(t *testing.T, raw string) Endpoint {
	t.Helper()
	e, err := Parse(raw)
	require.NoError(t, err)
	return e
}

func dial(t *testing.T, raw string, opts ...DialOption) (*Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := Dial(ctx, mustParse(t, raw), opts...)
	if err == nil {
		t.Cleanup(c.Close)
	} else {
		t.Logf("Dial(%s): %v", raw, err)
	}
	return c, err
}

func mustDial(t *testing.T, raw string, opts ...DialOption) *Conn {
	t.Helper()
	c, err := dial(t, raw, opts...)
	require.NoError(t, err)
	return c
}

// get returns the value of key through cl, "" if there is none.
func get(t *testing.T, cl valkey.Client, key string) string {
	t.Helper()
	v, err := cl.Do(context.Background(), cl.B().Get().Key(key).Build()).ToString()
	if valkey.IsValkeyNil(err) {
		return ""
	}
	require.NoError(t, err)
	return v
}

// setUser runs ACL SETUSER name rules... through cl.
func setUser(t *testing.T, cl valkey.Client, name string, rules ...string) {
	t.Helper()
	require.NoError(t, cl.Do(context.Background(), cl.B().AclSetuser().Username(name).Rule(rules...).Build()).Error())
}

// closedPort returns a port of 127.0.0.1 that nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// ping sends PING through cl and returns the reply.
func ping(t *testing.T, cl valkey.Client) string {
	t.Helper()
	s, err := cl.Do(context.Background(), cl.B().Ping().Build()).ToString()
	require.NoError(t, err)
	return s
}

func TestDialStandalone(t *testing.T) {
	for _, eng := range kvtest.AllEngines() {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			srv := kvtest.StartServer(t, kvtest.Require(t, eng.Name), kvtest.WithPassword(serverPassword))
			base := "redis://:" + serverPassword + "@" + srv.Addr()

			t.Run("connects with the right password and detects standalone mode", func(t *testing.T) {
				c := mustDial(t, base)
				assert.False(t, c.Cluster())
				cl, err := c.Client(0)
				require.NoError(t, err)
				assert.Equal(t, "PONG", ping(t, cl))
				masters, err := c.Masters(context.Background())
				require.NoError(t, err)
				assert.Equal(t, []string{srv.Addr()}, masters)
				assert.Equal(t, serverPassword, c.Endpoint().Password())
			})

			t.Run("rejects a wrong password with ErrAuth and does not show it", func(t *testing.T) {
				_, err := dial(t, "redis://:wr0ng-s3cr3t@"+srv.Addr())
				require.ErrorIs(t, err, ErrAuth)
				assert.Contains(t, err.Error(), "redis://:xxxxx@"+srv.Addr())
				assert.Contains(t, err.Error(), "check the username and password")
				assert.NotContains(t, err.Error(), "wr0ng")
			})

			t.Run("rejects a wrong user with ErrAuth", func(t *testing.T) {
				_, err := dial(t, "redis://nobody:"+serverPassword+"@"+srv.Addr())
				require.ErrorIs(t, err, ErrAuth)
				assert.NotContains(t, err.Error(), serverPassword)
			})

			t.Run("asks for the password when none is given", func(t *testing.T) {
				_, err := dial(t, "redis://"+srv.Addr())
				require.ErrorIs(t, err, ErrAuth)
				assert.Contains(t, err.Error(), "authentication required")
			})

			t.Run("takes credentials supplied with WithCredentials", func(t *testing.T) {
				e := mustParse(t, "redis://"+srv.Addr()).WithCredentials("", serverPassword)
				c, err := Dial(context.Background(), e)
				require.NoError(t, err)
				defer c.Close()
				cl, err := c.Client(0)
				require.NoError(t, err)
				assert.Equal(t, "PONG", ping(t, cl))
			})

			t.Run("writes through Client(3) into database 3 only", func(t *testing.T) {
				c := mustDial(t, base)
				cl, err := c.Client(3)
				require.NoError(t, err)
				key := "endpoint-test-" + eng.Name
				require.NoError(t, cl.Do(context.Background(), cl.B().Set().Key(key).Value("in-db-3").Build()).Error())
				assert.Equal(t, "in-db-3", get(t, srv.ClientDB(t, 3), key))
				assert.Empty(t, get(t, srv.ClientDB(t, 0), key))
				again, err := c.Client(3)
				require.NoError(t, err)
				assert.Equal(t, cl, again, "clients are cached per database")
			})

			t.Run("selects the URL's database and serves it through Node too", func(t *testing.T) {
				c := mustDial(t, base+"/5")
				cl, err := c.Client(5)
				require.NoError(t, err)
				require.NoError(t, cl.Do(context.Background(), cl.B().Set().Key("db5").Value("x").Build()).Error())
				assert.Equal(t, "x", get(t, srv.ClientDB(t, 5), "db5"))
				node, err := c.Node(srv.Addr(), 5)
				require.NoError(t, err)
				assert.Equal(t, cl, node)
			})

			t.Run("fails on a database the server does not have", func(t *testing.T) {
				_, err := dial(t, base+"/99")
				require.Error(t, err)
				assert.Contains(t, err.Error(), "database 99")
				assert.NotContains(t, err.Error(), serverPassword)
			})

			t.Run("rejects cluster=true on a standalone server", func(t *testing.T) {
				_, err := dial(t, base+"?cluster=true")
				require.ErrorIs(t, err, ErrClusterMode)
			})

			t.Run("takes cluster=false at its word", func(t *testing.T) {
				c := mustDial(t, base+"?cluster=false")
				assert.False(t, c.Cluster())
			})

			t.Run("refuses clients after Close", func(t *testing.T) {
				c, err := Dial(context.Background(), mustParse(t, base))
				require.NoError(t, err)
				c.Close()
				_, err = c.Client(0)
				require.ErrorIs(t, err, ErrClosed)
				_, err = c.Node("127.0.0.1:1", 0)
				require.ErrorIs(t, err, ErrClosed)
				c.Close() // twice is fine
			})

			t.Run("hands out clients safely to concurrent callers", func(t *testing.T) {
				c := mustDial(t, base)
				var wg sync.WaitGroup
				got := make([]valkey.Client, 32)
				for i := range got {
					wg.Go(func() {
						cl, err := c.Client(1 + i%2)
						assert.NoError(t, err)
						got[i] = cl
					})
				}
				wg.Wait()
				for i := range got {
					assert.Equal(t, got[i%2], got[i])
				}
				assert.NotEqual(t, got[0], got[1])
			})
		})
	}
}

func TestDialPermissions(t *testing.T) {
	srv := kvtest.StartServer(t, kvtest.Require(t, "redis-7.0"), kvtest.WithPassword(serverPassword))
	admin := srv.Client(t)
	setUser(t, admin, "noinfo", "on", ">pw-noinfo", "~*", "&*", "+@all", "-info")
	setUser(t, admin, "blind", "on", ">pw-blind", "~*", "&*", "+@all", "-info", "-cluster")

	t.Run("detects standalone mode through CLUSTER SLOTS when INFO is denied", func(t *testing.T) {
		c := mustDial(t, "redis://noinfo:pw-noinfo@"+srv.Addr())
		assert.False(t, c.Cluster())
	})
	t.Run("reports ErrNoPermission when neither INFO nor CLUSTER is allowed", func(t *testing.T) {
		_, err := dial(t, "redis://blind:pw-blind@"+srv.Addr())
		require.ErrorIs(t, err, ErrNoPermission)
		assert.Contains(t, err.Error(), "cluster=false")
		assert.NotContains(t, err.Error(), "pw-blind")
	})
	t.Run("connects that user when the URL says cluster=false", func(t *testing.T) {
		c := mustDial(t, "redis://blind:pw-blind@"+srv.Addr()+"?cluster=false")
		assert.False(t, c.Cluster())
	})
}

func TestDialUnreachable(t *testing.T) {
	t.Run("reports a refused connection", func(t *testing.T) {
		port := closedPort(t)
		_, err := dial(t, "redis://:"+serverPassword+"@127.0.0.1:"+strconv.Itoa(port))
		require.ErrorIs(t, err, ErrUnreachable)
		assert.Contains(t, err.Error(), "connection refused")
		assert.NotContains(t, err.Error(), serverPassword)
	})
	t.Run("reports a host name that does not resolve", func(t *testing.T) {
		_, err := dial(t, "redis://:"+serverPassword+"@no-such-host.invalid:6379", WithDialTimeout(3*time.Second))
		require.ErrorIs(t, err, ErrUnreachable)
		assert.Contains(t, err.Error(), "no-such-host.invalid")
		assert.NotContains(t, err.Error(), serverPassword)
	})
	t.Run("reports a server that accepts but never answers as a timeout", func(t *testing.T) {
		addr := silentListener(t)
		_, err := dial(t, "redis://:"+serverPassword+"@"+addr, WithDialTimeout(300*time.Millisecond))
		require.ErrorIs(t, err, ErrUnreachable)
		assert.Contains(t, err.Error(), "timed out")
	})
	t.Run("reports something that is not a Redis server", func(t *testing.T) {
		addr := replyingListener(t, "HTTP/1.1 400 Bad Request\r\n\r\n")
		_, err := dial(t, "redis://"+addr)
		require.ErrorIs(t, err, ErrUnreachable)
		assert.Contains(t, err.Error(), "not Redis protocol")
	})
	t.Run("stops when the context is canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := Dial(ctx, mustParse(t, "redis://"+silentListener(t)))
		require.ErrorIs(t, err, context.Canceled)
	})
}

// silentListener accepts connections and never answers.
func silentListener(t *testing.T) string {
	t.Helper()
	return replyingListener(t, "")
}

// replyingListener accepts connections and writes reply on each (nothing
// if empty), then keeps them open until the test ends.
func replyingListener(t *testing.T, reply string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			if reply != "" {
				go func() {
					buf := make([]byte, 1024)
					_, _ = c.Read(buf)
					_, _ = c.Write([]byte(reply))
				}()
			}
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func TestDialTLSMismatch(t *testing.T) {
	eng := kvtest.Require(t, "redis-7.0")
	plain := kvtest.StartServer(t, eng, kvtest.WithPassword(serverPassword))
	tlsSrv := kvtest.StartServer(t, eng, kvtest.WithPassword(serverPassword), kvtest.WithTLS(kvtest.TLSOptions{}))
	both := kvtest.StartServer(t, eng, kvtest.WithPassword(serverPassword), kvtest.WithTLS(kvtest.TLSOptions{Plain: true}))

	t.Run("reports TLS spoken to a plain server, suggesting redis://, without waiting for a timeout", func(t *testing.T) {
		start := time.Now()
		_, err := dial(t, "rediss://:"+serverPassword+"@"+plain.Addr(), WithDialTimeout(30*time.Second))
		t.Logf("took %v", time.Since(start))
		require.ErrorIs(t, err, ErrTLS)
		assert.NotErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "use redis://")
		assert.NotContains(t, err.Error(), serverPassword)
	})
	t.Run("reports TLS spoken to a plain server for valkeys:// too, suggesting valkey://", func(t *testing.T) {
		_, err := dial(t, "valkeys://"+plain.Addr(), WithDialTimeout(30*time.Second))
		require.ErrorIs(t, err, ErrTLS)
		assert.Contains(t, err.Error(), "use valkey://")
	})
	t.Run("reports plain text spoken to a TLS server, suggesting rediss://", func(t *testing.T) {
		start := time.Now()
		_, err := dial(t, "redis://:"+serverPassword+"@"+tlsSrv.Addr(), WithDialTimeout(30*time.Second))
		t.Logf("took %v", time.Since(start))
		require.ErrorIs(t, err, ErrTLS)
		assert.NotErrorIs(t, err, context.DeadlineExceeded)
		assert.Contains(t, err.Error(), "use rediss://")
		assert.NotContains(t, err.Error(), serverPassword)
	})
	t.Run("on a server with a plain and a TLS port, names the port that was mixed up", func(t *testing.T) {
		_, err := dial(t, "rediss://:"+serverPassword+"@"+both.PlainAddr()+"?tls_ca="+both.TLS.CA, WithDialTimeout(30*time.Second))
		require.ErrorIs(t, err, ErrTLS)
		assert.Contains(t, err.Error(), both.PlainAddr())
		assert.Contains(t, err.Error(), "use redis://")
		assert.NotContains(t, err.Error(), serverPassword)

		_, err = dial(t, "valkey://:"+serverPassword+"@"+both.Addr(), WithDialTimeout(30*time.Second))
		require.ErrorIs(t, err, ErrTLS)
		assert.Contains(t, err.Error(), both.Addr())
		assert.Contains(t, err.Error(), "use valkeys://")
		assert.NotContains(t, err.Error(), serverPassword)

		for _, url := range []string{both.URL(), both.PlainURL()} {
			cl, err := mustDial(t, url).Client(0)
			require.NoError(t, err)
			assert.Equal(t, "PONG", ping(t, cl), "the right scheme for each port connects")
		}
	})
}

func TestDialTLS(t *testing.T) {
	for _, eng := range kvtest.AllEngines() {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			e := kvtest.Require(t, eng.Name)
			srv := kvtest.StartServer(t, e, kvtest.WithPassword(serverPassword), kvtest.WithTLS(kvtest.TLSOptions{}))
			files := srv.TLS
			mtls := kvtest.StartServer(t, e, kvtest.WithTLS(kvtest.TLSOptions{ClientAuth: true, Files: files}))
			// TLS 1.2 refuses a client certificate during the handshake,
			// TLS 1.3 (the servers' default) only after it.
			mtls12 := kvtest.StartServer(t, e, kvtest.WithTLS(kvtest.TLSOptions{ClientAuth: true, Files: files}),
				kvtest.WithConfig("tls-protocols", `"TLSv1.2"`))
			base := "rediss://:" + serverPassword + "@" + srv.Addr()

			t.Run("connects with the CA from tls_ca", func(t *testing.T) {
				c := mustDial(t, base+"?tls_ca="+files.CA)
				cl, err := c.Client(2)
				require.NoError(t, err)
				assert.Equal(t, "PONG", ping(t, cl))
				require.NoError(t, cl.Do(context.Background(), cl.B().Set().Key("tls").Value("yes").Build()).Error())
				assert.Equal(t, "yes", get(t, srv.ClientDB(t, 2), "tls"), "the write landed in database 2")
			})
			t.Run("connects with the URL kvtest gives", func(t *testing.T) {
				ep := mustParse(t, srv.URL())
				assert.True(t, ep.TLS.Enabled)
				assert.Equal(t, files.CA, ep.TLS.CAFile)
				assert.Empty(t, ep.TLS.CertFile, "the server asks for no client certificate")
				c := mustDial(t, srv.URL())
				assert.False(t, c.Cluster())
				cl, err := c.Client(0)
				require.NoError(t, err)
				assert.Equal(t, "PONG", ping(t, cl))
			})
			t.Run("connects by host name localhost too", func(t *testing.T) {
				c := mustDial(t, fmt.Sprintf("rediss://:%s@localhost:%d?tls_ca=%s", serverPassword, srv.Port, files.CA))
				cl, err := c.Client(0)
				require.NoError(t, err)
				assert.Equal(t, "PONG", ping(t, cl))
			})
			t.Run("rejects an unknown CA, suggesting tls_ca", func(t *testing.T) {
				_, err := dial(t, base)
				require.ErrorIs(t, err, ErrTLS)
				assert.Contains(t, err.Error(), "tls_ca")
				assert.NotContains(t, err.Error(), serverPassword)
			})
			t.Run("rejects a tls_ca of another CA, saying the authority is unknown", func(t *testing.T) {
				other := kvtest.NewTLSFiles(t, t.TempDir())
				_, err := dial(t, base+"?tls_ca="+other.CA)
				require.ErrorIs(t, err, ErrTLS)
				assert.Contains(t, err.Error(), "unknown authority")
				assert.Contains(t, err.Error(), "tls_ca")
				assert.NotContains(t, err.Error(), serverPassword)
			})
			t.Run("connects without verification when tls_insecure=true", func(t *testing.T) {
				c := mustDial(t, base+"?tls_insecure=true")
				cl, err := c.Client(0)
				require.NoError(t, err)
				assert.Equal(t, "PONG", ping(t, cl))
			})
			t.Run("rejects a server name the certificate does not hold, suggesting tls_server_name", func(t *testing.T) {
				_, err := dial(t, base+"?tls_ca="+files.CA+"&tls_server_name=cache.example.com")
				require.ErrorIs(t, err, ErrTLS)
				assert.Contains(t, err.Error(), "tls_server_name")
			})
			t.Run("rejects a tls_ca file that does not exist", func(t *testing.T) {
				_, err := dial(t, base+"?tls_ca=/nonexistent/ca.pem")
				require.ErrorIs(t, err, ErrTLS)
				assert.Contains(t, err.Error(), "tls_ca")
			})
			t.Run("rejects a wrong password over TLS with ErrAuth and does not show it", func(t *testing.T) {
				_, err := dial(t, "rediss://:wr0ng-s3cr3t@"+srv.Addr()+"?tls_ca="+files.CA)
				require.ErrorIs(t, err, ErrAuth)
				assert.NotErrorIs(t, err, ErrTLS)
				assert.NotContains(t, err.Error(), "wr0ng")
			})
			t.Run("asks for a client certificate when the server requires one", func(t *testing.T) {
				_, err := dial(t, "rediss://"+mtls.Addr()+"?tls_ca="+files.CA)
				require.ErrorIs(t, err, ErrTLS)
				assert.Contains(t, err.Error(), "tls_cert")
			})
			t.Run("asks for a client certificate when a TLS 1.2 server requires one", func(t *testing.T) {
				_, err := dial(t, "rediss://"+mtls12.Addr()+"?tls_ca="+files.CA)
				require.ErrorIs(t, err, ErrTLS)
				assert.Contains(t, err.Error(), "tls_cert")
			})
			t.Run("rejects a client certificate of another CA, saying the server does not accept it", func(t *testing.T) {
				other := kvtest.NewTLSFiles(t, t.TempDir())
				for _, srv := range []*kvtest.Server{mtls, mtls12} {
					_, err := dial(t, "rediss://"+srv.Addr()+"?tls_ca="+files.CA+"&tls_cert="+other.ClientCert+"&tls_key="+other.ClientKey)
					require.ErrorIs(t, err, ErrTLS)
					assert.Contains(t, err.Error(), srv.Addr())
					assert.Contains(t, err.Error(), "not accept the client certificate")
				}
			})
			t.Run("reports plain text spoken to a server that requires client certificates, suggesting rediss://", func(t *testing.T) {
				for _, srv := range []*kvtest.Server{mtls, mtls12} {
					_, err := dial(t, "redis://"+srv.Addr(), WithDialTimeout(30*time.Second))
					require.ErrorIs(t, err, ErrTLS)
					assert.Contains(t, err.Error(), "use rediss://")
				}
			})
			t.Run("connects with a client certificate", func(t *testing.T) {
				c := mustDial(t, "rediss://"+mtls.Addr()+"?tls_ca="+files.CA+"&tls_cert="+files.ClientCert+"&tls_key="+files.ClientKey)
				cl, err := c.Client(0)
				require.NoError(t, err)
				assert.Equal(t, "PONG", ping(t, cl))
			})
			t.Run("connects with the URL kvtest gives a server that requires client certificates", func(t *testing.T) {
				ep := mustParse(t, mtls.URL())
				assert.Equal(t, files.ClientCert, ep.TLS.CertFile)
				assert.Equal(t, files.ClientKey, ep.TLS.KeyFile)
				cl, err := mustDial(t, mtls.URL()).Client(0)
				require.NoError(t, err)
				assert.Equal(t, "PONG", ping(t, cl))
			})
		})
	}
}

func TestDialCluster(t *testing.T) {
	for _, eng := range kvtest.AllEngines() {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			cluster := kvtest.StartCluster(t, kvtest.Require(t, eng.Name), 3, kvtest.WithPassword(serverPassword))
			nodes := cluster.Nodes
			seed := nodes[0]
			base := "redis://:" + serverPassword + "@" + seed.Addr()
			var want []string
			for _, n := range nodes {
				want = append(want, n.Addr())
			}
			slices.Sort(want)

			c := mustDial(t, base)
			t.Run("detects cluster mode", func(t *testing.T) {
				assert.True(t, c.Cluster())
			})
			t.Run("lists the three masters, sorted", func(t *testing.T) {
				masters, err := c.Masters(context.Background())
				require.NoError(t, err)
				assert.Equal(t, want, masters)
			})
			t.Run("routes keys and reaches each node alone through Node", func(t *testing.T) {
				assertRoutesToEachNode(t, c, nodes)
			})
			t.Run("lists the same masters from CLUSTER SLOTS, as for Redis before 7.0", func(t *testing.T) {
				cl, err := c.Client(0)
				require.NoError(t, err)
				masters, err := c.slotsMasters(context.Background(), cl)
				require.NoError(t, err)
				slices.Sort(masters)
				assert.Equal(t, want, masters)
			})
			t.Run("detects cluster mode through CLUSTER SLOTS when INFO is denied", func(t *testing.T) {
				for _, n := range nodes {
					setUser(t, n.Client(t), "noinfo", "on", ">pw-noinfo", "~*", "&*", "+@all", "-info")
				}
				noinfo := mustDial(t, "redis://noinfo:pw-noinfo@"+seed.Addr())
				assert.True(t, noinfo.Cluster())
				masters, err := noinfo.Masters(context.Background())
				require.NoError(t, err)
				assert.Equal(t, want, masters)
			})
			t.Run("refuses databases other than 0 with ErrClusterDB", func(t *testing.T) {
				_, err := c.Client(1)
				require.ErrorIs(t, err, ErrClusterDB)
				_, err = c.Node(seed.Addr(), 1)
				require.ErrorIs(t, err, ErrClusterDB)
				_, err = dial(t, base+"/1")
				require.ErrorIs(t, err, ErrClusterDB)
				assert.NotContains(t, err.Error(), serverPassword)
			})
			t.Run("takes cluster=true", func(t *testing.T) {
				assert.True(t, mustDial(t, base+"?cluster=true").Cluster())
			})
			t.Run("talks to the one node named when cluster=false", func(t *testing.T) {
				one := mustDial(t, base+"?cluster=false")
				assert.False(t, one.Cluster())
				masters, err := one.Masters(context.Background())
				require.NoError(t, err)
				assert.Equal(t, []string{seed.Addr()}, masters)
			})
			t.Run("rejects a wrong password with ErrAuth", func(t *testing.T) {
				_, err := dial(t, "redis://:wr0ng-s3cr3t@"+seed.Addr())
				require.ErrorIs(t, err, ErrAuth)
				assert.NotContains(t, err.Error(), "wr0ng")
			})
		})
	}
}

func TestDialTLSCluster(t *testing.T) {
	for _, eng := range kvtest.AllEngines() {
		t.Run(eng.Name, func(t *testing.T) {
			t.Parallel()
			cluster := kvtest.StartCluster(t, kvtest.Require(t, eng.Name), 3,
				kvtest.WithPassword(serverPassword), kvtest.WithTLS(kvtest.TLSOptions{}))
			nodes := cluster.Nodes
			seed := nodes[0]
			var want []string
			for _, n := range nodes {
				want = append(want, n.Addr()) // the TLS ports: the nodes serve nothing else
			}
			slices.Sort(want)

			c := mustDial(t, cluster.URL())
			t.Run("detects cluster mode over TLS", func(t *testing.T) {
				assert.True(t, c.Cluster())
				auto := mustDial(t, "rediss://:"+serverPassword+"@"+seed.Addr()+"?tls_ca="+cluster.TLS.CA)
				assert.True(t, auto.Cluster(), "without cluster=true in the URL too")
			})
			t.Run("lists the masters at their TLS ports from CLUSTER SHARDS and CLUSTER SLOTS", func(t *testing.T) {
				masters, err := c.Masters(context.Background())
				require.NoError(t, err)
				assert.Equal(t, want, masters)
				cl, err := c.Client(0)
				require.NoError(t, err)
				masters, err = c.slotsMasters(context.Background(), cl)
				require.NoError(t, err)
				slices.Sort(masters)
				assert.Equal(t, want, masters)
			})
			t.Run("routes keys and reaches each node alone through Node over TLS", func(t *testing.T) {
				assertRoutesToEachNode(t, c, nodes)
			})
			t.Run("reports plain text spoken to a TLS cluster node, suggesting rediss://", func(t *testing.T) {
				_, err := dial(t, "redis://:"+serverPassword+"@"+seed.Addr()+"?cluster=true", WithDialTimeout(30*time.Second))
				require.ErrorIs(t, err, ErrTLS)
				assert.Contains(t, err.Error(), "use rediss://")
				assert.NotContains(t, err.Error(), serverPassword)
			})
			t.Run("rejects an unknown CA, suggesting tls_ca", func(t *testing.T) {
				_, err := dial(t, "rediss://:"+serverPassword+"@"+seed.Addr()+"?cluster=true")
				require.ErrorIs(t, err, ErrTLS)
				assert.Contains(t, err.Error(), "tls_ca")
				assert.NotContains(t, err.Error(), serverPassword)
			})
		})
	}
}

// assertRoutesToEachNode writes keys through c's cluster client and checks,
// with kvtest's own client of each node, that c.Node reaches exactly that
// node.
func assertRoutesToEachNode(t *testing.T, c *Conn, nodes []*kvtest.Server) {
	t.Helper()
	ctx := context.Background()
	cl, err := c.Client(0)
	require.NoError(t, err)
	const keys = 100
	for i := range keys {
		k := fmt.Sprintf("key:%d", i)
		require.NoError(t, cl.Do(ctx, cl.B().Set().Key(k).Value("v").Build()).Error())
	}
	total := int64(0)
	for _, n := range nodes {
		node, err := c.Node(n.Addr(), 0)
		require.NoError(t, err)
		size, err := node.Do(ctx, node.B().Dbsize().Build()).AsInt64()
		require.NoError(t, err)
		own := n.Client(t)
		ownSize, err := own.Do(ctx, own.B().Dbsize().Build()).AsInt64()
		require.NoError(t, err)
		assert.Equal(t, ownSize, size, "Node(%s) must count that node's keys", n.Addr())
		assert.Greater(t, size, int64(0))
		assert.Less(t, size, int64(keys))
		myID, err := node.Do(ctx, node.B().ClusterMyid().Build()).ToString()
		require.NoError(t, err)
		ownID, err := own.Do(ctx, own.B().ClusterMyid().Build()).ToString()
		require.NoError(t, err)
		assert.Equal(t, ownID, myID)
		total += size
	}
	assert.Equal(t, int64(keys), total)
}
