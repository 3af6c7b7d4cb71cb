package analysis

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/topology"
)

// ReportVersion is the version of the report's JSON form. Fields are only
// added within a version; a rename or a change of meaning bumps it.
const ReportVersion = 1

// Severity says what a finding means for a migration.
type Severity string

const (
	// Blocking: a migration is refused unless the caller forces it.
	Blocking Severity = "blocking"
	// Warning: the migration runs, but something will differ or may fail.
	Warning Severity = "warning"
	// Info: worth knowing; nothing to do.
	Info Severity = "info"
)

// rank orders severities, most severe first.
func (s Severity) rank() int {
	switch s {
	case Blocking:
		return 0
	case Warning:
		return 1
	}
	return 2
}

// Category names what a finding is about. The set is closed; new
// categories are added, never renamed.
type Category string

const (
	CategoryClusterTopology Category = "cluster_topology" // cluster → standalone, standalone → cluster
	CategoryTypeDirection   Category = "type_direction"   // Valkey → Redis
	CategoryHFE             Category = "hfe"              // hash field TTLs
	CategoryModules         Category = "modules"          // modules and module data types
	CategoryMultiDB         Category = "multi_db"         // several databases, database numbers the target lacks
	CategoryMaxMemoryPolicy Category = "maxmemory_policy" // eviction policies differ
	CategoryACL             Category = "acl"              // source users missing on the target
	CategoryPersistence     Category = "persistence"      // RDB/AOF settings differ
	CategoryRDBVersion      Category = "rdb_version"      // DUMP/RESTORE fast path unavailable
	CategoryTargetNotEmpty  Category = "target_not_empty" // the target holds keys (overlap from the sample)
	CategoryMemoryFit       Category = "memory_fit"       // the data does not fit the target's maxmemory
	CategoryEvictionRisk    Category = "eviction_risk"    // the target would evict keys under the new data
	CategoryPermissions     Category = "permissions"      // the ACL user may not run a command the analysis uses
	CategorySampling        Category = "sampling"         // the sample stopped early, or there was nothing to sample
	CategoryACLPreflight    Category = "acl_preflight"    // the ACL user may not run a command the copy sends (ACL DRYRUN)
)

// Finding is one thing the caller should know before migrating.
type Finding struct {
	Category Category `json:"category"`
	Severity Severity `json:"severity"`
	// Message says what was found and what to do, for a human.
	Message string `json:"message"`
	// Data holds the figures behind the message (names as in the report,
	// camelCase).
	Data map[string]any `json:"data,omitempty"`
}

func (f Finding) String() string {
	return fmt.Sprintf("[%s] %s: %s", f.Severity, f.Category, f.Message)
}

// Report is the result of an analysis. Its JSON form is stable (see
// ReportVersion and the README's "Analysis report" section); it is stored
// with the job (job.ReportAnalysis) and served by the API.
type Report struct {
	Version    int       `json:"version"`
	JobID      string    `json:"jobId,omitempty"`
	StartedAt  time.Time `json:"startedAt"`
	DurationMs int64     `json:"durationMs"`

	// Blocking is true when at least one finding is blocking.
	Blocking bool      `json:"blocking"`
	Findings []Finding `json:"findings"`
	// Shards are the (source master, database) pairs a migration copies,
	// with what the sample saw in each.
	Shards []Shard `json:"shards"`
	// EstimatedKeys is the number of keys a migration would copy (the
	// source's key counts of the databases it copies, when analysed; with
	// a Filter, the keys that pass it).
	EstimatedKeys int64 `json:"estimatedKeys"`
	// Filter is the copy's --match/--type filter that the figures below
	// describe; absent (null) when the whole keyspace is copied.
	Filter *Filter `json:"filter,omitempty"`

	Source Side `json:"source"`
	Target Side `json:"target"`

	Sample       SampleSummary `json:"sample"`
	Types        []TypeCount   `json:"types"`
	Memory       Memory        `json:"memory"`
	TTL          TTLBuckets    `json:"ttl"`
	LargestKeys  LargestKeys   `json:"largestKeys"`
	HashFieldTTL FieldTTL      `json:"hashFieldTTL"`
	Commands     Commands      `json:"commands"`
	FastPath     FastPath      `json:"fastPath"`
	Overlap      Overlap       `json:"overlap"`
	// Notes say what the analysis could not look at, and why.
	Notes []string `json:"notes,omitempty"`
}

