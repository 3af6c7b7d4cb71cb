// Package topology tells what a Redis or Valkey deployment is: engine and
// version, cluster or standalone, its masters and their slots, the databases
// in use, which RDB version its DUMP payloads carry and which it accepts.
package topology

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/valkey-io/valkey-go"
)

// Engine names.
const (
	Redis  = "redis"
	Valkey = "valkey"
)

// Conn is what Discover needs from a connection (endpoint.Conn has it).
type Conn interface {
	Cluster() bool
	Masters(ctx context.Context) ([]string, error)
	Node(addr string, db int) (valkey.Client, error)
}

// Master is one primary node.
type Master struct {
	Addr  string   `json:"addr"`
	Slots [][2]int `json:"slots,omitempty"` // inclusive ranges; empty when standalone
	// Keyspace maps database number to key count on this node.
	Keyspace map[int]int64 `json:"keyspace"`
	Replicas int           `json:"replicas"`
}

// Info describes one deployment.
type Info struct {
	Engine  string   `json:"engine"`  // "redis" or "valkey"
	Version string   `json:"version"` // e.g. "8.0.2"
	Cluster bool     `json:"cluster"`
	Masters []Master `json:"masters"`
	// Keyspace sums the masters' key counts per database.
	Keyspace map[int]int64 `json:"keyspace"`
	// RDBVersion is the RDB version of the DUMP payloads this server writes.
	RDBVersion int `json:"rdbVersion"`
	// RDBVersionFrom says how RDBVersion was learnt: "dump" (read from the
	// payload of an existing key) or "version" (from the engine version
	// when there was no key to dump or DUMP was denied).
	RDBVersionFrom string `json:"rdbVersionFrom"`
	// RDBRelaxed is true when the server runs with rdb-version-check relaxed
	// (Valkey 8.1+), which accepts newer payloads outside the foreign range.
	RDBRelaxed bool `json:"rdbRelaxed"`
	// HashFieldTTL is true when the server has per-field hash expiry
	// (HPEXPIRETIME/HPEXPIREAT), learnt from COMMAND INFO, not the version.
	HashFieldTTL bool `json:"hashFieldTTL"`
	// MaxMemory and MaxMemoryPolicy, as CONFIG GET reports them (0/"" when denied).
	MaxMemory       int64  `json:"maxMemory"`
	MaxMemoryPolicy string `json:"maxMemoryPolicy,omitempty"`
}

// Databases lists the databases holding keys, ascending.
func (i Info) Databases() []int {
	dbs := make([]int, 0, len(i.Keyspace))
	for db, n := range i.Keyspace {
		if n > 0 {
			dbs = append(dbs, db)
		}
	}
	sort.Ints(dbs)
	return dbs
}

// Keys is the total key count over every database and master.
func (i Info) Keys() int64 {
	var n int64
	for _, k := range i.Keyspace {
		n += k
	}
	return n
}

// String names the deployment for humans, e.g. "valkey 8.1.1 cluster (3 masters)".
func (i Info) String() string {
	if i.Cluster {
		return fmt.Sprintf("%s %s cluster (%d masters)", i.Engine, i.Version, len(i.Masters))
	}
	return fmt.Sprintf("%s %s standalone", i.Engine, i.Version)
}

// MaxRDBVersion is the newest RDB version the engine writes and accepts.
func MaxRDBVersion(engine, version string) int {
	major, minor := majorMinor(version)
	if engine == Valkey {
		if major >= 9 {
			return 80
		}
		return 11 // Valkey 7.2 .. 8.x
	}
	switch {
	case major > 7 || (major == 7 && minor >= 4):
		return 12
	case major == 7 && minor >= 2:
		return 11
	case major == 7:
		return 10
	default:
		return 9
	}
}

