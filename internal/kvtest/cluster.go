package kvtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
)

const (
	clusterSlots       = 16384
	clusterCreateLimit = 60 * time.Second
	clusterReadyLimit  = 30 * time.Second
)

// Cluster is a cluster of master-only servers started by [StartCluster].
type Cluster struct {
	// Engine is the engine all nodes run.
	Engine Engine
	// Nodes are the masters, in the order they were given to the cluster
	// creation (each holds about an equal share of the slots).
	Nodes []*Server
	// Password is the default user's password, "" for none.
	Password string
	// TLS holds the certificate files all nodes share when the cluster
	// was started [WithTLS]; nil for a plain-text cluster.
	TLS *TLSFiles
	// ClientAuth is true when the nodes require client certificates.
	ClientAuth bool
}

// StartCluster starts masters (at least 3) servers of engine e in cluster
// mode (cluster-enabled yes, cluster-node-timeout 5000, no replicas) with the
// given options, creates the cluster with the engine's CLI
// (`--cluster create ... --cluster-replicas 0 --cluster-yes`), and waits until
// every node reports cluster_state:ok and its CLUSTER SLOTS covers all 16384
// slots. The nodes are stopped when the test ends.
//
// [WithTLS] makes every node serve TLS with one shared set of certificates
// (made in a directory of the cluster's unless [TLSOptions].Files is set)
// and talk TLS on the cluster bus (tls-cluster yes); the CLI creates the
// cluster over TLS with the client certificate.
func StartCluster(t testing.TB, e Engine, masters int, opts ...Option) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("kvtest: a cluster needs at least 3 masters, got %d", masters)
	}
	var cfg config
	for _, opt := range opts {
		opt(&cfg)
	}
	c := &Cluster{Engine: e, Password: cfg.password}
	opts = append(opts[:len(opts):len(opts)], withCluster())
	if cfg.tls != nil {
		shared := *cfg.tls
		if shared.Files == nil {
			shared.Files = NewTLSFiles(t, t.TempDir())
		}
		c.TLS, c.ClientAuth = shared.Files, shared.ClientAuth
		opts = append(opts, WithTLS(shared))
	}
	for range masters {
		c.Nodes = append(c.Nodes, StartServer(t, e, opts...))
	}
	var args []string
	if c.TLS != nil {
		args = append(args, c.TLS.cliArgs()...)
	}
	args = append(args, "--cluster", "create")
	for _, n := range c.Nodes {
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterCreateLimit)
	defer cancel()
	cli := exec.CommandContext(ctx, e.CLIBin, args...)
	cli.SysProcAttr = sysProcAttr()
	if c.Password != "" {
		// From the environment, not -a: no password in the process list.
		cli.Env = append(os.Environ(), "REDISCLI_AUTH="+c.Password, "VALKEYCLI_AUTH="+c.Password)
	}
	if out, err := cli.CombinedOutput(); err != nil {
		t.Fatalf("kvtest: %s --cluster create: %v\n%s", e.CLIBin, err, out)
	}
	if err := c.waitReady(); err != nil {
		t.Fatalf("kvtest: %s cluster on %s: %v", e.Name, strings.Join(c.addrs(), ", "), err)
	}
	return c
}

// URL returns the first node's URL with cluster=true, e.g.
// "valkey://:pw@127.0.0.1:port?cluster=true", or with TLS
// "valkeys://:pw@127.0.0.1:port?cluster=true&tls_ca=/dir/ca.pem".
func (c *Cluster) URL() string {
	return c.Nodes[0].urlWith("cluster=true")
}

// Client returns a valkey-go cluster client (no client-side cache) seeded
// with every node, authenticated when the cluster has a password, over TLS
// when it serves TLS. It is closed when the test ends.
func (c *Cluster) Client(t testing.TB) valkey.Client {
	t.Helper()
	cl, err := valkey.NewClient(valkey.ClientOption{
		InitAddress:  c.addrs(),
		Password:     c.Password,
		DisableCache: true,
		TLSConfig:    c.Nodes[0].clientTLS,
	})
	if err != nil {
		t.Fatalf("kvtest: connect to %s cluster: %v", c.Engine.Name, err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func (c *Cluster) addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// waitReady polls every node until all agree the cluster is healthy.
func (c *Cluster) waitReady() error {
	clients := make([]valkey.Client, len(c.Nodes))
	for i, n := range c.Nodes {
		cl, err := n.newClient("", n.Password)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", n.Addr(), err)
		}
		defer cl.Close()
		clients[i] = cl
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterReadyLimit)
	defer cancel()
	for {
		err := clusterHealthy(ctx, c.Nodes, clients)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", clusterReadyLimit, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func clusterHealthy(ctx context.Context, nodes []*Server, clients []valkey.Client) error {
	for i, cl := range clients {
		info, err := cl.Do(ctx, cl.B().ClusterInfo().Build()).ToString()
		if err != nil {
			return fmt.Errorf("%s: CLUSTER INFO: %w", nodes[i].Addr(), err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state is not ok", nodes[i].Addr())
		}
		ranges, err := cl.Do(ctx, cl.B().ClusterSlots().Build()).ToArray()
		if err != nil {
			return fmt.Errorf("%s: CLUSTER SLOTS: %w", nodes[i].Addr(), err)
		}
		var covered [clusterSlots]bool
		n := 0
		for _, r := range ranges {
			fields, err := r.ToArray()
			if err != nil || len(fields) < 3 {
				return fmt.Errorf("%s: CLUSTER SLOTS: unexpected entry %v", nodes[i].Addr(), r)
			}
			start, err1 := fields[0].AsInt64()
			end, err2 := fields[1].AsInt64()
			if err1 != nil || err2 != nil || start < 0 || end >= clusterSlots || start > end {
				return fmt.Errorf("%s: CLUSTER SLOTS: bad range %v", nodes[i].Addr(), r)
			}
			for s := start; s <= end; s++ {
				if !covered[s] {
					covered[s] = true
					n++
				}
			}
		}
		if n != clusterSlots {
			return fmt.Errorf("%s: CLUSTER SLOTS covers %d of %d slots", nodes[i].Addr(), n, clusterSlots)
		}
	}
	return nil
}
