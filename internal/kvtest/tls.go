package kvtest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TLSOptions shape how a server serves TLS, see [WithTLS].
type TLSOptions struct {
	// ClientAuth makes the server require a client certificate signed by
	// the CA (tls-auth-clients yes). Otherwise it asks for none
	// (tls-auth-clients no).
	ClientAuth bool
	// Plain serves plain text too, on [Server.PlainPort]. Otherwise the
	// server serves TLS only (port 0).
	Plain bool
	// Files are the certificates to serve. nil: a new CA and certificates
	// are made, in the server's directory (for a cluster, one set in a
	// directory of its own, shared by every node).
	Files *TLSFiles
}

// WithTLS makes the server serve TLS on [Server.Port] (tls-port), with a
// server certificate for 127.0.0.1 and localhost signed by a throwaway CA
// (tls-cert-file, tls-key-file, tls-ca-cert-file), and speak TLS to its
// replicas (tls-replication yes) and, in a cluster, on the cluster bus
// (tls-cluster yes). Clients made by kvtest, and URLs ([Server.URL]:
// rediss:// or valkeys:// with tls_ca, and tls_cert and tls_key when the
// server requires client certificates), trust the CA and present the
// client certificate.
//
// A server built without TLS support skips the test with a message saying
// so, or fails it when CI=true, as [Require] does for a missing engine.
func WithTLS(o TLSOptions) Option {
	return func(c *config) { c.tls = &o }
}

// TLSFiles are PEM files of a throwaway CA and of a server and a client
// certificate it signed, made by [NewTLSFiles].
type TLSFiles struct {
	// Dir holds the files.
	Dir string
	// CA is the CA certificate (tls-ca-cert-file; tls_ca in URLs).
	CA string
	// ServerCert and ServerKey are the server's certificate and key, for
	// 127.0.0.1, ::1 and localhost. The certificate is valid for client
	// authentication too: servers present it to each other on the cluster
	// bus and for replication.
	ServerCert, ServerKey string
	// ClientCert and ClientKey are a client certificate and its key
	// (tls_cert and tls_key in URLs).
	ClientCert, ClientKey string
}

// Files names of the certificates in [TLSFiles.Dir].
const (
	caFile         = "ca.pem"
	serverCertFile = "server.pem"
	serverKeyFile  = "server-key.pem"
	clientCertFile = "client.pem"
	clientKeyFile  = "client-key.pem"
)

// certLifetime is how long the certificates are valid, from an hour ago
// (tolerating a clock a little behind).
const certLifetime = 48 * time.Hour

// NewTLSFiles makes a new CA, and a server and a client certificate signed
// by it (ECDSA P-256), and writes them as PEM files into dir. The test fails
// if they cannot be made.
func NewTLSFiles(t testing.TB, dir string) *TLSFiles {
	t.Helper()
	f, err := newTLSFiles(dir)
	if err != nil {
		t.Fatalf("kvtest: make TLS certificates in %s: %v", dir, err)
	}
	return f
}

func newTLSFiles(dir string) (*TLSFiles, error) {
	f := &TLSFiles{
		Dir:        dir,
		CA:         filepath.Join(dir, caFile),
		ServerCert: filepath.Join(dir, serverCertFile),
		ServerKey:  filepath.Join(dir, serverKeyFile),
		ClientCert: filepath.Join(dir, clientCertFile),
		ClientKey:  filepath.Join(dir, clientKeyFile),
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "kvtest throwaway CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := signCert(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	if err := writePEM(f.CA, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	leaves := []struct {
		name           string
		usage          []x509.ExtKeyUsage
		hosts          bool
		certPath, path string
	}{
		{"kvtest server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, true, f.ServerCert, f.ServerKey},
		{"kvtest client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, false, f.ClientCert, f.ClientKey},
	}
	for _, l := range leaves {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			Subject:     pkix.Name{CommonName: l.name},
			NotBefore:   now.Add(-time.Hour),
			NotAfter:    now.Add(certLifetime),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: l.usage,
		}
		if l.hosts {
			tmpl.DNSNames = []string{"localhost"}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		}
		der, err := signCert(tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, fmt.Errorf("%s certificate: %w", l.name, err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := writePEM(l.certPath, "CERTIFICATE", der); err != nil {
			return nil, err
		}
		if err := writePEM(l.path, "PRIVATE KEY", keyDER); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// signCert signs tmpl with a random 128-bit serial number.
func signCert(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// ClientConfig returns a TLS client configuration that trusts the CA and
// presents the client certificate. The server name is left empty: Go's
// dialers set it from the address dialed.
func (f *TLSFiles) ClientConfig() (*tls.Config, error) {
	pemCA, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCA) {
		return nil, fmt.Errorf("%s holds no PEM certificate", f.CA)
	}
	cert, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// cliArgs are the CLI's options to connect over TLS with the client
// certificate.
func (f *TLSFiles) cliArgs() []string {
	return []string{"--tls", "--cacert", f.CA, "--cert", f.ClientCert, "--key", f.ClientKey}
}

// urlQuery returns the URL query options of the endpoint package for these
// files: tls_ca, then tls_cert and tls_key if clientCert.
func (f *TLSFiles) urlQuery(clientCert bool) []string {
	q := []string{"tls_ca=" + escapeQueryValue(f.CA)}
	if clientCert {
		q = append(q, "tls_cert="+escapeQueryValue(f.ClientCert), "tls_key="+escapeQueryValue(f.ClientKey))
	}
	return q
}

// escapeQueryValue query-escapes v, keeping '/' readable in paths.
func escapeQueryValue(v string) string {
	return strings.ReplaceAll(url.QueryEscape(v), "%2F", "/")
}

// pingTLS is ping over TLS with conf.
func pingTLS(addr string, conf *tls.Config) error {
	d := &net.Dialer{Timeout: 500 * time.Millisecond}
	conn, err := tls.DialWithDialer(d, "tcp", addr, conf)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	return pingReply(reply)
}

// errNoTLS reports a server binary built without TLS support.
var errNoTLS = errors.New("the server was built without TLS support")

// noTLSSupport reports whether what a server wrote before it exited says it
// cannot serve TLS: its configuration parser does not know the tls-*
// directives (built without TLS), or the TLS connection type is missing
// (TLS built as a module that is not loaded).
func noTLSSupport(output []byte) bool {
	s := strings.ToLower(string(output))
	return strings.Contains(s, "bad directive") && strings.Contains(s, ">>> 'tls-") ||
		strings.Contains(s, "connection listener of tls") ||
		strings.Contains(s, "tls is not supported") ||
		strings.Contains(s, "built without tls")
}