// Accepts reports whether RESTORE on this server takes a payload of RDB
// version v. Versions 12..79 are Redis 7.4+'s and 80+ Valkey 9's: each
// engine refuses the other's range whatever its own version. Within its own
// range a server takes up to its own version, or newer ones with
// rdb-version-check relaxed (Valkey 8.1+).
func (i Info) Accepts(v int) bool {
	foreign := (i.Engine == Valkey && v >= 12 && v < 80) || (i.Engine == Redis && v >= 80)
	if foreign {
		return false
	}
	return v <= MaxRDBVersion(i.Engine, i.Version) || i.RDBRelaxed
}

// PayloadRDBVersion reads the RDB version from a DUMP payload: the last ten
// bytes are a 2-byte little-endian version followed by a CRC64.
func PayloadRDBVersion(payload string) (int, error) {
	if len(payload) < 10 {
		return 0, fmt.Errorf("DUMP payload of %d bytes is too short to carry an RDB version", len(payload))
	}
	tail := payload[len(payload)-10:]
	return int(binary.LittleEndian.Uint16([]byte(tail[:2]))), nil
}

// Discover inspects the deployment behind c. It only reads: INFO, CLUSTER
// SLOTS, CONFIG GET, COMMAND INFO, SCAN and DUMP of one existing key.
func Discover(ctx context.Context, c Conn) (Info, error) {
	masters, err := c.Masters(ctx)
	if err != nil {
		return Info{}, fmt.Errorf("list masters: %w", err)
	}
	if len(masters) == 0 {
		return Info{}, errors.New("list masters: the server reported no master node")
	}
	first, err := c.Node(masters[0], 0)
	if err != nil {
		return Info{}, err
	}
	info := Info{Cluster: c.Cluster(), Keyspace: map[int]int64{}}
	server, err := infoSection(ctx, first, "server")
	if err != nil {
		return Info{}, fmt.Errorf("INFO server: %w", err)
	}
	info.Engine, info.Version = engineVersion(server)

	var slots map[string][][2]int
	if info.Cluster {
		if slots, err = clusterSlots(ctx, first); err != nil {
			return Info{}, fmt.Errorf("CLUSTER SLOTS: %w", err)
		}
	}
	for _, addr := range masters {
		node, err := c.Node(addr, 0)
		if err != nil {
			return Info{}, err
		}
		m := Master{Addr: addr, Slots: slots[addr], Keyspace: map[int]int64{}}
		ks, err := infoSection(ctx, node, "keyspace")
		if err != nil {
			return Info{}, fmt.Errorf("INFO keyspace on %s: %w", addr, err)
		}
		m.Keyspace = parseKeyspace(ks)
		for db, n := range m.Keyspace {
			info.Keyspace[db] += n
		}
		if repl, err := infoSection(ctx, node, "replication"); err == nil {
			m.Replicas, _ = strconv.Atoi(repl["connected_slaves"])
		}
		info.Masters = append(info.Masters, m)
	}

	info.HashFieldTTL = hasCommand(ctx, first, "hpexpiretime") && hasCommand(ctx, first, "hpexpireat")
	if v, ok := configGet(ctx, first, "rdb-version-check"); ok {
		info.RDBRelaxed = strings.EqualFold(v, "relaxed")
	}
	if v, ok := configGet(ctx, first, "maxmemory"); ok {
		info.MaxMemory, _ = strconv.ParseInt(v, 10, 64)
	}
	info.MaxMemoryPolicy, _ = configGet(ctx, first, "maxmemory-policy")

	info.RDBVersion, info.RDBVersionFrom = MaxRDBVersion(info.Engine, info.Version), "version"
	if v, ok := dumpVersion(ctx, c, info); ok {
		info.RDBVersion, info.RDBVersionFrom = v, "dump"
	}
	return info, nil
}

