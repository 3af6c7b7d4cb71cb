package analysis

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/transfer"
)

// bigString: strings longer than this are streamed through a temporary
// key by the copy (transfer's inlineMax).
const bigString = 16 << 10

// preflightJob names the temporary keys of the pre-flight when the
// analysis has no job ID: the ACL patterns that matter see the prefix.
const preflightJob = "preflight"

// aclCheck is one command of the copy to check with ACL DRYRUN.
type aclCheck struct {
	name string   // "XGROUP CREATE"
	args []string // the command and its arguments
	key  string   // the key it names (a temporary key when temp)
	temp bool
	need string
}

// typeKey is a sampled key of one type and the shard it came from.
type typeKey struct {
	key, node string
	db        int
}

// preflight checks, with ACL DRYRUN and for each side's own user, the
// commands a migration would send: on a sampled key of each type present
// and on a temporary key named as the copy names them. DRYRUN runs
// nothing. A user that may not run ACL WHOAMI or ACL DRYRUN (or a server
// without them) leaves the side unchecked, with a note.
func (a *analyzer) preflight(ctx context.Context, r *Report, plan []shardPlan, results []shardResult, s, d *sideData) error {
	keys := map[string]typeKey{}
	for i, p := range plan {
		for t, k := range results[i].typeKeys {
			if _, ok := keys[t]; !ok {
				keys[t] = typeKey{key: k, node: p.node, db: p.db}
			}
		}
	}
	src, dst := copyChecks(r, keys, a.opts.JobID)
	var err error
	if r.Source.Preflight, err = a.dryRun(ctx, s, a.srcLim, src); err != nil {
		return fmt.Errorf("analyze source %s: ACL pre-flight: %w", s.conn.Endpoint(), err)
	}
	if r.Target.Preflight, err = a.dryRun(ctx, d, a.dstLim, dst); err != nil {
		return fmt.Errorf("analyze target %s: ACL pre-flight: %w", d.conn.Endpoint(), err)
	}
	return nil
}

