package analysis

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/topology"
)

// sideData is what the analysis learnt of one deployment.
type sideData struct {
	name string // "source" or "target"
	conn Conn
	info topology.Info
	side Side
	// expires: master → database → keys with a TTL (INFO keyspace).
	expires map[string]map[int]int64
	// subexpiry: hashes with field TTLs (INFO keyspace, Redis 7.4+);
	// -1 when no master reported it.
	subexpiry int64
	// dataBytes sums the masters' MEMORY STATS keyspace memory (0:
	// unknown); dataByNode has each master's.
	dataBytes  int64
	dataByNode map[string]int64
}

// discover describes the deployment behind c. topology.Discover needs
// INFO; when the user may not run it, a reduced discovery (HELLO, DBSIZE,
// COMMAND INFO) takes over and the denial becomes a finding.
func (a *analyzer) discover(ctx context.Context, name string, c Conn) (*sideData, error) {
	d := &sideData{name: name, conn: c, subexpiry: -1, expires: map[string]map[int]int64{}, dataByNode: map[string]int64{}}
	info, err := topology.Discover(ctx, c)
	if err != nil {
		if !isNoPerm(err) {
			return nil, err
		}
		a.deny(name, deniedCommand(err, "INFO"))
		if info, err = a.limitedDiscover(ctx, name, c); err != nil {
			return nil, err
		}
	}
	d.info = info
	d.side = Side{
		Endpoint:        c.Endpoint().String(),
		Engine:          info.Engine,
		Version:         info.Version,
		Cluster:         info.Cluster,
		RDBVersion:      info.RDBVersion,
		RDBVersionFrom:  info.RDBVersionFrom,
		RDBRelaxed:      info.RDBRelaxed,
		HashFieldTTL:    info.HashFieldTTL,
		MaxMemoryPolicy: info.MaxMemoryPolicy,
	}

	allHaveMax := true
	for _, m := range info.Masters {
		node, err := c.Node(m.Addr, 0)
		if err != nil {
			return nil, err
		}
		master := Master{Addr: m.Addr, Slots: m.Slots, Replicas: m.Replicas}
		for _, r := range m.Slots {
			master.SlotCount += r[1] - r[0] + 1
		}
		for _, n := range m.Keyspace {
			master.Keys += n
		}
		if !a.isDenied(name, "INFO") {
			ks, err := infoSection(ctx, node, "keyspace")
			if ok, fatal := a.optional(name, "INFO", err); fatal != nil {
				return nil, fatal
			} else if ok {
				exp, sub, hasSub := parseKeyspaceExtras(ks)
				d.expires[m.Addr] = exp
				if hasSub {
					d.subexpiry = max(d.subexpiry, 0) + sub
				}
			}
			mem, err := infoSection(ctx, node, "memory")
			if ok, fatal := a.optional(name, "INFO", err); fatal != nil {
				return nil, fatal
			} else if ok {
				master.UsedMemory, _ = strconv.ParseInt(mem["used_memory"], 10, 64)
				master.MaxMemory, _ = strconv.ParseInt(mem["maxmemory"], 10, 64)
				if p := mem["maxmemory_policy"]; p != "" && d.side.MaxMemoryPolicy == "" {
					d.side.MaxMemoryPolicy = p
				}
			}
		}
		if name == "source" && !a.isDenied(name, "MEMORY STATS") {
			n, err := memoryStats(ctx, node)
			if ok, fatal := a.optional(name, "MEMORY STATS", err); fatal != nil {
				return nil, fatal
			} else if ok {
				d.dataBytes += n
				d.dataByNode[m.Addr] = n
			}
		}
		if master.MaxMemory == 0 && len(info.Masters) == 1 {
			master.MaxMemory = info.MaxMemory // from CONFIG GET
		}
		allHaveMax = allHaveMax && master.MaxMemory > 0
		d.side.UsedMemory += master.UsedMemory
		d.side.MaxMemory += master.MaxMemory
		d.side.Masters = append(d.side.Masters, master)
	}
	if !allHaveMax {
		d.side.MaxMemory = 0
	}
	for _, db := range info.Databases() {
		var exp int64
		for _, e := range d.expires {
			exp += e[db]
		}
		d.side.Databases = append(d.side.Databases, Database{DB: db, Keys: info.Keyspace[db], Expires: exp})
		d.side.Keys += info.Keyspace[db]
	}
	if d.side.Databases == nil {
		d.side.Databases = []Database{}
	}

	first, err := c.Node(info.Masters[0].Addr, 0)
	if err != nil {
		return nil, err
	}
	if err := a.readConfig(ctx, d, first); err != nil {
		return nil, err
	}
	if d.side.Modules, err = a.modules(ctx, name, first); err != nil {
		return nil, err
	}
	users, err := first.Do(ctx, first.B().AclUsers().Build()).AsStrSlice()
	if ok, fatal := a.optional(name, "ACL USERS", err); fatal != nil {
		return nil, fatal
	} else if ok {
		sort.Strings(users)
		d.side.Users = users
	}
	return d, nil
}

