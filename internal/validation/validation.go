// Package validation checks what a migration left on the target, without
// writing to either side: exact key counts per database (on a cluster the
// sum over every master), a sample of keys compared with the source on
// type, value and TTL — in full up to FullMax elements, above that by
// element count plus a digest streamed in chunks from both sides within a
// time budget — and, optionally, the target's load figures against
// snapshots taken before the migration.
//
// With the copy's filters (Options.Match, Options.Type) only the keys
// they select are validated, on both sides: see filter.go.
//
// Run is the phase-3 core that the validate Lambda, the local workflow and
// `kvmigrate validate` call. Every command it sends is a read (INFO,
// DBSIZE, RANDOMKEY, SCAN, TYPE, PTTL, the length and range reads of each
// type, HPTTL and HPEXPIRETIME, XINFO, EXISTS), pipelined, and memory
// stays bounded: whole values are fetched only for small keys, big ones
// are read a chunk at a time.
package validation

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/kvmigrate/kvmigrate/internal/topology"
)

// Conn is what validation needs from a connection to one side;
// endpoint.Conn has it.
type Conn interface {
	Cluster() bool
	Masters(ctx context.Context) ([]string, error)
	// Node talks to one node only, with database db selected.
	Node(addr string, db int) (valkey.Client, error)
	// Client routes by key: a cluster client, or a standalone client on db.
	Client(db int) (valkey.Client, error)
}

// Defaults and limits.
const (
	// DefaultSample is how many source keys are compared.
	DefaultSample = 500
	// DefaultFullMax: keys of up to this many elements are compared in full.
	DefaultFullMax = 100
	// FullMaxBytes: strings up to this size are compared in full; longer
	// ones by digest (GETRANGE chunks).
	FullMaxBytes = 512 << 10
	// DefaultBudget bounds the streamed digests of big keys.
	DefaultBudget = 60 * time.Second
	// DefaultTTLTolerance is how far the source's and the target's expiry
	// instants may lie apart (beyond the uncertainty of the reads).
	DefaultTTLTolerance = 2 * time.Second
	// MaxDiscrepancyPct: a key count discrepancy at or above it fails.
	MaxDiscrepancyPct = 1.0
	// DefaultMaxIssues caps the issues listed (the rest are counted), so
	// that a report stays small enough for a Step Functions payload.
	DefaultMaxIssues = 200
	// deadlineMargin is kept free before the context's deadline to finish
	// the report (a Lambda invocation's deadline, typically).
	deadlineMargin = 3 * time.Second
)

