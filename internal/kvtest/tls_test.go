package kvtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valkey-io/valkey-go"
)

func TestTLS(t *testing.T) {
	for _, e := range AllEngines() {
		t.Run(e.Name+" serves TLS only, with a certificate its CA verifies", func(t *testing.T) {
			t.Parallel()
			e := Require(t, e.Name)
			srv := StartServer(t, e, WithPassword("tls pw"), WithTLS(TLSOptions{}))
			require.NotNil(t, srv.TLS)
			assert.False(t, srv.ClientAuth)
			assert.Zero(t, srv.PlainPort)
			assert.Empty(t, srv.PlainAddr(), "a TLS-only server has no plain-text address")
			assert.Empty(t, srv.PlainURL())
			assert.Equal(t, srv.Dir, srv.TLS.Dir, "the certificates are made in the server's directory")
			assert.Equal(t, fmt.Sprintf("%ss://:tls%%20pw@127.0.0.1:%d?tls_ca=%s", e.Kind, srv.Port, escapeQueryValue(srv.TLS.CA)), srv.URL())

			c := srv.Client(t)
			ctx := context.Background()
			require.NoError(t, c.Do(ctx, c.B().Set().Key("k").Value("over tls").Build()).Error())
			got, err := c.Do(ctx, c.B().Get().Key("k").Build()).ToString()
			require.NoError(t, err)
			assert.Equal(t, "over tls", got)
			conf := configGet(t, c, "port", "tls-port", "tls-auth-clients", "tls-replication", "tls-cluster")
			assert.Equal(t, map[string]string{
				"port": "0", "tls-port": strconv.Itoa(srv.Port), "tls-auth-clients": "no",
				"tls-replication": "yes", "tls-cluster": "no",
			}, conf)
			got, err = srv.ClientDB(t, 2).Do(ctx, c.B().Get().Key("k").Build()).ToString()
			assert.True(t, valkey.IsValkeyNil(err), "ClientDB(2) reads database 2 over TLS: %q, %v", got, err)

			assert.Error(t, ping(srv.Addr()), "plain text is not served on the TLS port")
			_, err = tlsHandshake(srv.Addr(), &tls.Config{MinVersion: tls.VersionTLS12})
			var unknownCA x509.UnknownAuthorityError
			assert.ErrorAs(t, err, &unknownCA, "the certificate is signed by the throwaway CA, not a system root")
			_, err = tlsHandshake(srv.Addr(), withoutClientCert(srv.TLSConfig()))
			assert.NoError(t, err, "no client certificate is needed")
			state, err := tlsHandshake(net.JoinHostPort("localhost", strconv.Itoa(srv.Port)), srv.TLSConfig())
			require.NoError(t, err, "the certificate holds localhost too")
			assert.Equal(t, "kvtest server", state.PeerCertificates[0].Subject.CommonName)
		})

		t.Run(e.Name+" requires a client certificate with ClientAuth", func(t *testing.T) {
			t.Parallel()
			e := Require(t, e.Name)
			srv := StartServer(t, e, WithTLS(TLSOptions{ClientAuth: true}))
			assert.True(t, srv.ClientAuth)
			assert.Equal(t, fmt.Sprintf("%ss://127.0.0.1:%d?tls_ca=%s&tls_cert=%s&tls_key=%s",
				e.Kind, srv.Port, escapeQueryValue(srv.TLS.CA), escapeQueryValue(srv.TLS.ClientCert), escapeQueryValue(srv.TLS.ClientKey)), srv.URL())

			c := srv.Client(t)
			assert.Equal(t, map[string]string{"tls-auth-clients": "yes"}, configGet(t, c, "tls-auth-clients"))
			// With TLS 1.3 the server's refusal may only show on the first read.
			assert.Error(t, pingOver(srv.Addr(), withoutClientCert(srv.TLSConfig())), "a client without a certificate is refused")
			assert.NoError(t, pingOver(srv.Addr(), srv.TLSConfig()), "the client certificate is accepted")
			other := NewTLSFiles(t, t.TempDir())
			foreign, err := other.ClientConfig()
			require.NoError(t, err)
			foreign.RootCAs = srv.TLSConfig().RootCAs
			assert.Error(t, pingOver(srv.Addr(), foreign), "a client certificate of another CA is refused")
		})

		t.Run(e.Name+" serves TLS and plain text on two ports with Plain", func(t *testing.T) {
			t.Parallel()
			e := Require(t, e.Name)
			srv := StartServer(t, e, WithPassword("pw"), WithTLS(TLSOptions{Plain: true}))
			require.NotZero(t, srv.PlainPort)
			assert.NotEqual(t, srv.Port, srv.PlainPort)
			assert.Equal(t, fmt.Sprintf("127.0.0.1:%d", srv.PlainPort), srv.PlainAddr())
			assert.Equal(t, fmt.Sprintf("%s://:pw@127.0.0.1:%d", e.Kind, srv.PlainPort), srv.PlainURL())
			assert.True(t, strings.HasPrefix(srv.URL(), e.Kind+"s://"), srv.URL())

			c := srv.Client(t)
			ctx := context.Background()
			require.NoError(t, c.Do(ctx, c.B().Set().Key("k").Value("both").Build()).Error())
			assert.Equal(t, map[string]string{"port": strconv.Itoa(srv.PlainPort), "tls-port": strconv.Itoa(srv.Port)},
				configGet(t, c, "port", "tls-port"))
			assert.Equal(t, "NOAUTH", errorCode(t, rawCommand(t, srv.PlainAddr(), "GET", "k")), "plain text on the plain port")
			assert.Error(t, ping(srv.Addr()), "plain text is not served on the TLS port")
		})

		t.Run(e.Name+" starts a 3-master cluster over mutual TLS", func(t *testing.T) {
			t.Parallel()
			e := Require(t, e.Name)
			cl := StartCluster(t, e, 3, WithPassword("pw"), WithTLS(TLSOptions{ClientAuth: true}))
			require.NotNil(t, cl.TLS)
			assert.True(t, cl.ClientAuth)
			assert.Equal(t, fmt.Sprintf("%ss://:pw@127.0.0.1:%d?cluster=true&tls_ca=%s&tls_cert=%s&tls_key=%s",
				e.Kind, cl.Nodes[0].Port, escapeQueryValue(cl.TLS.CA), escapeQueryValue(cl.TLS.ClientCert), escapeQueryValue(cl.TLS.ClientKey)), cl.URL())

			c := cl.Client(t)
			ctx := context.Background()
			cmds := make(valkey.Commands, 0, 100)
			for i := range 100 {
				cmds = append(cmds, c.B().Set().Key(fmt.Sprintf("key:%d", i)).Value(strconv.Itoa(i)).Build())
			}
			for i, r := range c.DoMulti(ctx, cmds...) {
				require.NoError(t, r.Error(), "SET key:%d", i)
			}
			total := int64(0)
			for _, node := range cl.Nodes {
				assert.Equal(t, cl.TLS, node.TLS, "the nodes share one set of certificates")
				nc := node.Client(t)
				n, err := nc.Do(ctx, nc.B().Dbsize().Build()).AsInt64()
				require.NoError(t, err)
				assert.Positive(t, n, "keys on %s", node.Addr())
				total += n
				assert.Equal(t, map[string]string{"port": "0", "tls-cluster": "yes", "tls-auth-clients": "yes"},
					configGet(t, nc, "port", "tls-cluster", "tls-auth-clients"))
			}
			assert.EqualValues(t, 100, total)
		})
	}
}

