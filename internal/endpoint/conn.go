package endpoint

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"
)

// DefaultDialTimeout bounds connecting, including TLS and authentication.
const DefaultDialTimeout = 5 * time.Second

// How long a TLS handshake may go unanswered before Dial checks, on a
// second connection, whether the server speaks plain text instead; and how
// long that check, and the plain-text PING check, wait for an answer.
const (
	plainCheckAfter = 500 * time.Millisecond
	probeTimeout    = 2 * time.Second
)

// DialOption changes how Dial connects.
type DialOption func(*dialOptions)

type dialOptions struct {
	timeout      time.Duration
	writeTimeout time.Duration
}

// WithDialTimeout bounds connecting, TLS and authentication, per
// connection (default DefaultDialTimeout).
func WithDialTimeout(d time.Duration) DialOption {
	return func(o *dialOptions) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithWriteTimeout sets how long a connection may wait for replies before
// it is considered broken (valkey-go's ConnWriteTimeout; its default is 10s).
// Raise it when copying very large values.
func WithWriteTimeout(d time.Duration) DialOption {
	return func(o *dialOptions) {
		if d > 0 {
			o.writeTimeout = d
		}
	}
}

// Conn is a connection to one endpoint, standalone or cluster. It owns the
// valkey clients it hands out and closes them in Close. It is safe for
// concurrent use.
type Conn struct {
	e       Endpoint
	base    valkey.ClientOption
	cluster bool

	mu      sync.Mutex
	closed  bool
	clients map[int]valkey.Client     // per database; a cluster has only 0
	nodes   map[nodeKey]valkey.Client // single-node clients
}

type nodeKey struct {
	addr string
	db   int
}

// Dial connects to e, authenticates, and finds out whether it is a cluster
// (unless the URL said so with cluster=true|false). Errors wrap ErrAuth,
// ErrUnreachable, ErrTLS, ErrNoPermission, ErrClusterDB or ErrClusterMode,
// name the endpoint with its password redacted, and say what to check.
func Dial(ctx context.Context, e Endpoint, opts ...DialOption) (*Conn, error) {
	o := dialOptions{timeout: DefaultDialTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if e.Host == "" || e.Port == 0 {
		return nil, fmt.Errorf("dial: the endpoint has no host or port; build it with Parse: %w", ErrInvalidURL)
	}
	tlsConf, err := e.tlsConfig()
	if err != nil {
		return nil, err
	}
	// The preflight honours ctx; valkey-go's own connections are bounded
	// by the dial timeout (it dials without a context), now and on
	// reconnects later.
	wait := o.timeout
	if d, ok := ctx.Deadline(); ok {
		wait = max(min(wait, time.Until(d)), time.Millisecond)
	}
	if err := preflight(ctx, e, tlsConf, wait); err != nil {
		return nil, err
	}

	c := &Conn{
		e: e,
		base: valkey.ClientOption{
			Username:         e.Username,
			Password:         e.password,
			TLSConfig:        tlsConf,
			DisableCache:     true, // client-side caching is not for copying, and needs RESP3 tracking
			Dialer:           net.Dialer{Timeout: o.timeout},
			ConnWriteTimeout: o.writeTimeout,
		},
		clients: map[int]valkey.Client{},
		nodes:   map[nodeKey]valkey.Client{},
	}

	first, err := c.newSingle(e.Addr(), 0)
	if err != nil {
		return nil, err
	}
	c.cluster, err = detectCluster(ctx, e, first)
	if err != nil {
		first.Close()
		return nil, err
	}
	if !c.cluster {
		c.clients[0] = first
		if e.DB != 0 {
			if _, err := c.Client(e.DB); err != nil {
				c.Close()
				return nil, err
			}
		}
		return c, nil
	}

	if e.DB != 0 {
		first.Close()
		return nil, newError(ErrClusterDB, e, nil,
			"%s is a cluster, and a cluster has only database 0: remove /%d from the URL", e, e.DB)
	}
	opt := c.base
	opt.InitAddress = []string{e.Addr()}
	cl, err := valkey.NewClient(opt)
	if err != nil {
		first.Close()
		return nil, classify(e, err)
	}
	if cl.Mode() != valkey.ClientModeCluster {
		cl.Close()
		first.Close()
		return nil, newError(ErrClusterMode, e, nil, "%s reports cluster mode but the cluster client could not start: check CLUSTER SLOTS", e)
	}
	c.clients[0] = cl
	c.nodes[nodeKey{e.Addr(), 0}] = first
	return c, nil
}

// newSingle opens a client to exactly one node.
func (c *Conn) newSingle(addr string, db int) (valkey.Client, error) {
	opt := c.base
	opt.InitAddress = []string{addr}
	opt.ForceSingleClient = true
	opt.SelectDB = db
	cl, err := valkey.NewClient(opt)
	if err != nil {
		if cl != nil {
			cl.Close() // with ForceSingleClient, valkey-go returns a client even when dialing failed
		}
		ne := c.e.atAddr(addr)
		if verr, ok := valkey.IsValkeyErr(err); ok && db != 0 && strings.Contains(verr.Error(), "DB index") {
			return nil, fmt.Errorf("select database %d on %s: the server has fewer databases (see its databases setting): %w", db, ne, err)
		}
		return nil, classify(ne, err)
	}
	return cl, nil
}

// atAddr returns e pointed at another node (for messages about it).
func (e Endpoint) atAddr(addr string) Endpoint {
	if addr == e.Addr() {
		return e
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return e
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return e
	}
	e.Host, e.Port = host, p
	return e
}

// Endpoint returns the endpoint c was dialed with.
func (c *Conn) Endpoint() Endpoint { return c.e }

// Cluster reports whether the endpoint is a cluster: as the URL said, or
// as the server said when the URL did not.
func (c *Conn) Cluster() bool { return c.cluster }

// Client returns the routing client for database db: for a standalone
// server a client that has SELECTed db; for a cluster the cluster client,
// for db 0 only (other databases: ErrClusterDB). Clients are cached and
// owned by c: do not close them.
func (c *Conn) Client(db int) (valkey.Client, error) {
	if db < 0 {
		return nil, fmt.Errorf("database %d: must not be negative", db)
	}
	if c.cluster && db != 0 {
		return nil, newError(ErrClusterDB, c.e, nil, "database %d on %s: a cluster has only database 0", db, c.e)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("client for %s: %w", c.e, ErrClosed)
	}
	if cl, ok := c.clients[db]; ok {
		return cl, nil
	}
	cl, err := c.newSingle(c.e.Addr(), db)
	if err != nil {
		return nil, err
	}
	c.clients[db] = cl
	return cl, nil
}

// Node returns a client that talks to the node at addr only (no cluster
// redirections), with database db selected: for per-node work such as
// SCAN on one master. In a cluster db must be 0. Clients are cached per
// (addr, db) and owned by c: do not close them.
func (c *Conn) Node(addr string, db int) (valkey.Client, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("node address %q: want host:port: %w", addr, err)
	}
	if !c.cluster && addr == c.e.Addr() {
		return c.Client(db)
	}
	if db < 0 {
		return nil, fmt.Errorf("database %d: must not be negative", db)
	}
	if c.cluster && db != 0 {
		return nil, newError(ErrClusterDB, c.e.atAddr(addr), nil,
			"database %d on cluster node %s: a cluster has only database 0", db, addr)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("node %s: %w", addr, ErrClosed)
	}
	k := nodeKey{addr, db}
	if cl, ok := c.nodes[k]; ok {
		return cl, nil
	}
	cl, err := c.newSingle(addr, db)
	if err != nil {
		return nil, err
	}
	c.nodes[k] = cl
	return cl, nil
}

// Masters returns the addresses (host:port, sorted) of the masters: the
// endpoint itself when standalone; for a cluster the masters serving
// slots, as the cluster announces them (CLUSTER SHARDS, or CLUSTER SLOTS
// before Redis 7).
func (c *Conn) Masters(ctx context.Context) ([]string, error) {
	if !c.cluster {
		return []string{c.e.Addr()}, nil
	}
	cl, err := c.Client(0)
	if err != nil {
		return nil, err
	}
	addrs, err := c.shardsMasters(ctx, cl)
	if err != nil {
		if verr, ok := valkey.IsValkeyErr(err); !ok || strings.HasPrefix(verr.Error(), "NOPERM") {
			return nil, c.commandError("CLUSTER SHARDS", err)
		}
		// Redis before 7.0 has no CLUSTER SHARDS.
		if addrs, err = c.slotsMasters(ctx, cl); err != nil {
			return nil, c.commandError("CLUSTER SLOTS", err)
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("list masters of %s: no master serves any slot; is the cluster set up (cluster_state:ok)?", c.e)
	}
	slices.Sort(addrs)
	return slices.Compact(addrs), nil
}

func (c *Conn) commandError(cmd string, err error) error {
	if verr, ok := valkey.IsValkeyErr(err); ok && strings.HasPrefix(verr.Error(), "NOPERM") {
		return newError(ErrNoPermission, c.e, err, "%s on %s: permission denied: grant the user +%s", cmd, c.e,
			strings.ToLower(strings.ReplaceAll(cmd, " ", "|")))
	}
	return fmt.Errorf("%s on %s: %w", cmd, c.e, err)
}

func (c *Conn) shardsMasters(ctx context.Context, cl valkey.Client) ([]string, error) {
	shards, err := cl.Do(ctx, cl.B().ClusterShards().Build()).ToArray()
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, s := range shards {
		shard, err := s.AsMap()
		if err != nil {
			return nil, fmt.Errorf("CLUSTER SHARDS reply: %w", err)
		}
		slots := shard["slots"]
		if ranges, _ := slots.ToArray(); len(ranges) == 0 {
			continue
		}
		nodes := shard["nodes"]
		list, err := nodes.ToArray()
		if err != nil {
			return nil, fmt.Errorf("CLUSTER SHARDS reply: nodes: %w", err)
		}
		for _, n := range list {
			node, err := n.AsMap()
			if err != nil {
				return nil, fmt.Errorf("CLUSTER SHARDS reply: node: %w", err)
			}
			if str(node, "role") != "master" || str(node, "health") == "fail" {
				continue
			}
			port := num(node, "port")
			if tp := num(node, "tls-port"); tp > 0 && (c.e.TLS.Enabled || port == 0) {
				port = tp
			}
			host := str(node, "endpoint")
			if host == "" || host == "?" {
				host = str(node, "ip")
			}
			if host == "" || host == "?" {
				host = c.e.Host
			}
			addrs = append(addrs, net.JoinHostPort(host, strconv.FormatInt(port, 10)))
		}
	}
	return addrs, nil
}

func (c *Conn) slotsMasters(ctx context.Context, cl valkey.Client) ([]string, error) {
	ranges, err := cl.Do(ctx, cl.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, r := range ranges {
		parts, err := r.ToArray()
		if err != nil || len(parts) < 3 {
			return nil, fmt.Errorf("CLUSTER SLOTS reply: unexpected slot range")
		}
		master, err := parts[2].ToArray()
		if err != nil || len(master) < 2 {
			return nil, fmt.Errorf("CLUSTER SLOTS reply: unexpected node")
		}
		host, _ := master[0].ToString()
		port, err := master[1].AsInt64()
		if err != nil {
			return nil, fmt.Errorf("CLUSTER SLOTS reply: port: %w", err)
		}
		if host == "" || host == "?" {
			host = c.e.Host
		}
		addrs = append(addrs, net.JoinHostPort(host, strconv.FormatInt(port, 10)))
	}
	return addrs, nil
}

func str(m map[string]valkey.ValkeyMessage, k string) string {
	v, ok := m[k]
	if !ok {
		return ""
	}
	s, _ := v.ToString()
	return s
}

func num(m map[string]valkey.ValkeyMessage, k string) int64 {
	v, ok := m[k]
	if !ok {
		return 0
	}
	n, _ := v.AsInt64()
	return n
}

// Close closes every client c handed out. Later calls of Client and Node
// fail with ErrClosed.
func (c *Conn) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	for _, cl := range c.clients {
		cl.Close()
	}
	for _, cl := range c.nodes {
		cl.Close()
	}
	clear(c.clients)
	clear(c.nodes)
}

// detectCluster decides whether e is a cluster. cluster=false is taken at
// its word. Otherwise INFO cluster tells; if the user may not run INFO,
// CLUSTER SLOTS does (a standalone server refuses it).
func detectCluster(ctx context.Context, e Endpoint, cl valkey.Client) (bool, error) {
	if e.Cluster == ClusterOff {
		return false, nil
	}
	info, err := cl.Do(ctx, cl.B().Info().Section("cluster").Build()).ToString()
	if err == nil {
		on := strings.Contains(info, "cluster_enabled:1")
		if e.Cluster == ClusterOn && !on {
			return false, newError(ErrClusterMode, e, nil,
				"%s: the URL says cluster=true but the server is not in cluster mode (cluster_enabled:0): drop cluster=true", e)
		}
		return on, nil
	}
	if !isNoPerm(err) {
		return false, classify(e, err)
	}
	if e.Cluster == ClusterOn {
		return true, nil
	}
	err = cl.Do(ctx, cl.B().ClusterSlots().Build()).Error()
	if err == nil {
		return true, nil
	}
	if verr, ok := valkey.IsValkeyErr(err); ok && strings.Contains(strings.ToLower(verr.Error()), "cluster support disabled") {
		return false, nil
	}
	if isNoPerm(err) {
		return false, newError(ErrNoPermission, e, err,
			"cannot tell whether %s is a cluster: the user may run neither INFO nor CLUSTER SLOTS; add ?cluster=true or ?cluster=false to the URL, or grant +info", e)
	}
	return false, classify(e, err)
}

func isNoPerm(err error) bool {
	verr, ok := valkey.IsValkeyErr(err)
	return ok && strings.HasPrefix(verr.Error(), "NOPERM")
}

// tlsConfig builds the TLS configuration of e; nil for a plain endpoint.
// ServerName stays empty unless tls_server_name is given, so that every
// cluster node is verified against its own address.
func (e Endpoint) tlsConfig() (*tls.Config, error) {
	if !e.TLS.Enabled {
		return nil, nil
	}
	conf := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         e.TLS.ServerName,
		InsecureSkipVerify: e.TLS.InsecureSkipVerify, //nolint:gosec // only when the URL asks for tls_insecure=true
	}
	if e.TLS.CAFile != "" {
		pem, err := os.ReadFile(e.TLS.CAFile)
		if err != nil {
			return nil, newError(ErrTLS, e, err, "TLS for %s: cannot read tls_ca", e)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, newError(ErrTLS, e, nil, "TLS for %s: tls_ca %s holds no PEM certificate", e, e.TLS.CAFile)
		}
		conf.RootCAs = pool
	}
	if e.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(e.TLS.CertFile, e.TLS.KeyFile)
		if err != nil {
			return nil, newError(ErrTLS, e, err, "TLS for %s: cannot load tls_cert and tls_key", e)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// preflight opens one connection of its own before valkey-go does, to turn
// the failures valkey-go reports vaguely into clear errors: which network
// failure it was, and TLS spoken to a plain server (which waits silently)
// or plain text spoken to a TLS server (which hangs up).
func preflight(parent context.Context, e Endpoint, conf *tls.Config, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	// Probes after a failure get a fresh, short deadline of their own.
	probeWait := min(probeTimeout, timeout)
	probeCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(parent), probeWait)
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", e.Addr())
	if err != nil {
		return classify(e, err)
	}
	defer raw.Close()

	if conf == nil {
		return preflightPlain(e, raw, probeWait, probeCtx)
	}
	conf = conf.Clone()
	if conf.ServerName == "" {
		conf.ServerName = e.Host
	}
	tc := tls.Client(raw, conf)
	done := make(chan error, 1)
	go func() { done <- tc.HandshakeContext(ctx) }()
	checkedPlain := false
	select {
	case err = <-done:
	case <-time.After(plainCheckAfter):
		checkedPlain = true
		// A plain server reads a ClientHello as the start of an inline
		// command and waits for the rest: ask it in plain text.
		pctx, pcancel := probeCtx()
		plain := speaksPlainRESP(pctx, e.Addr())
		pcancel()
		if plain {
			cancel()
			<-done
			return plainServerError(e)
		}
		err = <-done
	}
	if err == nil {
		return preflightTLSSession(e, tc, probeWait)
	}
	if parent.Err() != nil {
		return fmt.Errorf("connect to %s: %w", e, parent.Err())
	}
	var record tls.RecordHeaderError
	if errors.As(err, &record) || isTimeout(err) && !checkedPlain {
		pctx, pcancel := probeCtx()
		plain := speaksPlainRESP(pctx, e.Addr())
		pcancel()
		if plain {
			return plainServerError(e)
		}
	}
	if isTimeout(err) {
		return newError(ErrTLS, e, err, "TLS handshake with %s got no answer: is %d a TLS port?", e, e.Port)
	}
	if terr := classifyTLS(e, err); terr != nil {
		return terr
	}
	return newError(ErrTLS, e, err, "TLS handshake with %s failed", e)
}

// preflightTLSSession sends PING over an established TLS session. With
// TLS 1.3 a server that wants a client certificate accepts the handshake
// and only then sends an alert and hangs up, so this is where it shows.
func preflightTLSSession(e Endpoint, tc *tls.Conn, wait time.Duration) error {
	_ = tc.SetDeadline(time.Now().Add(wait))
	_, err := tc.Write([]byte("PING\r\n"))
	buf := make([]byte, 64)
	n := 0
	if err == nil {
		n, err = tc.Read(buf)
	}
	switch {
	case n > 0 && isRESP(buf[0]):
		return nil
	case n > 0:
		return newError(ErrUnreachable, e, nil,
			"%s answered PING over TLS with %q, which is not Redis protocol: is this a Redis or Valkey port?", e, printable(buf[:n]))
	case isTimeout(err):
		return nil // slow; let the real connection decide
	}
	if terr := classifyTLS(e, err); terr != nil {
		return terr
	}
	if e.TLS.CertFile == "" {
		return newError(ErrTLS, e, err,
			"TLS: %s closed the connection after the handshake; it may require a client certificate: set ?tls_cert=/path/cert.pem&tls_key=/path/key.pem", e)
	}
	return newError(ErrTLS, e, err, "TLS: %s closed the connection after the handshake; it may not accept the client certificate", e)
}

func plainServerError(e Endpoint) error {
	return newError(ErrTLS, e, nil,
		"%s speaks plain text, not TLS: use %s:// instead of %s:// (or enable TLS on the server)", e, plainScheme(e.Scheme), e.Scheme)
}

// preflightPlain sends PING on raw. Any RESP reply (+PONG, -NOAUTH, ...)
// means a plain server. A hang-up or silence means perhaps a TLS server,
// which a TLS handshake on a second connection confirms.
func preflightPlain(e Endpoint, raw net.Conn, wait time.Duration, probeCtx func() (context.Context, context.CancelFunc)) error {
	_ = raw.SetDeadline(time.Now().Add(wait))
	if _, err := raw.Write([]byte("PING\r\n")); err != nil {
		return classify(e, err)
	}
	buf := make([]byte, 64)
	n, err := raw.Read(buf)
	if n > 0 && isRESP(buf[0]) {
		return nil
	}
	pctx, pcancel := probeCtx()
	defer pcancel()
	if speaksTLS(pctx, e) {
		return newError(ErrTLS, e, nil,
			"%s requires TLS: use %s:// instead of %s://", e, tlsScheme(e.Scheme), e.Scheme)
	}
	switch {
	case n > 0:
		return newError(ErrUnreachable, e, nil,
			"%s answered PING with %q, which is not Redis protocol: is this a Redis or Valkey port?", e, printable(buf[:n]))
	case isTimeout(err):
		// Slow, or not a Redis server; let the real connection decide.
		return nil
	}
	return classify(e, err)
}

// speaksPlainRESP reports whether addr answers PING in plain text within
// ctx's deadline (probeTimeout if it has none).
func speaksPlainRESP(ctx context.Context, addr string) bool {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, probeTimeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	b := make([]byte, 1)
	n, _ := conn.Read(b)
	return n == 1 && isRESP(b[0])
}

// speaksTLS reports whether e's address completes a TLS handshake (or
// answers with a TLS alert), without verifying the certificate.
func speaksTLS(ctx context.Context, e Endpoint) bool {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, probeTimeout)
		defer cancel()
	}
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, ServerName: e.Host}} //nolint:gosec // probe only, no data sent
	conn, err := d.DialContext(ctx, "tcp", e.Addr())
	if err == nil {
		conn.Close()
		return true
	}
	_, alert := tlsAlert(err)
	return alert
}

func isRESP(b byte) bool { return strings.IndexByte("+-:$*%_,#!=(|~>", b) >= 0 }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func printable(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return '.'
		}
		return r
	}, string(b))
	if len(s) > 32 {
		s = s[:32] + "..."
	}
	return s
}