// readConfig reads the save, appendonly and databases settings.
func (a *analyzer) readConfig(ctx context.Context, d *sideData, first valkey.Client) error {
	cfg, err := first.Do(ctx, first.B().ConfigGet().Parameter("save", "appendonly", "databases").Build()).AsStrMap()
	ok, fatal := a.optional(d.name, "CONFIG GET", err)
	if fatal != nil || !ok {
		return fatal
	}
	if save, has := cfg["save"]; has {
		d.side.Persistence = &Persistence{RDBSave: strings.TrimSpace(save), AOF: strings.EqualFold(cfg["appendonly"], "yes")}
	}
	d.side.DatabasesConfigured, _ = strconv.Atoi(cfg["databases"])
	return nil
}

// modules lists the loaded modules with MODULE LIST, or INFO modules when
// MODULE LIST is denied. nil: unknown.
func (a *analyzer) modules(ctx context.Context, side string, c valkey.Client) ([]Module, error) {
	reply, err := c.Do(ctx, c.B().ModuleList().Build()).ToArray()
	ok, fatal := a.optional(side, "MODULE LIST", err)
	if fatal != nil {
		return nil, fatal
	}
	if ok {
		return parseModuleList(reply)
	}
	if a.isDenied(side, "INFO") {
		return nil, nil
	}
	info, err := c.Do(ctx, c.B().Info().Section("modules").Build()).ToString()
	if ok, fatal := a.optional(side, "INFO", err); fatal != nil || !ok {
		return nil, fatal
	}
	return parseInfoModules(info), nil
}

