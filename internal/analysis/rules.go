package analysis

import (
	"fmt"
	"sort"
	"strings"

	"github.com/kvmigrate/kvmigrate/internal/transfer"
)

// Memory thresholds of the eviction_risk finding: the data would fill at
// least this share of the target's free memory under an evicting policy.
const evictionRiskShare = 0.8

// coreTypes are the types the copy engine copies with type commands.
var coreTypes = map[string]bool{"string": true, "hash": true, "list": true, "set": true, "zset": true, "stream": true}

// Findings applies every rule to a report whose figures are filled in,
// most severe first. Each rule reads only the report, so a report read
// back from the store gives the same findings.
func Findings(r *Report) []Finding {
	var out []Finding
	for _, rule := range []func(*Report) []Finding{
		clusterTopology, typeDirection, hfe, modules, multiDB, maxMemoryPolicy, acl, persistence,
		rdbVersion, targetNotEmpty, memoryFit, permissions, aclPreflight, sampling,
	} {
		out = append(out, rule(r)...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Severity.rank() < out[j].Severity.rank() })
	if out == nil {
		out = []Finding{}
	}
	return out
}

func clusterTopology(r *Report) []Finding {
	s, t := r.Source, r.Target
	switch {
	case s.Cluster && !t.Cluster:
		return []Finding{{CategoryClusterTopology, Blocking,
			fmt.Sprintf("the source is a cluster (%d masters) and the target a standalone server: kvmigrate does not merge a cluster into one server; migrate to a cluster target", len(s.Masters)),
			map[string]any{"sourceMasters": len(s.Masters), "targetCluster": false}}}
	case !s.Cluster && t.Cluster:
		return []Finding{{CategoryClusterTopology, Warning,
			fmt.Sprintf("the source is standalone and the target a cluster (%d masters): keys are resharded by slot, so multi-key commands, transactions and scripts over keys without a common {hash tag} will fail with CROSSSLOT after the move", len(t.Masters)),
			map[string]any{"targetMasters": len(t.Masters), "sourceCluster": false}}}
	}
	return nil
}

func typeDirection(r *Report) []Finding {
	if r.Source.Engine == "valkey" && r.Target.Engine == "redis" {
		return []Finding{{CategoryTypeDirection, Blocking,
			fmt.Sprintf("Valkey %s → Redis %s: Valkey-specific features (commands, configuration, newer RDB encodings) may be lost or rejected; check the application against Redis, then force the migration",
				r.Source.Version, r.Target.Version),
			map[string]any{"sourceEngine": r.Source.Engine, "sourceVersion": r.Source.Version, "targetEngine": r.Target.Engine, "targetVersion": r.Target.Version}}}
	}
	return nil
}

func hfe(r *Report) []Finding {
	h := r.HashFieldTTL
	// The server's count is of every hash; with a filter, only the sample
	// says whether the copied hashes have field TTLs.
	server := h.ServerHashes > 0 && r.Filter == nil
	if h.HashesWithTTL == 0 && !server {
		return nil
	}
	data := map[string]any{"hashesWithTTL": h.HashesWithTTL, "fieldsWithTTL": h.FieldsWithTTL, "hashesSampled": h.HashesSampled, "serverHashes": h.ServerHashes}
	what := fmt.Sprintf("%d of %d sampled hashes have field TTLs", h.HashesWithTTL, h.HashesSampled)
	if server {
		what += fmt.Sprintf(" (the source counts %d such hashes)", h.ServerHashes)
	}
	if !h.TargetSupported {
		return []Finding{{CategoryHFE, Blocking,
			what + fmt.Sprintf("; %s %s has no hash field expiry (Redis 7.4+, Valkey 9.0+), so those fields would never expire there", r.Target.Engine, r.Target.Version),
			data}}
	}
	return []Finding{{CategoryHFE, Info, what + "; the target has hash field expiry: the field TTLs are carried (HPEXPIRETIME → HPEXPIREAT)", data}}
}