func TestTLSUnsupported(t *testing.T) {
	// A server built without TLS rejects the tls-* directives, as Redis
	// 7.0 built with BUILD_TLS=no does.
	fake := func(t *testing.T) Engine {
		dir := t.TempDir()
		bin := filepath.Join(dir, "redis-7.0", "bin")
		require.NoError(t, os.MkdirAll(bin, 0o755))
		script := "#!/bin/sh\n" +
			"echo '*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***' >&2\n" +
			"echo 'Reading the configuration file, at line 3' >&2\n" +
			"echo \">>> 'tls-port 12345'\" >&2\n" +
			"echo 'Bad directive or wrong number of arguments' >&2\n" +
			"exit 1\n"
		for _, name := range []string{"redis-server", "redis-cli"} {
			require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755))
		}
		t.Setenv(EnginesEnv, dir)
		return Require(t, "redis-7.0")
	}
	t.Run("a server built without TLS skips a TLS test outside CI, saying why", func(t *testing.T) {
		e := fake(t)
		t.Setenv("CI", "")
		r := RunTBIn(t, func(tb testing.TB) { StartServer(tb, e, WithTLS(TLSOptions{})) })
		assert.Contains(t, r.SkipMsg, "redis-7.0 cannot serve TLS")
		assert.Contains(t, r.SkipMsg, "built without TLS")
		assert.Empty(t, r.FatalMsg)
	})
	t.Run("a server built without TLS fails a TLS test in CI", func(t *testing.T) {
		e := fake(t)
		t.Setenv("CI", "true")
		r := RunTBIn(t, func(tb testing.TB) { StartServer(tb, e, WithTLS(TLSOptions{})) })
		assert.Contains(t, r.FatalMsg, "redis-7.0 cannot serve TLS")
		assert.Empty(t, r.SkipMsg)
	})
	t.Run("a plain server that exits is a failure, not a missing capability", func(t *testing.T) {
		e := fake(t)
		t.Setenv("CI", "")
		r := RunTBIn(t, func(tb testing.TB) { StartServer(tb, e) })
		assert.Contains(t, r.FatalMsg, "exited before it was ready")
		assert.Empty(t, r.SkipMsg)
	})
}