// Side describes the source or the target.
type Side struct {
	// Endpoint is the URL with its password redacted.
	Endpoint string   `json:"endpoint"`
	Engine   string   `json:"engine"`  // "redis" or "valkey"
	Version  string   `json:"version"` // e.g. "8.0.2"
	Cluster  bool     `json:"cluster"`
	Masters  []Master `json:"masters"`
	// Databases lists the databases holding keys (all of them, not only
	// the ones a migration copies), ascending.
	Databases []Database `json:"databases"`
	// Keys is the total key count over Databases.
	Keys int64 `json:"keys"`
	// UsedMemory sums INFO used_memory over the masters (0: unknown).
	UsedMemory int64 `json:"usedMemory"`
	// MaxMemory sums the masters' maxmemory; 0 when any master has none
	// (or it could not be read).
	MaxMemory       int64  `json:"maxMemory"`
	MaxMemoryPolicy string `json:"maxMemoryPolicy,omitempty"`
	// DatabasesConfigured is the databases setting (0: unknown).
	DatabasesConfigured int `json:"databasesConfigured,omitempty"`
	RDBVersion          int `json:"rdbVersion"`
	// RDBVersionFrom: "dump" (read from a payload) or "version" (from the
	// engine's version).
	RDBVersionFrom string `json:"rdbVersionFrom"`
	RDBRelaxed     bool   `json:"rdbRelaxed,omitempty"`
	// HashFieldTTL: the server has per-field hash expiry (asked with
	// COMMAND INFO, not guessed from the version).
	HashFieldTTL bool         `json:"hashFieldTTL"`
	Persistence  *Persistence `json:"persistence,omitempty"` // absent: unknown
	// Modules and Users are null when they could not be read, [] when
	// there are none.
	Modules []Module `json:"modules"`
	Users   []string `json:"users"`
	// Denied lists the commands this side's user may not run (ACL
	// NOPERM); the parts of the report that need them are missing.
	Denied []string `json:"deniedCommands,omitempty"`
	// Preflight is the ACL pre-flight of the copy: the commands a
	// migration would send to this side, checked with ACL DRYRUN for this
	// side's user on realistic keys. Absent when it was not attempted.
	Preflight *ACLPreflight `json:"aclPreflight,omitempty"`
}

// Why a migration needs a command the pre-flight checks (ACLDenial.Need).
const (
	// NeedRequired: the copy cannot do without it.
	NeedRequired = "required"
	// NeedFastPath: DUMP or RESTORE; denied, compound keys are copied
	// with type commands (slower, same result).
	NeedFastPath = "fastPath"
	// NeedAtomic: EVAL/EVALSHA of the script that renames a temporary key
	// into place with its TTL; denied, PEXPIRE then RENAME do it.
	NeedAtomic = "atomic"
	// NeedFallback: PEXPIRE and RENAME of the temporary key, used when
	// EVAL is denied.
	NeedFallback = "fallback"
)

// ACLPreflight is what ACL DRYRUN said of the copy's commands for one
// side's user. It runs nothing: DRYRUN only checks.
type ACLPreflight struct {
	// User is the user the migration connects as (ACL WHOAMI).
	User string `json:"user,omitempty"`
	// Checked is false when the permissions could not be checked (ACL
	// DRYRUN denied to this user, or unknown to the server); Note says why.
	Checked bool   `json:"checked"`
	Note    string `json:"note,omitempty"`
	// Commands counts the commands checked.
	Commands int `json:"commands"`
	// Denied lists the checked commands that the user may not run.
	Denied []ACLDenial `json:"denied"`
}

// ACLDenial is one command of the copy that ACL DRYRUN refused.
type ACLDenial struct {
	// Command is the command's name ("RESTORE", "XGROUP CREATE").
	Command string `json:"command"`
	// Key is the key it was checked on: a sampled key, or a temporary
	// key name when TempKey.
	Key     string `json:"key,omitempty"`
	TempKey bool   `json:"tempKey,omitempty"`
	// Nodes are the masters that refused it, when only some of a
	// cluster's did (their ACLs differ); empty when every master did.
	Nodes []string `json:"nodes,omitempty"`
	// Need is NeedRequired, NeedFastPath, NeedAtomic or NeedFallback.
	Need string `json:"need"`
	// Reason is DRYRUN's reply ("This user has no permissions to access
	// the '...' key").
	Reason string `json:"reason"`
}