func modules(r *Report) []Finding {
	var out []Finding
	if r.Source.Modules != nil && r.Target.Modules != nil {
		out = append(out, moduleFindings(r.Source.Modules, r.Target.Modules)...)
	}
	var foreign []string
	for _, tc := range r.Types {
		if !coreTypes[tc.Type] {
			foreign = append(foreign, tc.Type)
		}
	}
	if len(foreign) > 0 {
		sev, how := Warning, "they are copied only with DUMP/RESTORE, which needs the module on the target"
		if !r.FastPath.Available {
			sev, how = Blocking, "they have no type commands and the target does not accept the source's DUMP payloads, so they cannot be copied"
		}
		out = append(out, Finding{CategoryModules, sev,
			fmt.Sprintf("the sample holds keys of module types (%s): %s", strings.Join(foreign, ", "), how),
			map[string]any{"types": foreign}})
	}
	return out
}

// moduleFindings gives one finding per source module that the target has
// not loaded: blocking for a loaded module; a warning for one built into
// the source's server (Redis 8's vectorset), whose data types, if any
// were sampled, get their own finding.
func moduleFindings(src, dst []Module) []Finding {
	have := map[string]bool{}
	for _, m := range dst {
		have[strings.ToLower(m.Name)] = true
	}
	var out []Finding
	for _, m := range src {
		if have[strings.ToLower(m.Name)] {
			continue
		}
		data := map[string]any{"module": m.Name, "version": m.Version, "builtIn": m.BuiltIn}
		if m.BuiltIn {
			out = append(out, Finding{CategoryModules, Warning,
				fmt.Sprintf("module %q (version %d) is built into the source's server and missing on the target: its commands will fail there, and keys of its types (if any) cannot be copied", m.Name, m.Version),
				data})
			continue
		}
		out = append(out, Finding{CategoryModules, Blocking,
			fmt.Sprintf("module %q (version %d) is loaded on the source but not on the target: its data types cannot be restored and its commands will fail there; load it on the target (loadmodule)", m.Name, m.Version),
			data})
	}
	return out
}

func multiDB(r *Report) []Finding {
	dbs := copiedDBs(r)
	var nonZero []int
	for _, db := range dbs {
		if db != 0 {
			nonZero = append(nonZero, db)
		}
	}
	data := map[string]any{"databases": dbs}
	switch {
	case r.Target.Cluster && len(nonZero) > 0:
		return []Finding{{CategoryMultiDB, Blocking,
			fmt.Sprintf("the source has keys in databases %s and the target is a cluster, which has only database 0: migrate database 0 alone (…/0 in the source URL) or move the other databases to a standalone target",
				intList(dbs)), data}}
	case r.Target.Cluster || len(dbs) < 2:
		return nil
	}
	highest := dbs[len(dbs)-1]
	if n := r.Target.DatabasesConfigured; n > 0 && highest >= n {
		data["targetDatabases"] = n
		return []Finding{{CategoryMultiDB, Blocking,
			fmt.Sprintf("the source has keys in databases %s but the target has only %d databases (0-%d): raise its databases setting", intList(dbs), n, n-1), data}}
	}
	return []Finding{{CategoryMultiDB, Warning,
		fmt.Sprintf("the source uses %d databases (%s); each is copied to the same number on the target, so applications must keep SELECTing them", len(dbs), intList(dbs)), data}}
}

// copiedDBs are the source databases the shards cover, ascending.
func copiedDBs(r *Report) []int {
	seen := map[int]bool{}
	var dbs []int
	for _, s := range r.Shards {
		if !seen[s.DB] {
			seen[s.DB] = true
			dbs = append(dbs, s.DB)
		}
	}
	sort.Ints(dbs)
	return dbs
}

func maxMemoryPolicy(r *Report) []Finding {
	s, t := r.Source.MaxMemoryPolicy, r.Target.MaxMemoryPolicy
	if s == "" || t == "" || s == t {
		return nil
	}
	return []Finding{{CategoryMaxMemoryPolicy, Warning,
		fmt.Sprintf("maxmemory-policy differs: %s on the source, %s on the target; under memory pressure the target will %s", s, t, policyEffect(t)),
		map[string]any{"source": s, "target": t}}}
}