func TestNoTLSSupport(t *testing.T) {
	tests := []struct {
		name   string
		output string
		want   bool
	}{
		{"the config parser does not know tls-port", "*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\n>>> 'tls-port 6380'\nBad directive or wrong number of arguments\n", true},
		{"the TLS connection type is missing", "# Failed finding connection listener of tls\n", true},
		{"another bad directive is not about TLS", ">>> 'no-such-thing yes'\nBad directive or wrong number of arguments\n", false},
		{"a certificate the server cannot load is not a missing capability", "# Failed to load certificate: /x/server.pem: error:80000002\n# Failed to configure TLS. Check logs for more info.\n", false},
		{"a port in use is not about TLS", "# Warning: Could not create server TCP listening socket 127.0.0.1:6380: bind: Address already in use\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, noTLSSupport([]byte(tt.output)))
		})
	}
}

func TestNewTLSFiles(t *testing.T) {
	f := NewTLSFiles(t, t.TempDir())
	pool := x509.NewCertPool()
	pemCA, err := os.ReadFile(f.CA)
	require.NoError(t, err)
	require.True(t, pool.AppendCertsFromPEM(pemCA))
	leaf := func(certFile, keyFile string) *x509.Certificate {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		require.NoError(t, err, "the certificate and key match")
		return pair.Leaf
	}

	t.Run("the server certificate is valid for 127.0.0.1, ::1 and localhost, as a server and as a client", func(t *testing.T) {
		server := leaf(f.ServerCert, f.ServerKey)
		for _, name := range []string{"127.0.0.1", "::1", "localhost"} {
			_, err := server.Verify(x509.VerifyOptions{Roots: pool, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			assert.NoError(t, err, name)
		}
		_, err := server.Verify(x509.VerifyOptions{Roots: pool, DNSName: "example.com"})
		assert.Error(t, err, "not valid for another name")
		_, err = server.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		assert.NoError(t, err, "servers present it to each other on the cluster bus")
	})
	t.Run("the client certificate is valid for client authentication only", func(t *testing.T) {
		client := leaf(f.ClientCert, f.ClientKey)
		_, err := client.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		assert.NoError(t, err)
		_, err = client.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		assert.Error(t, err)
	})
	t.Run("another CA does not verify these certificates", func(t *testing.T) {
		other := NewTLSFiles(t, t.TempDir())
		otherPool := x509.NewCertPool()
		b, err := os.ReadFile(other.CA)
		require.NoError(t, err)
		require.True(t, otherPool.AppendCertsFromPEM(b))
		_, err = leaf(f.ServerCert, f.ServerKey).Verify(x509.VerifyOptions{Roots: otherPool, DNSName: "127.0.0.1"})
		var unknownCA x509.UnknownAuthorityError
		assert.ErrorAs(t, err, &unknownCA)
	})
	t.Run("the private keys are readable by their owner only", func(t *testing.T) {
		for _, p := range []string{f.ServerKey, f.ClientKey} {
			fi, err := os.Stat(p)
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), p)
		}
	})
}

func TestTLSURLEscapesPaths(t *testing.T) {
	srv := &Server{Engine: Engine{Kind: "valkey"}, Host: "127.0.0.1", Port: 7000, Password: "p@ss",
		TLS: &TLSFiles{CA: "/tmp/a b+c&d/ca.pem", ClientCert: "/c.pem", ClientKey: "/k.pem"}, ClientAuth: true}
	assert.Equal(t, "valkeys://:p%40ss@127.0.0.1:7000?tls_ca=/tmp/a+b%2Bc%26d/ca.pem&tls_cert=/c.pem&tls_key=/k.pem", srv.URL())
	cl := &Cluster{Nodes: []*Server{srv}}
	assert.Equal(t, "valkeys://:p%40ss@127.0.0.1:7000?cluster=true&tls_ca=/tmp/a+b%2Bc%26d/ca.pem&tls_cert=/c.pem&tls_key=/k.pem", cl.URL())
}

// configGet returns CONFIG GET of the parameters.
func configGet(t *testing.T, c valkey.Client, params ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range params {
		m, err := c.Do(context.Background(), c.B().ConfigGet().Parameter(p).Build()).AsStrMap()
		require.NoError(t, err, "CONFIG GET %s", p)
		out[p] = m[p]
	}
	return out
}

func withoutClientCert(conf *tls.Config) *tls.Config {
	c := conf.Clone()
	c.Certificates = nil
	return c
}

func tlsHandshake(addr string, conf *tls.Config) (tls.ConnectionState, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.ConnectionState(), nil
}

// pingOver sends PING over TLS and wants +PONG.
func pingOver(addr string, conf *tls.Config) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(reply, "+PONG") {
		return errors.New(strings.TrimSpace(reply))
	}
	return nil
}