// Master is one primary node.
type Master struct {
	Addr       string   `json:"addr"`
	Slots      [][2]int `json:"slots,omitempty"` // inclusive ranges; cluster only
	SlotCount  int      `json:"slotCount,omitempty"`
	Replicas   int      `json:"replicas"`
	Keys       int64    `json:"keys"`
	UsedMemory int64    `json:"usedMemory"`
	MaxMemory  int64    `json:"maxMemory"`
}

// Database is one database in use.
type Database struct {
	DB      int   `json:"db"`
	Keys    int64 `json:"keys"`
	Expires int64 `json:"expires"` // keys with a TTL
}

// Persistence is how the server saves its data.
type Persistence struct {
	// RDBSave is the save setting ("3600 1 300 100 ..."); "" means no
	// snapshots.
	RDBSave string `json:"rdbSave"`
	AOF     bool   `json:"aof"`
}

// Module is a loaded server module.
type Module struct {
	Name    string `json:"name"`
	Version int64  `json:"version"`
	// BuiltIn: MODULE LIST gives it no path, it ships inside the server
	// (Redis 8's vectorset).
	BuiltIn bool `json:"builtIn,omitempty"`
}

// Filter is the copy filter a report describes: the keys kvmigrate
// migrate/run --match/--type copy. The sample SCANs with the same MATCH and
// TYPE as the copy; the number of keys that match is counted when every
// shard was scanned to its end (sample.complete), else extrapolated from a
// census: the first pages of each shard are SCANned without the filter
// too, from the same cursors, and the share of those keys that the
// filtered SCAN returned is applied to the shard's key count.
type Filter struct {
	Match string `json:"match,omitempty"` // SCAN MATCH glob
	Type  string `json:"type,omitempty"`  // SCAN TYPE
	// Keys counts the keys of the copied databases before the filter.
	Keys int64 `json:"keys"`
	// Scanned counts the keys of the census, Matched those of them that
	// pass the filter.
	Scanned int64 `json:"scanned"`
	Matched int64 `json:"matched"`
}

// describe writes f as the CLI flags that give it.
func (f Filter) describe() string { return topology.FilterFlags(f.Match, f.Type) }

// SampleSummary says how much was sampled and how.
type SampleSummary struct {
	Requested int   `json:"requested"`
	Sampled   int64 `json:"sampled"`
	// Complete: every key of every copied database (that passes the
	// filter) was sampled, so the counts below are exact rather than
	// estimates.
	Complete bool `json:"complete"`
	// StoppedBy is "timeBudget" when the time budget ran out first.
	StoppedBy    string `json:"stoppedBy,omitempty"`
	TimeBudgetMs int64  `json:"timeBudgetMs"`
	MaxOps       int    `json:"maxOps,omitempty"`
}

// Shard is one (source master, database) with what its sample saw.
type Shard struct {
	Node string `json:"node"`
	DB   int    `json:"db"`
	// Keys is the shard's key count (INFO keyspace or DBSIZE).
	Keys int64 `json:"keys"`
	// EstimatedKeys is how many of them a migration copies: Keys, or with
	// a filter the keys that pass it (counted when Complete, else
	// extrapolated from the share that matched in the filter's census).
	EstimatedKeys int64 `json:"estimatedKeys"`
	Sampled       int64 `json:"sampled"`
	// Complete: the SCAN went through the whole shard.
	Complete bool `json:"complete"`
	// Types counts the sampled keys by type.
	Types map[string]int64 `json:"types"`
	// EstimatedBytes extrapolates the sample's MEMORY USAGE to Keys and
	// adds the shard's keyspace hash tables (see Memory).
	EstimatedBytes int64 `json:"estimatedBytes"`
}

// TypeCount is one type's share of the keys.
type TypeCount struct {
	Type      string `json:"type"`
	Sampled   int64  `json:"sampled"`
	Estimated int64  `json:"estimated"`
}