// copyChecks lists the commands the copy sends to the source and to the
// target for the keys of the sample (see internal/transfer: batch.go,
// small.go, types.go, stream.go), with arguments the server's key
// permissions can be checked on.
func copyChecks(r *Report, keys map[string]typeKey, jobID string) (src, dst []aclCheck) {
	if jobID == "" {
		jobID = preflightJob
	}
	add := func(list *[]aclCheck, need string, temp bool, key string, args ...string) {
		name := strings.ToUpper(args[0])
		if containers[strings.ToLower(args[0])] && len(args) > 1 {
			name += " " + strings.ToUpper(args[1])
		}
		*list = append(*list, aclCheck{name: name, args: args, key: key, temp: temp, need: need})
	}
	add(&src, NeedRequired, false, "", "SCAN", "0", "COUNT", "1000")
	if len(keys) == 0 {
		return src, nil
	}
	types := make([]string, 0, len(keys))
	for t := range keys {
		types = append(types, t)
	}
	sort.Strings(types)
	first := keys[types[0]]
	if k, ok := keys["string"]; ok {
		first = k
	}
	compound := false
	for _, t := range types {
		compound = compound || t != "string"
	}
	fast := compound && r.FastPath.Available
	fieldTTLs := r.HashFieldTTL.HashesWithTTL > 0 && r.HashFieldTTL.TargetSupported

	// The source: every key is probed with GETRANGE and PTTL, compound
	// ones are classified with TYPE and their length, then dumped or read.
	k := first.key
	add(&src, NeedRequired, false, k, "TYPE", k)
	add(&src, NeedRequired, false, k, "GETRANGE", k, "0", strconv.Itoa(bigString-1))
	add(&src, NeedRequired, false, k, "PTTL", k)
	if fast {
		add(&src, NeedFastPath, false, k, "DUMP", k)
	}
	for _, t := range types {
		k := keys[t].key
		switch t {
		case "hash":
			add(&src, NeedRequired, false, k, "HLEN", k)
			add(&src, NeedRequired, false, k, "HSCAN", k, "0", "COUNT", "1000")
			if fieldTTLs {
				add(&src, NeedRequired, false, k, "HPEXPIRETIME", k, "FIELDS", "1", "f")
			}
		case "list":
			add(&src, NeedRequired, false, k, "LLEN", k)
			add(&src, NeedRequired, false, k, "LRANGE", k, "0", "-1")
		case "set":
			add(&src, NeedRequired, false, k, "SCARD", k)
			add(&src, NeedRequired, false, k, "SMEMBERS", k)
			add(&src, NeedRequired, false, k, "SSCAN", k, "0", "COUNT", "1000")
		case "zset":
			add(&src, NeedRequired, false, k, "ZCARD", k)
			add(&src, NeedRequired, false, k, "ZRANGE", k, "0", "-1", "WITHSCORES")
			add(&src, NeedRequired, false, k, "ZSCAN", k, "0", "COUNT", "1000")
		case "stream":
			add(&src, NeedRequired, false, k, "XLEN", k)
			add(&src, NeedRequired, false, k, "XRANGE", k, "-", "+", "COUNT", "1000")
			add(&src, NeedRequired, false, k, "XINFO", "STREAM", k)
			add(&src, NeedRequired, false, k, "XINFO", "GROUPS", k)
			add(&src, NeedRequired, false, k, "XINFO", "CONSUMERS", k, "g")
			add(&src, NeedRequired, false, k, "XPENDING", k, "g", "-", "+", "1000")
		}
	}

	// The target: strings are written with SET PX; compound keys are
	// restored, written whole by a script (small ones) or streamed into a
	// temporary key that EVAL (or PEXPIRE then RENAME) moves into place.
	if dbs := copiedDBs(r); len(dbs) > 1 {
		add(&dst, NeedRequired, false, "", "SELECT", strconv.Itoa(dbs[len(dbs)-1]))
	}
	if s, ok := keys["string"]; ok {
		add(&dst, NeedRequired, false, s.key, "SET", s.key, "v", "PX", "1000")
	}
	add(&dst, NeedRequired, false, k, "DEL", k)
	if fast {
		add(&dst, NeedFastPath, false, k, "RESTORE", k, "0", "payload", "REPLACE")
	}
	finish := func(tmp, key string) {
		add(&dst, NeedRequired, true, tmp, "DEL", tmp)
		add(&dst, NeedAtomic, true, tmp, "EVALSHA", "0000000000000000000000000000000000000000", "2", tmp, key, "0", "0")
		add(&dst, NeedAtomic, true, tmp, "EVAL", "return 1", "2", tmp, key, "0", "0")
		add(&dst, NeedFallback, true, tmp, "PEXPIRE", tmp, "1000")
		add(&dst, NeedFallback, true, tmp, "RENAME", tmp, key)
	}
	for _, t := range types {
		e := keys[t]
		k := e.key
		tmp := transfer.TempKey(jobID, transfer.ShardTag(e.node, e.db), k)
		write := map[string][]string{"hash": {"HSET", "f", "v"}, "list": {"RPUSH", "v"}, "set": {"SADD", "m"}, "zset": {"ZADD", "1", "m"}}
		if w, ok := write[t]; ok {
			add(&dst, NeedRequired, false, k, append([]string{w[0], k}, w[1:]...)...)
			add(&dst, NeedRequired, true, tmp, append([]string{w[0], tmp}, w[1:]...)...)
		}
		switch t {
		case "string":
			continue // big strings below
		case "hash":
			if fieldTTLs {
				add(&dst, NeedRequired, true, tmp, "HPEXPIREAT", tmp, "4102444800000", "FIELDS", "1", "f")
			}
		case "stream":
			add(&dst, NeedRequired, true, tmp, "XADD", tmp, "*", "f", "v")
			add(&dst, NeedRequired, true, tmp, "XGROUP", "CREATE", tmp, "g", "0", "MKSTREAM")
			add(&dst, NeedRequired, true, tmp, "XSETID", tmp, "0-1")
			add(&dst, NeedRequired, true, tmp, "XCLAIM", tmp, "g", "c", "0", "0-1")
		}
		if coreTypes[t] {
			finish(tmp, k)
		}
	}
	for _, ki := range r.LargestKeys.ByMemory {
		if ki.Type == "string" && ki.Elements > bigString {
			tmp := transfer.TempKey(jobID, transfer.ShardTag(ki.Node, ki.DB), ki.Key)
			add(&dst, NeedRequired, true, tmp, "SET", tmp, "v")
			add(&dst, NeedRequired, true, tmp, "APPEND", tmp, "v")
			finish(tmp, ki.Key)
			break
		}
	}
	return src, dst
}