// Options tune Run. The zero value validates every database in use with the
// defaults above.
type Options struct {
	// Sample is how many source keys to compare (DefaultSample when 0).
	// When the source holds no more keys than this, every key is compared.
	Sample int
	// TargetSample is how many target keys to look up on the source to
	// find keys that exist only on the target (Sample/5 when 0, -1: none).
	TargetSample int
	// DBs are the source databases to check; nil: every database holding
	// keys on either side.
	DBs []int
	// TargetDB maps a source database to the target's; nil keeps the number.
	TargetDB func(db int) int
	// FullMax: keys of up to this many elements are compared in full
	// (DefaultFullMax when 0).
	FullMax int
	// Budget bounds the streamed digests of bigger keys (DefaultBudget when
	// 0). Keys whose digest did not finish in time are listed in
	// Report.CountOnly: they were compared by type, TTL and element count.
	// The context's deadline, less a small margin, also bounds it.
	Budget time.Duration
	// TTLTolerance: see DefaultTTLTolerance. It applies to key TTLs and
	// to hash field expiries alike.
	TTLTolerance time.Duration
	// RedactKeys replaces key, field and member names in the report by
	// "sha256:" and the first 16 bytes, in hex, of the SHA-256 of the name,
	// and leaves scores out.
	RedactKeys bool
	// MaxIssues caps Report.Issues (DefaultMaxIssues when 0).
	MaxIssues int
	// Match and Type are the copy's filters (kvmigrate --match, --type): a
	// SCAN MATCH glob and one of topology.KeyTypes. With either, only the keys
	// they select are validated, on both sides: the key counts are those
	// of a filtered SCAN of every master and database (DBSIZE would count
	// every key), the samples are drawn from those keys only, and a key on
	// the target that the filter does not select is not an extra one.
	// "" (or a Match of "*") filters nothing.
	Match string
	Type  string
	// Always are source keys compared in addition to the sample, whether
	// or not it draws them: typically the largest keys the analysis found,
	// which a random sample of a few hundred keys almost never reaches.
	// A key is dropped when its database is not validated (DBs) or the
	// filter (Match, Type) does not select it; a key the sample drew is
	// compared once; one gone from the source is not an issue (it counts
	// as vanished). In the target database the TargetDB mapping gives.
	// They are compared like sampled keys (in full, or by digest), and
	// ahead of every other key in the digest phase, so that its budget
	// reaches them first. Report.Sample.Always counts those added.
	Always []KeyRef
	// Baseline, when set, compares the target's load figures after the
	// migration with the snapshots taken before it.
	Baseline *BaselineCheck
	// Log receives progress (counts and durations, never keys); nil: none.
	Log *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Sample <= 0 {
		o.Sample = DefaultSample
	}
	switch {
	case o.TargetSample == 0:
		o.TargetSample = max(o.Sample/5, 1)
	case o.TargetSample < 0:
		o.TargetSample = 0
	}
	if o.TargetDB == nil {
		o.TargetDB = func(db int) int { return db }
	}
	if o.FullMax <= 0 {
		o.FullMax = DefaultFullMax
	}
	if o.Budget <= 0 {
		o.Budget = DefaultBudget
	}
	if o.TTLTolerance <= 0 {
		o.TTLTolerance = DefaultTTLTolerance
	}
	if o.MaxIssues <= 0 {
		o.MaxIssues = DefaultMaxIssues
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Match == "*" {
		o.Match = ""
	}
	return o
}

// Report is the result of Run. Its JSON form is stable (camelCase).
type Report struct {
	// Passed: no issues, and the key count discrepancy below 1 %.
	Passed bool `json:"passed"`
	// KeyCountDiscrepancyPct is the sum over databases of |source - target|
	// key counts, in percent of the source's keys (100 when the source is
	// empty and the target is not).
	KeyCountDiscrepancyPct float64 `json:"keyCountDiscrepancyPct"`
	Source                 Side    `json:"source"`
	Target                 Side    `json:"target"`
	// Filter, when set, is the copy filter the validation was run with:
	// KeyCounts (and the discrepancy) count the keys it selects on each
	// side, and the samples hold such keys only. Absent: every key.
	Filter *Filter `json:"filter,omitempty"`
	// KeyCounts are the exact counts per database, summed over every
	// master: DBSIZE, or with a Filter the keys a SCAN MATCH/TYPE pass
	// returned.
	KeyCounts []DBCount   `json:"keyCounts"`
	Sample    SampleStats `json:"sample"`
	// CountOnly lists the keys compared by type, TTL and element count
	// only (see CountOnly.Reason). Not issues, but not proven equal either.
	CountOnly []CountOnly `json:"countOnly"`
	// Issues are the differences found, sorted by database and key.
	Issues []Issue `json:"issues"`
	// IssuesOmitted counts issues beyond Options.MaxIssues.
	IssuesOmitted int             `json:"issuesOmitted,omitempty"`
	Baseline      *BaselineReport `json:"baseline,omitempty"`
	// KeysRedacted: names in Issues and CountOnly are SHA-256 prefixes.
	KeysRedacted bool      `json:"keysRedacted"`
	StartedAt    time.Time `json:"startedAt"`
	ElapsedMs    int64     `json:"elapsedMs"`
}

// Side describes one deployment.
type Side struct {
	Engine  string `json:"engine"`
	Version string `json:"version"`
	Cluster bool   `json:"cluster"`
	Masters int    `json:"masters"`
}

// DBCount compares the key counts of one source database and the target
// database it maps to.
type DBCount struct {
	SourceDB      int           `json:"sourceDb"`
	TargetDB      int           `json:"targetDb"`
	Source        int64         `json:"source"`
	Target        int64         `json:"target"`
	SourceMasters []MasterCount `json:"sourceMasters"`
	TargetMasters []MasterCount `json:"targetMasters"`
}

// MasterCount is the key count of one master: DBSIZE, or with a filter
// the distinct keys its filtered SCAN returned.
type MasterCount struct {
	Addr string `json:"addr"`
	Keys int64  `json:"keys"`
}

// SampleStats say what was compared and how.
type SampleStats struct {
	// Requested is Options.Sample; Sampled the distinct source keys drawn.
	Requested int `json:"requested"`
	Sampled   int `json:"sampled"`
	// Always counts the keys of Options.Always compared in addition to
	// the Sampled ones: those in a validated database that the filter
	// selects and the sample did not draw.
	Always int `json:"always"`
	// Exhaustive: the source held no more keys than requested (with a
	// filter: matching keys), so every such key was compared (SCAN
	// instead of RANDOMKEY).
	Exhaustive bool `json:"exhaustive"`
	// Vanished: sampled keys gone from the source (or expiring on both
	// sides) by the time they were compared; not issues.
	Vanished int `json:"vanished"`
	// Full, Digest and CountOnly: how the compared keys were compared.
	Full      int `json:"full"`
	Digest    int `json:"digest"`
	CountOnly int `json:"countOnly"`
	// TargetSampled: target keys looked up on the source (extra keys).
	TargetSampled int `json:"targetSampled"`
	// DigestElements are the elements digested on both sides together,
	// DigestMs the wall time of the digest phase.
	DigestElements int64 `json:"digestElements"`
	DigestMs       int64 `json:"digestMs"`
	// Shards: keys drawn per master and database, on each side.
	Shards []ShardSample `json:"shards"`
}

// KeyRef names one source key: its database (on the source; the target's
// is Options.TargetDB's) and its name.
type KeyRef struct {
	DB  int    `json:"db"`
	Key string `json:"key"`
}

// ShardSample counts the keys drawn from one master and database.
type ShardSample struct {
	Side  string `json:"side"` // "source" or "target"
	Addr  string `json:"addr"`
	DB    int    `json:"db"`
	Keys  int64  `json:"keys"`  // DBSIZE, or the matching keys with a filter
	Drawn int    `json:"drawn"` // distinct keys sampled
}

// CountOnly is a big key whose content digest was not compared.
type CountOnly struct {
	DB       int    `json:"db"`
	Key      string `json:"key"`
	Type     string `json:"type"`
	Elements int64  `json:"elements"`
	// Reason: "budget" (the digest budget ran out; for a hash with field
	// expiries, possibly only before they were checked field by field,
	// its content digests being equal), "unstableScan" (a
	// read kept disagreeing with the key's length: the key changed while
	// it was read, or SCAN returned duplicates), or "unknownType" (a module
	// type: type and TTL compared only, Elements 0).
	Reason string `json:"reason"`
}

// Issue kinds.
const (
	IssueMissing  = "missing"  // on the source, not on the target
	IssueExtra    = "extra"    // on the target, not on the source
	IssueType     = "type"     // types differ
	IssueLength   = "length"   // element counts (string: byte lengths) differ
	IssueValue    = "value"    // full comparison found a difference
	IssueDigest   = "digest"   // same element count, streamed digests differ
	IssueTTL      = "ttl"      // expiry differs beyond the tolerance, or lost/added
	IssueKeyCount = "keyCount" // a database's key counts differ (and the discrepancy is >= 1 %)
	IssueRead     = "readError"
	IssueBaseline = "baseline" // a load figure regressed against the pre-migration baseline
)

// Issue is one difference. Key is the key name (printable text as is,
// otherwise Go-escaped; a SHA-256 prefix when keys are redacted); Detail
// says what differed and how, without values.
type Issue struct {
	Kind   string `json:"kind"`
	DB     int    `json:"db"`
	Key    string `json:"key,omitempty"`
	Type   string `json:"type,omitempty"`
	Detail string `json:"detail"`
}

// ErrTopology: the two sides cannot be compared as asked.
var ErrTopology = errors.New("validation: unsupported topology")

// Run validates dst against src. It returns an error only when it cannot
// validate (a side unreachable, a context cancelled); differences are
// issues in the report. src and dst are not closed.
func Run(ctx context.Context, src, dst Conn, o Options) (Report, error) {
	o = o.withDefaults()
	started := time.Now()
	rep := Report{StartedAt: started.UTC(), KeysRedacted: o.RedactKeys, Issues: []Issue{}, CountOnly: []CountOnly{}}
	rep.Sample.Requested = o.Sample
	if err := o.Check(); err != nil {
		return rep, err
	}
	if o.filtered() {
		rep.Filter = &Filter{Match: o.Match, Type: o.Type}
	}
	v := &run{src: src, dst: dst, o: o, rep: &rep}

	// The baseline's "after" figures come first, before our own reads
	// add load to the target.
	var after *Snapshot
	if o.Baseline != nil {
		s, err := TakeSnapshot(ctx, dst, o.Baseline.interval())
		if err != nil {
			return rep, fmt.Errorf("target snapshot: %w", err)
		}
		after = &s
	}

	sinfo, err := topology.Discover(ctx, src)
	if err != nil {
		return rep, fmt.Errorf("source: %w", err)
	}
	dinfo, err := topology.Discover(ctx, dst)
	if err != nil {
		return rep, fmt.Errorf("target: %w", err)
	}
	rep.Source, rep.Target = side(sinfo), side(dinfo)
	if sinfo.Cluster && !dst.Cluster() {
		return rep, fmt.Errorf("%w: the source is a cluster and the target is standalone", ErrTopology)
	}
	v.smasters, v.dmasters = addrs(sinfo), addrs(dinfo)
	v.fieldTTL.src, v.fieldTTL.dst = sinfo.HashFieldTTL, dinfo.HashFieldTTL

	if err := v.count(ctx, sinfo, dinfo); err != nil {
		return rep, err
	}
	v.findFieldTTLs(ctx)
	o.Log.Info("key counts", "dbs", len(rep.KeyCounts), "discrepancyPct", rep.KeyCountDiscrepancyPct)

	big, err := v.compareSample(ctx)
	if err != nil {
		return rep, err
	}
	if err := v.checkExtras(ctx); err != nil {
		return rep, err
	}
	v.digestAll(ctx, started, big)
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	o.Log.Info("sample compared", "sampled", rep.Sample.Sampled, "always", rep.Sample.Always, "full", rep.Sample.Full,
		"digest", rep.Sample.Digest, "countOnly", rep.Sample.CountOnly, "digestMs", rep.Sample.DigestMs)

	if o.Baseline != nil {
		b, err := v.baseline(ctx, *after)
		if err != nil {
			return rep, err
		}
		rep.Baseline = &b
	}
	v.finish()
	rep.ElapsedMs = time.Since(started).Milliseconds()
	return rep, nil
}

// run is the state of one Run.
type run struct {
	src, dst           Conn
	o                  Options
	rep                *Report
	smasters, dmasters []string
	pairs              []dbPair
	// fieldTTL: whether each side has per-field hash expiry;
	// noFieldTTL: the databases of each side where no hash has any.
	fieldTTL   struct{ src, dst bool }
	noFieldTTL struct{ src, dst map[int]bool }
	// passes: with a filter, the filtered SCAN of every shard (key count
	// and sample); nil without.
	passes map[shardID]*pass
	// first: the keys of Options.Always that may be compared, digested
	// ahead of the others.
	first map[KeyRef]bool
}

// dbPair is a source database and the target database it maps to.
type dbPair struct {
	src, dst int
	// noTarget: the target cannot have this database (a cluster, db != 0).
	noTarget bool
}

func side(i topology.Info) Side {
	return Side{Engine: i.Engine, Version: i.Version, Cluster: i.Cluster, Masters: len(i.Masters)}
}

func addrs(i topology.Info) []string {
	out := make([]string, 0, len(i.Masters))
	for _, m := range i.Masters {
		out = append(out, m.Addr)
	}
	return out
}

func (v *run) issue(is Issue) {
	v.rep.Issues = append(v.rep.Issues, is)
}

// finish sorts and caps the issues and decides the result.
func (v *run) finish() {
	rep := v.rep
	order := map[string]int{IssueKeyCount: 0, IssueBaseline: 1}
	slices.SortStableFunc(rep.Issues, func(a, b Issue) int {
		ra, oka := order[a.Kind]
		rb, okb := order[b.Kind]
		if !oka {
			ra = 2
		}
		if !okb {
			rb = 2
		}
		return cmp.Or(cmp.Compare(ra, rb), cmp.Compare(a.DB, b.DB), cmp.Compare(a.Key, b.Key), cmp.Compare(a.Kind, b.Kind))
	})
	if len(rep.Issues) > v.o.MaxIssues {
		rep.IssuesOmitted = len(rep.Issues) - v.o.MaxIssues
		rep.Issues = rep.Issues[:v.o.MaxIssues]
	}
	slices.SortFunc(rep.CountOnly, func(a, b CountOnly) int {
		return cmp.Or(cmp.Compare(a.DB, b.DB), cmp.Compare(a.Key, b.Key))
	})
	rep.Passed = len(rep.Issues) == 0 && rep.IssuesOmitted == 0 && rep.KeyCountDiscrepancyPct < MaxDiscrepancyPct
}