// Memory is the memory estimate.
type Memory struct {
	// Available is false when MEMORY USAGE could not be run.
	Available bool `json:"available"`
	// SampledKeys and SampledBytes: MEMORY USAGE over the sample.
	SampledKeys  int64 `json:"sampledKeys"`
	SampledBytes int64 `json:"sampledBytes"`
	// EstimatedBytes is the data's memory: MEMORY USAGE extrapolated per
	// shard from its key count, plus KeyspaceOverheadBytes.
	EstimatedBytes int64 `json:"estimatedBytes"`
	// KeyspaceOverheadBytes is what MEMORY USAGE does not count: the main
	// and expires hash tables of the keyspace (SlotOverheadBytes
	// included).
	KeyspaceOverheadBytes int64 `json:"keyspaceOverheadBytes"`
	// SlotOverheadBytes is, for a cluster source, the part of
	// KeyspaceOverheadBytes that the per-slot hash tables take: what each
	// master's MEMORY STATS keyspace figure holds beyond MEMORY USAGE and
	// one table per database, shared out by the slots the copied keys
	// occupy.
	SlotOverheadBytes int64 `json:"slotOverheadBytes,omitempty"`
	// ServerBytes is the source's own accounting of the memory its keys
	// take (MEMORY STATS: allocated memory less startup, clients,
	// replication, cluster links and scripts), summed over the masters and
	// over every database; 0 when MEMORY STATS could not be run.
	ServerBytes int64 `json:"serverBytes"`
	// LowBytes and HighBytes bound a 95 % interval of the extrapolation
	// (equal to EstimatedBytes when every key was sampled).
	LowBytes  int64 `json:"lowBytes"`
	HighBytes int64 `json:"highBytes"`
	// RelativeError is the extrapolation's relative standard error.
	RelativeError float64 `json:"relativeError"`
	// Confidence is "exact", "high" (±10 % or better at 95 %), "medium"
	// (±30 %) or "low".
	Confidence string `json:"confidence"`
	Note       string `json:"note"`
}

// Buckets counts keys by remaining TTL.
type Buckets struct {
	None     int64 `json:"none"`     // no expiry
	Under1h  int64 `json:"under1h"`  // < 1 h
	Under24h int64 `json:"under24h"` // 1 h to < 24 h
	Under7d  int64 `json:"under7d"`  // 24 h to < 7 d
	Over7d   int64 `json:"over7d"`   // 7 d and more
}

// TTLBuckets are the sampled counts and their extrapolation.
type TTLBuckets struct {
	Sampled   Buckets `json:"sampled"`
	Estimated Buckets `json:"estimated"`
}

// KeyInfo is one sampled key.
type KeyInfo struct {
	Key  string `json:"key"`
	Type string `json:"type"`
	Node string `json:"node"`
	DB   int    `json:"db"`
	// Bytes is MEMORY USAGE (0: unknown).
	Bytes int64 `json:"bytes"`
	// Elements: fields, members, entries; bytes for strings.
	Elements int64 `json:"elements"`
	// FoundBy is FoundBySample ("sample") or FoundBySweep ("sweep": the
	// big-key sweep found it, whether or not the sample did too).
	FoundBy string `json:"foundBy,omitempty"`
}

// LargestKeys are the biggest keys of the sample and of the big-key sweep.
type LargestKeys struct {
	ByMemory   []KeyInfo `json:"byMemory"`
	ByElements []KeyInfo `json:"byElements"` // compound types only
	// Sweep says how far the big-key sweep got: when it is Complete, the
	// compound keys listed here are the largest by elements of every
	// copied key, not only of the sample. Absent when the sweep was off.
	Sweep *KeySweep `json:"sweep,omitempty"`
}

// KeySweep is the big-key sweep: every shard SCANned once per compound
// type with the server filtering by type (and by the copy's --match),
// the element count of every key it returns, and MEMORY USAGE of the
// longest Top keys of each shard. It shares the sample's time budget and
// rate limit. Strings are not swept (the sample's string lengths are in
// the lists).
type KeySweep struct {
	// Complete: every shard was swept to its end (or its sample saw every
	// key), so the compound keys ranked by elements are exhaustive.
	Complete bool `json:"complete"`
	// StoppedBy is "timeBudget" when the time budget ran out first.
	StoppedBy string `json:"stoppedBy,omitempty"`
	// Types are the types swept: the compound types, or the --type
	// filter's.
	Types []string `json:"types"`
	// Top is how many keys each shard keeps (the longest).
	Top    int          `json:"top"`
	Shards []SweepShard `json:"shards"`
	// Note says why the sweep was skipped or is partial (permissions, a
	// server without SCAN TYPE).
	Note string `json:"note,omitempty"`
}