func policyEffect(p string) string {
	if p == "noeviction" {
		return "refuse writes instead of evicting"
	}
	return "evict keys (" + p + ")"
}

func acl(r *Report) []Finding {
	if r.Source.Users == nil || r.Target.Users == nil {
		return nil
	}
	have := map[string]bool{}
	for _, u := range r.Target.Users {
		have[u] = true
	}
	var missing []string
	for _, u := range r.Source.Users {
		if !have[u] {
			missing = append(missing, u)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return []Finding{{CategoryACL, Warning,
		fmt.Sprintf("ACL users of the source are missing on the target: %s; kvmigrate copies data, not users: create them (ACL SETUSER or an ACL file) before clients move",
			strings.Join(missing, ", ")),
		map[string]any{"users": missing}}}
}

func persistence(r *Report) []Finding {
	s, t := r.Source.Persistence, r.Target.Persistence
	if s == nil || t == nil || (s.RDBSave == "") == (t.RDBSave == "") && s.AOF == t.AOF {
		return nil
	}
	return []Finding{{CategoryPersistence, Info,
		fmt.Sprintf("persistence differs: the source has %s, the target %s", describePersistence(*s), describePersistence(*t)),
		map[string]any{"source": *s, "target": *t}}}
}

func describePersistence(p Persistence) string {
	var parts []string
	if p.RDBSave != "" {
		parts = append(parts, "RDB snapshots (save "+p.RDBSave+")")
	} else {
		parts = append(parts, "no RDB snapshots")
	}
	if p.AOF {
		parts = append(parts, "AOF on")
	} else {
		parts = append(parts, "AOF off")
	}
	return strings.Join(parts, " and ")
}

func rdbVersion(r *Report) []Finding {
	f := r.FastPath
	if f.Available || r.Source.Engine == "" || r.Target.Engine == "" {
		return nil
	}
	return []Finding{{CategoryRDBVersion, Info,
		fmt.Sprintf("the source writes RDB version %d and %s %s accepts up to %d: the DUMP/RESTORE fast path is unavailable, compound keys are copied with type commands (slower, same result)",
			f.SourceRDBVersion, r.Target.Engine, r.Target.Version, f.TargetRDBVersion),
		map[string]any{"sourceRDBVersion": f.SourceRDBVersion, "targetRDBVersion": f.TargetRDBVersion}}}
}

func targetNotEmpty(r *Report) []Finding {
	o := r.Overlap
	if o.TargetKeys == 0 {
		return nil
	}
	msg := fmt.Sprintf("the target already holds %d keys in the databases a migration writes to", o.TargetKeys)
	switch {
	case o.Checked > 0 && o.Existing == 0:
		msg += fmt.Sprintf("; none of %d sampled source keys exists there, so few if any keys will be overwritten", o.Checked)
	case o.Checked > 0:
		msg += fmt.Sprintf("; %d of %d sampled source keys exist there (about %d in all) and will be replaced (--on-conflict replace) or kept (--on-conflict skip)",
			o.Existing, o.Checked, o.Estimated)
	}
	return []Finding{{CategoryTargetNotEmpty, Warning, msg,
		map[string]any{"targetKeys": o.TargetKeys, "checked": o.Checked, "existing": o.Existing, "estimated": o.Estimated}}}
}

// memoryFit compares the estimate with the target's free memory: not
// fitting is blocking (memory_fit); filling most of it under an evicting
// policy is a warning (eviction_risk).
func memoryFit(r *Report) []Finding {
	t, m := r.Target, r.Memory
	need := neededBytes(r)
	if t.MaxMemory <= 0 || need == 0 {
		return nil
	}
	free := t.MaxMemory - t.UsedMemory
	data := map[string]any{"neededBytes": need, "estimatedBytes": m.EstimatedBytes, "serverBytes": m.ServerBytes, "highBytes": m.HighBytes,
		"targetMaxMemory": t.MaxMemory, "targetUsedMemory": t.UsedMemory, "targetFreeBytes": free, "targetPolicy": t.MaxMemoryPolicy}
	evicts := t.MaxMemoryPolicy != "" && t.MaxMemoryPolicy != "noeviction"
	if need > free {
		what := "writes will fail with OOM errors"
		if evicts {
			what = "the target will evict keys (" + t.MaxMemoryPolicy + ") and lose data"
		}
		return []Finding{{CategoryMemoryFit, Blocking,
			fmt.Sprintf("the data needs about %s and the target has %s free (maxmemory %s, %s used): %s; raise maxmemory or use a bigger target",
				humanBytes(need), humanBytes(max(free, 0)), humanBytes(t.MaxMemory), humanBytes(t.UsedMemory), what), data}}
	}
	share := float64(need) / float64(free)
	if evicts && (share >= evictionRiskShare || m.HighBytes > free) {
		data["share"] = share
		return []Finding{{CategoryEvictionRisk, Warning,
			fmt.Sprintf("the data would fill %.0f %% of the target's free memory (%s of %s) and the target evicts keys under pressure (%s): keys may be evicted during or after the copy",
				100*share, humanBytes(need), humanBytes(free), t.MaxMemoryPolicy), data}}
	}
	return nil
}

// neededBytes is the memory the copied data needs: the estimate, or the
// source's own figure when that is larger and covers exactly the copied
// data (every database, no filter).
func neededBytes(r *Report) int64 {
	m := r.Memory
	need := int64(0)
	if r.EstimatedKeys == 0 {
		return 0
	}
	if m.Available {
		need = m.EstimatedBytes
	}
	if m.ServerBytes > need && r.Filter == nil && len(copiedDBs(r)) == len(r.Source.Databases) && r.EstimatedKeys == r.Source.Keys {
		need = m.ServerBytes
	}
	return need
}

// what the report lacks without each command
var deniedEffect = map[string]string{
	"INFO":           "engine details, memory, key expiry counts and call counts",
	"CONFIG GET":     "persistence and database settings",
	"MODULE LIST":    "modules",
	"ACL USERS":      "ACL users",
	"SLOWLOG GET":    "the slow log",
	"COMMANDLOG GET": "the command log",
	"MEMORY USAGE":   "the memory estimate",
	"MEMORY STATS":   "the source's own memory figure",
	"SELECT":         "databases other than the first",
	"SCAN":           "the key sample",
	"TYPE":           "the key sample",
	"PTTL":           "the key sample",
	"HSCAN":          "hash field TTLs",
	"HPEXPIRETIME":   "hash field TTLs",
	"EXISTS":         "the overlap with the target",
}

func permissions(r *Report) []Finding {
	var out []Finding
	for _, side := range []struct {
		name string
		s    Side
	}{{"source", r.Source}, {"target", r.Target}} {
		if len(side.s.Denied) == 0 {
			continue
		}
		var lacks []string
		grants := make([]string, len(side.s.Denied))
		for i, c := range side.s.Denied {
			if e, ok := deniedEffect[c]; ok && !contains(lacks, e) {
				lacks = append(lacks, e)
			}
			grants[i] = "+" + strings.ToLower(strings.ReplaceAll(c, " ", "|"))
		}
		msg := fmt.Sprintf("the %s user may not run %s", side.name, strings.Join(side.s.Denied, ", "))
		if len(lacks) > 0 {
			msg += ": the report lacks " + strings.Join(lacks, "; ")
		}
		msg += "; grant " + strings.Join(grants, " ") + " for a complete report"
		out = append(out, Finding{CategoryPermissions, Warning, msg,
			map[string]any{"side": side.name, "commands": side.s.Denied}})
	}
	return out
}

// aclPreflight turns what ACL DRYRUN said of the copy's commands into
// findings, per side: blocking for what the copy cannot do without
// (commands on the copied keys, writes to the temporary keys, finishing
// a temporary key by neither EVAL nor PEXPIRE+RENAME); a warning for the
// fast path (DUMP, RESTORE) and for EVAL alone; info when the user's
// permissions could not be checked.
func aclPreflight(r *Report) []Finding {
	var out []Finding
	for _, side := range []struct {
		name string
		p    *ACLPreflight
	}{{"source", r.Source.Preflight}, {"target", r.Target.Preflight}} {
		p := side.p
		if p == nil {
			continue
		}
		if !p.Checked {
			out = append(out, Finding{CategoryACLPreflight, Info,
				fmt.Sprintf("the %s user's permissions for the copy could not be checked: %s; a denied command would only show key by key during the copy (grant +acl|dryrun to let the analysis check them)", side.name, p.Note),
				map[string]any{"side": side.name, "user": p.User, "checked": false}})
			continue
		}
		var keys, temp, fast, atomic, fallback []ACLDenial
		for _, d := range p.Denied {
			switch {
			case d.Need == NeedFastPath:
				fast = append(fast, d)
			case d.Need == NeedAtomic:
				atomic = append(atomic, d)
			case d.Need == NeedFallback:
				fallback = append(fallback, d)
			case d.TempKey:
				temp = append(temp, d)
			default:
				keys = append(keys, d)
			}
		}
		if len(atomic) > 0 && len(fallback) > 0 {
			// Neither way of moving a temporary key into place works.
			temp = append(append(temp, atomic...), fallback...)
			atomic = nil
		}
		pattern := "*"
		if r.Filter != nil && r.Filter.Match != "" {
			pattern = r.Filter.Match
		}
		tempPattern := transfer.TempPrefix + "*"
		data := func(ds []ACLDenial, pat, rule string) map[string]any {
			m := map[string]any{"side": side.name, "user": p.User, "commands": deniedNames(ds), "keyPattern": pat, "rule": rule}
			if nodes := someNodes(ds); len(nodes) > 0 {
				m["nodes"] = nodes
			}
			return m
		}
		if len(keys) > 0 {
			rule := aclRule(p.User, keys, pattern)
			what := "read the keys to copy"
			if side.name == "target" {
				what = "write the copied keys"
			}
			out = append(out, Finding{CategoryACLPreflight, Blocking,
				fmt.Sprintf("the %s user %q may not run %s on keys like %s (pattern %s): the copy cannot %s without them; add: %s",
					side.name, p.User, strings.Join(deniedNames(keys), ", "), DisplayKey(keys[0].Key), pattern, what, rule),
				data(keys, pattern, rule)})
		}
		if len(temp) > 0 {
			rule := aclRule(p.User, temp, pattern)
			d := data(temp, tempPattern, rule)
			sev, which := Warning, "no key the analysis saw needs one, but any that does (a big string, a big compound key, a stream without the fast path, a hash with field TTLs) would fail"
			if big, ok := tempKeyNeeded(r); ok {
				sev, which = Blocking, fmt.Sprintf("keys like %s need one, and every such key would fail", DisplayKey(big))
				d["needingKey"] = big
			} else if s := r.LargestKeys.Sweep; s == nil || !s.Complete {
				which += " (the big-key sweep did not cover every key)"
			}
			out = append(out, Finding{CategoryACLPreflight, sev,
				fmt.Sprintf("the %s user %q may not run %s on kvmigrate's temporary keys (%s): big keys are written to a temporary key and renamed into place; %s; add: %s",
					side.name, p.User, strings.Join(deniedNames(temp), ", "), tempPattern, which, rule),
				d})
		}
		if len(fast) > 0 {
			rule := aclRule(p.User, fast, pattern)
			out = append(out, Finding{CategoryACLPreflight, Warning,
				fmt.Sprintf("the %s user %q may not run %s on keys like %s: the DUMP/RESTORE fast path is off, compound keys fall back to type commands (slower, same result); add: %s",
					side.name, p.User, strings.Join(deniedNames(fast), ", "), DisplayKey(fast[0].Key), rule),
				data(fast, pattern, rule)})
		}
		if len(atomic) > 0 {
			rule := aclRule(p.User, atomic, pattern)
			out = append(out, Finding{CategoryACLPreflight, Warning,
				fmt.Sprintf("the %s user %q may not run %s with the keys %s: compound keys are finished non-atomically, PEXPIRE on the temporary key then RENAME, instead of one script; add: %s",
					side.name, p.User, strings.Join(deniedNames(atomic), ", "), tempPattern+" and "+pattern, rule),
				data(atomic, pattern, rule)})
		}
	}
	for i, f := range out {
		if nodes, ok := f.Data["nodes"].([]string); ok && len(nodes) > 0 {
			out[i].Message += fmt.Sprintf(" (refused only by the master(s) %s: the cluster's nodes have different ACLs; set the user alike on every node)", strings.Join(nodes, ", "))
		}
	}
	return out
}

// tempKeyNeeded returns a key the analysis saw (in its sample or its
// big-key sweep) that the copy writes through a temporary key, if any.
func tempKeyNeeded(r *Report) (string, bool) {
	fast := r.FastPath.Available
	for _, ks := range [][]KeyInfo{r.LargestKeys.ByElements, r.LargestKeys.ByMemory} {
		for _, k := range ks {
			if transfer.NeedsTempKey(k.Type, k.Elements, fast) {
				return k.Key, true
			}
		}
	}
	if r.HashFieldTTL.HashesWithTTL > 0 && r.HashFieldTTL.TargetSupported {
		return "a hash with field TTLs", true
	}
	if !fast {
		for _, tc := range r.Types {
			if tc.Type == "stream" && tc.Sampled > 0 {
				return "a stream", true
			}
		}
	}
	return "", false
}

// someNodes lists the masters that made denials of ds when only some
// masters did (ACLDenial.Nodes), each once.
func someNodes(ds []ACLDenial) []string {
	var out []string
	for _, d := range ds {
		for _, n := range d.Nodes {
			if !contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// deniedNames lists the commands of ds once each, in order.
func deniedNames(ds []ACLDenial) []string {
	var out []string
	for _, d := range ds {
		if !contains(out, d.Command) {
			out = append(out, d.Command)
		}
	}
	return out
}

// aclRule is the ACL SETUSER line that grants what ds were refused: the
// command (+cmd, +cmd|sub) when DRYRUN refused the command, the key
// pattern (the temporary keys', or pattern) when it refused a key.
func aclRule(user string, ds []ACLDenial, pattern string) string {
	var parts []string
	for _, d := range ds {
		var p string
		switch {
		case strings.Contains(d.Reason, "access the '"+transfer.TempPrefix):
			p = "~" + transfer.TempPrefix + "*"
		case strings.Contains(d.Reason, "access the"):
			p = "~" + pattern
		default:
			p = "+" + strings.ToLower(strings.ReplaceAll(d.Command, " ", "|"))
		}
		if !contains(parts, p) {
			parts = append(parts, p)
		}
	}
	return "ACL SETUSER " + user + " " + strings.Join(parts, " ")
}

func sampling(r *Report) []Finding {
	switch {
	case r.Sample.StoppedBy == "timeBudget":
		return []Finding{{CategorySampling, Info,
			fmt.Sprintf("the time budget (%d ms) ran out after %d of %d keys: the figures are extrapolated from a smaller sample", r.Sample.TimeBudgetMs, r.Sample.Sampled, r.Sample.Requested),
			map[string]any{"sampled": r.Sample.Sampled, "timeBudgetMs": r.Sample.TimeBudgetMs}}}
	case r.EstimatedKeys == 0 && r.Filter != nil:
		f := r.Filter
		msg := fmt.Sprintf("no key of the databases a migration copies matches the filter (%s): there is nothing to move", f.describe())
		if !r.Sample.Complete {
			msg = fmt.Sprintf("none of %d keys scanned matches the filter (%s): there is little or nothing to move", f.Scanned, f.describe())
		}
		return []Finding{{CategorySampling, Info, msg,
			map[string]any{"estimatedKeys": 0, "keys": f.Keys, "scanned": f.Scanned, "matched": f.Matched}}}
	case r.EstimatedKeys == 0:
		return []Finding{{CategorySampling, Info, "the source holds no keys in the databases a migration copies: there is nothing to move",
			map[string]any{"estimatedKeys": 0}}}
	}
	return nil
}

func intList(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