// parseModuleList reads a MODULE LIST reply: one map (RESP3) or flat
// name/value array (RESP2) per module with "name" and "ver".
func parseModuleList(reply []valkey.ValkeyMessage) ([]Module, error) {
	out := []Module{}
	for _, m := range reply {
		fields, err := m.AsMap()
		if err != nil {
			return nil, fmt.Errorf("MODULE LIST: unexpected reply: %w", err)
		}
		nameMsg, verMsg := fields["name"], fields["ver"]
		name, err := nameMsg.ToString()
		if err != nil {
			return nil, fmt.Errorf("MODULE LIST: module without a name: %w", err)
		}
		ver, _ := verMsg.AsInt64()
		m := Module{Name: name, Version: ver}
		if pathMsg, ok := fields["path"]; ok {
			path, _ := pathMsg.ToString()
			m.BuiltIn = path == ""
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// parseInfoModules reads the "module:name=ft,ver=10200,api=1,..." lines
// of INFO modules.
func parseInfoModules(info string) []Module {
	out := []Module{}
	for line := range strings.SplitSeq(info, "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "module:")
		if !ok {
			continue
		}
		var m Module
		for part := range strings.SplitSeq(v, ",") {
			key, val, _ := strings.Cut(part, "=")
			switch key {
			case "name":
				m.Name = val
			case "ver":
				m.Version, _ = strconv.ParseInt(val, 10, 64)
			}
		}
		if m.Name != "" {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// parseKeyspaceExtras reads expires= and subexpiry= from INFO keyspace
// ("db0:keys=2,expires=1,avg_ttl=0,subexpiry=1").
func parseKeyspaceExtras(ks map[string]string) (expires map[int]int64, subexpiry int64, hasSub bool) {
	expires = map[int]int64{}
	for k, v := range ks {
		db, err := strconv.Atoi(strings.TrimPrefix(k, "db"))
		if err != nil || !strings.HasPrefix(k, "db") {
			continue
		}
		for part := range strings.SplitSeq(v, ",") {
			key, val, _ := strings.Cut(part, "=")
			n, _ := strconv.ParseInt(val, 10, 64)
			switch key {
			case "expires":
				expires[db] = n
			case "subexpiry":
				subexpiry += n
				hasSub = true
			}
		}
	}
	return expires, subexpiry, hasSub
}

// limitedDiscover describes a deployment without INFO: the engine and
// version from HELLO, key counts from DBSIZE per database, hash field TTL
// support from COMMAND INFO; the RDB version from the engine's version.
func (a *analyzer) limitedDiscover(ctx context.Context, side string, c Conn) (topology.Info, error) {
	masters, err := c.Masters(ctx)
	if err != nil {
		return topology.Info{}, fmt.Errorf("list masters: %w", err)
	}
	if len(masters) == 0 {
		return topology.Info{}, errors.New("list masters: the server reported no master node")
	}
	info := topology.Info{Cluster: c.Cluster(), Keyspace: map[int]int64{}}
	first, err := c.Node(masters[0], 0)
	if err != nil {
		return info, err
	}
	hello, err := first.Do(ctx, first.B().Hello().Build()).AsMap()
	if ok, fatal := a.optional(side, "HELLO", err); fatal != nil {
		return info, fatal
	} else if ok {
		serverMsg, versionMsg := hello["server"], hello["version"]
		server, _ := serverMsg.ToString()
		info.Version, _ = versionMsg.ToString()
		info.Engine = topology.Redis
		if strings.EqualFold(server, topology.Valkey) {
			info.Engine = topology.Valkey
		}
	} else {
		a.note("%s: the engine and version are unknown (neither INFO nor HELLO may be run)", side)
	}

	dbs := []int{0}
	if !info.Cluster {
		n := 16 // the default databases setting
		if v, ok := configValue(ctx, first, "databases"); ok {
			n, _ = strconv.Atoi(v)
		}
		for db := 1; db < n && db < 16; db++ {
			dbs = append(dbs, db)
		}
	}
	for _, addr := range masters {
		m := topology.Master{Addr: addr, Keyspace: map[int]int64{}}
		for _, db := range dbs {
			node, err := c.Node(addr, db)
			if err != nil {
				if isNoPerm(err) {
					a.deny(side, "SELECT")
					break
				}
				var verr *valkey.ValkeyError
				if db > 0 && errors.As(err, &verr) {
					break // fewer databases than probed
				}
				return info, err
			}
			n, err := node.Do(ctx, node.B().Dbsize().Build()).AsInt64()
			if ok, fatal := a.optional(side, "DBSIZE", err); fatal != nil {
				return info, fatal
			} else if ok && n > 0 {
				m.Keyspace[db] = n
				info.Keyspace[db] += n
			}
		}
		info.Masters = append(info.Masters, m)
	}
	info.HashFieldTTL = a.hasCommand(ctx, side, first, "hpexpiretime") && a.hasCommand(ctx, side, first, "hpexpireat")
	info.RDBVersion, info.RDBVersionFrom = topology.MaxRDBVersion(info.Engine, info.Version), "version"
	if v, ok := configValue(ctx, first, "maxmemory"); ok {
		info.MaxMemory, _ = strconv.ParseInt(v, 10, 64)
	}
	info.MaxMemoryPolicy, _ = configValue(ctx, first, "maxmemory-policy")
	return info, nil
}

// hasCommand asks COMMAND INFO whether the server knows a command.
func (a *analyzer) hasCommand(ctx context.Context, side string, c valkey.Client, name string) bool {
	rows, err := c.Do(ctx, c.B().CommandInfo().CommandName(name).Build()).ToArray()
	if ok, _ := a.optional(side, "COMMAND INFO", err); !ok || len(rows) == 0 {
		return false
	}
	return !rows[0].IsNil()
}

func (a *analyzer) isDenied(side, command string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.deniedBy[side] {
		if c == command {
			return true
		}
	}
	return false
}

func configValue(ctx context.Context, c valkey.Client, name string) (string, bool) {
	m, err := c.Do(ctx, c.B().ConfigGet().Parameter(name).Build()).AsStrMap()
	if err != nil {
		return "", false
	}
	v, ok := m[name]
	return v, ok
}

func infoSection(ctx context.Context, c valkey.Client, section string) (map[string]string, error) {
	s, err := c.Do(ctx, c.B().Info().Section(section).Build()).ToString()
	if err != nil {
		return nil, err
	}
	return topology.ParseInfo(s), nil
}

var nopermCommand = regexp.MustCompile(`run the '([^']+)' command`)

// deniedCommand names the command of a NOPERM error ("INFO", "CONFIG
// GET"), or fallback.
func deniedCommand(err error, fallback string) string {
	if m := nopermCommand.FindStringSubmatch(err.Error()); m != nil {
		return strings.ToUpper(strings.ReplaceAll(m[1], "|", " "))
	}
	return fallback
}

// memoryStats returns the memory a server's keyspace takes by its own
// accounting: MEMORY STATS total.allocated less what is not data
// (startup, replication backlog, client buffers, cluster links, AOF
// buffer, script caches).
func memoryStats(ctx context.Context, c valkey.Client) (int64, error) {
	stats, err := c.Do(ctx, c.B().MemoryStats().Build()).AsMap()
	if err != nil {
		return 0, err
	}
	get := func(k string) int64 {
		m, ok := stats[k]
		if !ok {
			return 0
		}
		if n, err := m.AsInt64(); err == nil {
			return n
		}
		f, _ := m.AsFloat64()
		return int64(f)
	}
	data := get("total.allocated")
	for _, k := range []string{"startup.allocated", "replication.backlog", "clients.slaves", "clients.normal",
		"cluster.links", "aof.buffer", "lua.caches", "functions.caches"} {
		data -= get(k)
	}
	return max(data, 0), nil
}