// dumpVersion reads the RDB version from DUMP of one existing key.
func dumpVersion(ctx context.Context, c Conn, info Info) (int, bool) {
	for _, m := range info.Masters {
		for _, db := range sortedDBs(m.Keyspace) {
			node, err := c.Node(m.Addr, db)
			if err != nil {
				continue
			}
			scan, err := node.Do(ctx, node.B().Scan().Cursor(0).Count(10).Build()).AsScanEntry()
			if err != nil || len(scan.Elements) == 0 {
				continue
			}
			payload, err := node.Do(ctx, node.B().Dump().Key(scan.Elements[0]).Build()).ToString()
			if err != nil {
				continue
			}
			if v, err := PayloadRDBVersion(payload); err == nil {
				return v, true
			}
		}
	}
	return 0, false
}

func sortedDBs(ks map[int]int64) []int {
	dbs := make([]int, 0, len(ks))
	for db := range ks {
		dbs = append(dbs, db)
	}
	sort.Ints(dbs)
	return dbs
}

func infoSection(ctx context.Context, c valkey.Client, section string) (map[string]string, error) {
	s, err := c.Do(ctx, c.B().Info().Section(section).Build()).ToString()
	if err != nil {
		return nil, err
	}
	return ParseInfo(s), nil
}

// ParseInfo turns an INFO reply into key/value pairs.
func ParseInfo(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = v
		}
	}
	return out
}

func engineVersion(server map[string]string) (engine, version string) {
	if v, ok := server["valkey_version"]; ok {
		return Valkey, v
	}
	if server["server_name"] == Valkey {
		return Valkey, server["redis_version"]
	}
	return Redis, server["redis_version"]
}

// parseKeyspace reads "db3:keys=12,expires=0,avg_ttl=0" lines.
func parseKeyspace(ks map[string]string) map[int]int64 {
	out := map[int]int64{}
	for k, v := range ks {
		db, err := strconv.Atoi(strings.TrimPrefix(k, "db"))
		if err != nil || !strings.HasPrefix(k, "db") {
			continue
		}
		for _, part := range strings.Split(v, ",") {
			if n, ok := strings.CutPrefix(part, "keys="); ok {
				out[db], _ = strconv.ParseInt(n, 10, 64)
			}
		}
	}
	return out
}

func majorMinor(version string) (int, int) {
	parts := strings.SplitN(version, ".", 3)
	major, _ := strconv.Atoi(parts[0])
	minor := 0
	if len(parts) > 1 {
		minor, _ = strconv.Atoi(parts[1])
	}
	return major, minor
}

// clusterSlots maps each master address to its slot ranges.
func clusterSlots(ctx context.Context, c valkey.Client) (map[string][][2]int, error) {
	rows, err := c.Do(ctx, c.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return nil, err
	}
	out := map[string][][2]int{}
	for _, row := range rows {
		f, err := row.ToArray()
		if err != nil || len(f) < 3 {
			continue
		}
		lo, _ := f[0].AsInt64()
		hi, _ := f[1].AsInt64()
		node, err := f[2].ToArray()
		if err != nil || len(node) < 2 {
			continue
		}
		host, _ := node[0].ToString()
		port, _ := node[1].AsInt64()
		addr := joinHostPort(host, port)
		out[addr] = append(out[addr], [2]int{int(lo), int(hi)})
	}
	for _, r := range out {
		sort.Slice(r, func(a, b int) bool { return r[a][0] < r[b][0] })
	}
	return out, nil
}

func joinHostPort(host string, port int64) string {
	if strings.Contains(host, ":") {
		return fmt.Sprintf("[%s]:%d", host, port)
	}
	return fmt.Sprintf("%s:%d", host, port)
}

// hasCommand asks COMMAND INFO whether the server knows a command.
func hasCommand(ctx context.Context, c valkey.Client, name string) bool {
	rows, err := c.Do(ctx, c.B().CommandInfo().CommandName(name).Build()).ToArray()
	if err != nil || len(rows) == 0 {
		return false
	}
	return !rows[0].IsNil()
}

func configGet(ctx context.Context, c valkey.Client, name string) (string, bool) {
	m, err := c.Do(ctx, c.B().ConfigGet().Parameter(name).Build()).AsStrMap()
	if err != nil {
		return "", false
	}
	v, ok := m[name]
	return v, ok
}