// SweepShard is how far the sweep of one (source master, database) got.
type SweepShard struct {
	Node string `json:"node"`
	DB   int    `json:"db"`
	// Swept is false when the sweep of this shard was skipped (see Note).
	Swept    bool `json:"swept"`
	Complete bool `json:"complete"`
	// Found counts the compound keys the SCANs returned.
	Found int64 `json:"found"`
	// Fraction is about how much of the shard's keyspace the SCANs looked
	// at, over the types swept (1 when Complete): SCAN calls × COUNT,
	// at most the shard's key count per type.
	Fraction float64 `json:"fraction"`
}

// FieldTTL is what the analysis found of hash field expiry on the source.
type FieldTTL struct {
	// Checked: the source has HPEXPIRETIME, so sampled hashes were looked at.
	Checked         bool  `json:"checked"`
	TargetSupported bool  `json:"targetSupported"`
	HashesSampled   int64 `json:"hashesSampled"`
	// HashesWithTTL and FieldsWithTTL count sampled hashes with at least
	// one field TTL and those fields (the first 1,000 fields of each hash).
	HashesWithTTL int64 `json:"hashesWithTTL"`
	FieldsWithTTL int64 `json:"fieldsWithTTL"`
	// ServerHashes is the server's own count of hashes with field TTLs
	// (INFO keyspace subexpiry), -1 when the server does not report it.
	ServerHashes int64  `json:"serverHashes"`
	Note         string `json:"note,omitempty"`
}

// Commands is the command distribution seen on the source's masters.
type Commands struct {
	// Calls are the most called commands since the servers started (INFO
	// commandstats), most called first.
	Calls []CommandCount `json:"calls"`
	// Log is "commandlog" (Valkey 8.1+), "slowlog", or "" when neither
	// could be read.
	Log string `json:"log"`
	// Logs summarises each log: "slow" for SLOWLOG; "slow",
	// "large-request" and "large-reply" for COMMANDLOG.
	Logs []LogSummary `json:"logs"`
	Note string       `json:"note,omitempty"`
}

// CommandCount is a command (lower case, "config|get" for subcommands)
// and how often it was seen.
type CommandCount struct {
	Command string `json:"command"`
	Count   int64  `json:"count"`
}

// LogSummary is one command log.
type LogSummary struct {
	Type    string         `json:"type"`
	Entries int            `json:"entries"`
	Top     []CommandCount `json:"top"`
}

// FastPath says whether DUMP/RESTORE can move compound keys.
type FastPath struct {
	Available        bool `json:"available"`
	SourceRDBVersion int  `json:"sourceRDBVersion"`
	// TargetRDBVersion is the newest version the target writes.
	TargetRDBVersion int `json:"targetRDBVersion"`
}

// Overlap is how much of the source already exists on the target.
type Overlap struct {
	// TargetKeys counts the keys in the target databases a migration
	// writes to.
	TargetKeys int64 `json:"targetKeys"`
	// Checked counts the sampled keys looked up on the target (EXISTS).
	Checked int64 `json:"checked"`
	// Existing counts those present; Estimated extrapolates it.
	Existing  int64    `json:"existing"`
	Estimated int64    `json:"estimated"`
	Examples  []string `json:"examples,omitempty"`
}

// BlockingFindings returns the blocking findings of r.
func (r *Report) BlockingFindings() []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Severity == Blocking {
			out = append(out, f)
		}
	}
	return out
}

// Find returns the findings of a category.
func (r *Report) Find(c Category) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Category == c {
			out = append(out, f)
		}
	}
	return out
}

// ErrBlocked is matched (errors.Is) by every *BlockedError.
var ErrBlocked = errors.New("migration blocked by the analysis")

// BlockedError refuses a migration that has blocking findings. Its type
// name is the Step Functions error name "BlockedError".
type BlockedError struct {
	JobID    string
	Findings []Finding
}

func (e *BlockedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "migration refused: the analysis found %d blocking problem", len(e.Findings))
	if len(e.Findings) != 1 {
		b.WriteString("s")
	}
	for _, f := range e.Findings {
		fmt.Fprintf(&b, "; %s: %s", f.Category, f.Message)
	}
	b.WriteString(" — fix them, or pass force (--force) to migrate anyway")
	return b.String()
}

// Is makes errors.Is(err, ErrBlocked) true.
func (e *BlockedError) Is(target error) bool { return target == ErrBlocked }

// Gate enforces the blocking findings: a *BlockedError listing them when
// there are some and force is false, nil otherwise.
func (r *Report) Gate(force bool) error {
	if force || !r.Blocking {
		return nil
	}
	return &BlockedError{JobID: r.JobID, Findings: r.BlockingFindings()}
}