// dryRun asks ACL DRYRUN about checks for side's own user on every master:
// ACL users are per node, and a cluster whose nodes were set up apart may
// disagree. Denials are merged; one that only some masters make names
// them (Nodes). A master that cannot be checked leaves the side unchecked.
func (a *analyzer) dryRun(ctx context.Context, side *sideData, lim *limiter, checks []aclCheck) (*ACLPreflight, error) {
	var out *ACLPreflight
	index := map[string]int{} // command, key, need → index in out.Denied
	var denials [][]string    // the masters that made each denial
	masters := side.info.Masters
	for _, m := range masters {
		p, err := a.dryRunNode(ctx, side, m.Addr, lim, checks)
		if err != nil {
			return nil, err
		}
		if !p.Checked {
			if len(masters) > 1 {
				p.Note = m.Addr + ": " + p.Note
			}
			p.Denied = []ACLDenial{}
			return p, nil
		}
		if out == nil {
			out = &ACLPreflight{User: p.User, Checked: true, Commands: p.Commands, Denied: []ACLDenial{}}
		}
		for _, d := range p.Denied {
			id := d.Command + "\x00" + d.Key + "\x00" + d.Need
			i, seen := index[id]
			if !seen {
				i = len(out.Denied)
				index[id] = i
				out.Denied = append(out.Denied, d)
				denials = append(denials, nil)
			}
			denials[i] = append(denials[i], m.Addr)
		}
	}
	if out == nil {
		return &ACLPreflight{Denied: []ACLDenial{}, Note: "no master to check"}, nil
	}
	for i := range out.Denied {
		if len(denials[i]) < len(masters) {
			out.Denied[i].Nodes = denials[i]
		}
	}
	return out, nil
}

// dryRunNode asks ACL DRYRUN about checks for the user of side's
// connection to one master.
func (a *analyzer) dryRunNode(ctx context.Context, side *sideData, addr string, lim *limiter, checks []aclCheck) (*ACLPreflight, error) {
	out := &ACLPreflight{Denied: []ACLDenial{}}
	node, err := side.conn.Node(addr, 0)
	if err != nil {
		return nil, err
	}
	unchecked := func(what string, err error) (*ACLPreflight, error) {
		var verr *valkey.ValkeyError
		if !errors.As(err, &verr) {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out.Note = fmt.Sprintf("%s failed (%s)", what, endpoint.Redact(firstLine(verr.Error())))
		return out, nil
	}
	if err := lim.wait(ctx, 1); err != nil {
		return nil, err
	}
	user, err := node.Do(ctx, node.B().AclWhoami().Build()).ToString()
	if err != nil {
		return unchecked("ACL WHOAMI", err)
	}
	out.User = user
	cmds := make(valkey.Commands, len(checks))
	for i, c := range checks {
		cmds[i] = node.B().Arbitrary("ACL", "DRYRUN").Args(append([]string{user}, c.args...)...).Build()
	}
	if err := lim.wait(ctx, len(cmds)); err != nil {
		return nil, err
	}
	answered := 0
	var firstErr error
	for i, reply := range node.DoMulti(ctx, cmds...) {
		c := checks[i]
		msg, err := reply.ToString()
		if err != nil {
			var verr *valkey.ValkeyError
			if !errors.As(err, &verr) {
				return nil, fmt.Errorf("ACL DRYRUN %s: %w", c.name, err)
			}
			if isNoPerm(err) || isUnknownCommand(verr) {
				return unchecked("ACL DRYRUN", err) // the caller may not run it, or the server lacks it
			}
			// A command this server does not have, or arguments it reads
			// differently: that command is left unchecked.
			if firstErr == nil {
				firstErr = err
			}
			a.note("%s: ACL DRYRUN %s failed (%s); the pre-flight leaves it out", side.name, c.name, endpoint.Redact(firstLine(verr.Error())))
			continue
		}
		answered++
		if strings.EqualFold(msg, "OK") {
			continue
		}
		out.Denied = append(out.Denied, ACLDenial{Command: c.name, Key: c.key, TempKey: c.temp, Need: c.need, Reason: firstLine(msg)})
	}
	if answered == 0 && firstErr != nil {
		return unchecked("ACL DRYRUN", firstErr)
	}
	out.Checked, out.Commands = true, answered
	return out, nil
}

// isUnknownCommand: the server has no ACL DRYRUN (before Redis 7.0).
func isUnknownCommand(verr *valkey.ValkeyError) bool {
	s := strings.ToLower(verr.Error())
	return strings.Contains(s, "unknown subcommand") || strings.Contains(s, "unknown command")
}
