// Package job holds the job model shared by the CLI, the local workflow, the
// Lambdas and the HTTP API: a Job record with its status machine, per-shard
// checkpoints, reports, counters and concurrency slots, and the Store
// interface that keeps them (in memory here, bbolt in job/bolt, DynamoDB in
// job/dynamo). Every Store passes the contract suite in job/jobtest.
//
// Endpoints in a Job are redacted strings; a Job never carries a password
// (Prepare and ApplyUpdate refuse an endpoint with a plaintext one).
package job

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sync"
	"time"
)

// Kind tells what a job does.
type Kind string

const (
	KindMigration Kind = "migration" // analyze, gate, copy, validate
	KindAnalysis  Kind = "analysis"  // analyze only; ends in StatusAnalyzed
)

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k == KindMigration || k == KindAnalysis }

// Execution modes of a migration job (Job.Mode).
const (
	ModeCommand        = "command"          // SCAN + per-type commands / DUMP-RESTORE, per-shard chunks
	ModeRedisShake     = "redis_shake"      // redis-shake scan_reader, one pass
	ModeRedisShakeSync = "redis_shake_sync" // redis-shake sync_reader until cutover
)

// Names of the reports kept with a job (PutReport/Report).
const (
	ReportAnalysis   = "analysis"
	ReportValidation = "validation"
)

// Retention is how long a finished job is kept: the transition into a
// finished status sets ExpireAt to FinishedAt+Retention unless the mutation
// set ExpireAt itself.
const Retention = 30 * 24 * time.Hour

// Sentinel errors; stores wrap them with the job id, test with errors.Is.
var (
	// ErrNotFound: no such job, or no such report on an existing job.
	ErrNotFound = errors.New("job not found")
	// ErrConflict: a conditional write lost — the id already exists on
	// Create, or the job's current status does not allow the transition
	// (see TransitionError).
	ErrConflict = errors.New("job conflict")
	// ErrLimit: every concurrency slot of the kind is held.
	ErrLimit = errors.New("concurrency limit reached")
	// ErrInvalid: the request itself is wrong (bad id, kind, status, mode,
	// list token, an endpoint with a password, a mutation that changes a
	// field it must not). Retrying does not help.
	ErrInvalid = errors.New("invalid job request")
	// ErrTransient: the store is throttled, briefly unavailable or
	// unreachable (after its client's own retries); trying again later may
	// succeed.
	ErrTransient = errors.New("job store temporarily unavailable")
)

// Job is the record of one migration or analysis. It is a plain value (no
// pointers, maps or slices), so a copy is a deep copy. Stored as is (JSON or
// DynamoDB attributes) and served by the HTTP API.
type Job struct {
	ID     string `json:"id"`
	Kind   Kind   `json:"kind"`
	Status Status `json:"status"`
	// Stage is free-form progress detail within a status
	// ("planning", "copying", "cutover", ...).
	Stage string `json:"stage,omitempty"`
	// Mode is one of the Mode* constants; empty for analysis jobs.
	Mode string `json:"mode,omitempty"`

	// Source and Target are REDACTED endpoint strings, for display only.
	// The real credentials are resolved from the secret refs at run time.
	Source          string `json:"source"`
	Target          string `json:"target"`
	SourceSecretRef string `json:"sourceSecretRef,omitempty"`
	TargetSecretRef string `json:"targetSecretRef,omitempty"`

	Options  Options  `json:"options"`
	Counters Counters `json:"counters"`
	Error    string   `json:"error,omitempty"`

	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// ExpireAt lets old jobs age out (DynamoDB TTL; the bolt store sweeps
	// expired jobs when it opens). Whole seconds.
	ExpireAt time.Time `json:"expireAt,omitzero"`

	ExecutionARN string `json:"executionArn,omitempty"`
	TaskARN      string `json:"taskArn,omitempty"`

	// Progress is the last progress of a redis-shake run (the redis_shake
	// modes; zero in command mode, whose progress is in Counters and the
	// shards). Stage says where the run stands (see the Stage* constants).
	Progress Progress `json:"progress,omitzero"`
	// Request is an operator's request to the process that runs the job
	// (RequestCutover, RequestStop), "" for none. That process watches the
	// record and acts on it; see workflow.RequestCutover.
	Request string `json:"request,omitempty"`
}

// Progress is what redis-shake last reported of a run. Counts are entries
// written to the target: keys (or parts of big keys) in scan mode and in
// the initial sync, commands while replicating. A plain value.
type Progress struct {
	// Phase is redis-shake's reader phase ("scanning", "syncing_rdb",
	// "syncing_aof", ...).
	Phase     string  `json:"phase,omitempty"`
	Keys      int64   `json:"keys"`
	OpsPerSec float64 `json:"opsPerSec"`
	// ScanPercent: scan mode, how far the SCAN is (0-100).
	ScanPercent float64 `json:"scanPercent"`
	// RDBBytesDone of RDBBytesTotal: sync mode, the RDB written to the
	// target during the initial sync (approximate: redis-shake rounds them).
	RDBBytesDone  int64 `json:"rdbBytesDone"`
	RDBBytesTotal int64 `json:"rdbBytesTotal"`
	// AOFDiff: sync mode, replication bytes received and not yet written.
	AOFDiff int64 `json:"aofDiff"`
	// ReadyForCutover: sync mode, replicating with nothing pending for a
	// while: stop the writes to the source, then cut over.
	ReadyForCutover bool `json:"readyForCutover"`
}

// Stages of a redis-shake job (Job.Stage) besides redis-shake's own
// (initial_sync, replicating, done, failed: shake.Stage).
const (
	StageCuttingOver = "cutting_over" // a cutover was requested: redis-shake is stopping
	StageCutOver     = "cut_over"     // redis-shake stopped for the cutover; validation is next
)

// Requests (Job.Request) to the process that runs a job.
const (
	// RequestCutover: redis_shake_sync, stop replicating (redis-shake is
	// stopped gracefully), then validate.
	RequestCutover = "cutover"
	// RequestStop: stop the run without validating; the job ends stopped.
	RequestStop = "stop"
)

// Options are the user's choices for a job.
type Options struct {
	Strategy    string `json:"strategy,omitempty"`
	OnConflict  string `json:"onConflict,omitempty"`
	Match       string `json:"match,omitempty"`
	Type        string `json:"type,omitempty"`
	MaxOps      int    `json:"maxOps,omitempty"`
	Parallel    int    `json:"parallel,omitempty"`
	Concurrency int    `json:"concurrency,omitempty"`
	Force       bool   `json:"force,omitempty"`
	// ChunkKeys bounds the keys one chunk copies (0: the runner's default;
	// on AWS, until the invocation's deadline). SampleSize is the number of
	// keys the analysis samples (0: its default). Both come with the job
	// request, so that the Lambda steps, which get only the job id, see them.
	ChunkKeys  int `json:"chunkKeys,omitempty"`
	SampleSize int `json:"sampleSize,omitempty"`
}

// Counters are the running totals of a job or a shard. Stores add to them
// atomically (AddCounters); Transition and Update never write them.
type Counters struct {
	Copied            int64 `json:"copied"`
	Skipped           int64 `json:"skipped"`
	Failed            int64 `json:"failed"`
	Expired           int64 `json:"expired"`
	Bytes             int64 `json:"bytes"`
	Fallbacks         int64 `json:"fallbacks"`
	EvalFallbacks     int64 `json:"evalFallbacks"`
	FieldTTLsDropped  int64 `json:"fieldTTLsDropped"`
	PendingNotCarried int64 `json:"pendingNotCarried"`
	ListsChanged      int64 `json:"listsChanged"`
	TempKeysSwept     int64 `json:"tempKeysSwept"`
}

// Add adds o to c field by field.
func (c *Counters) Add(o Counters) {
	c.Copied += o.Copied
	c.Skipped += o.Skipped
	c.Failed += o.Failed
	c.Expired += o.Expired
	c.Bytes += o.Bytes
	c.Fallbacks += o.Fallbacks
	c.EvalFallbacks += o.EvalFallbacks
	c.FieldTTLsDropped += o.FieldTTLsDropped
	c.PendingNotCarried += o.PendingNotCarried
	c.ListsChanged += o.ListsChanged
	c.TempKeysSwept += o.TempKeysSwept
}

// Shard is the resume checkpoint of one (node, db) SCAN: where the cursor
// stands and what it has done so far. Stores key it by Node and DB.
type Shard struct {
	Node   string `json:"node"`
	DB     int    `json:"db"`
	Cursor string `json:"cursor"`
	Done   bool   `json:"done"`
	// Commands: the DUMP/RESTORE fast path was refused for this shard; copy
	// with per-type commands from here on.
	Commands bool `json:"commands"`
	// InFlight is set while a chunk of the shard runs. Found set when a
	// chunk starts, it means the last one died before its checkpoint.
	InFlight bool `json:"inFlight,omitempty"`
	// Dirty: a chunk of the shard may have left temporary keys on the
	// target (it failed, died, or could not delete one); the end of the
	// shard sweeps them. A clean shard skips that SCAN of the target.
	Dirty     bool      `json:"dirty,omitempty"`
	Counters  Counters  `json:"counters"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// ID generation: 10 characters of millisecond time then 16 random ones, in
// Crockford's lowercase base32 (ASCII order = numeric order), so ids sort by
// creation time; within one millisecond the random part is incremented, so
// ids made by one process are strictly increasing.
const idAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

var idState struct {
	sync.Mutex
	ms   uint64
	hi   uint16 // top 16 of the 80 random bits
	lo   uint64 // low 64
	init bool
}

// NewID returns a new job id: 26 lowercase URL-safe characters, unique,
// sortable by creation time, and valid as a Step Functions execution name.
func NewID() string {
	now := uint64(time.Now().UnixMilli())
	idState.Lock()
	if !idState.init || now > idState.ms {
		var b [10]byte
		_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
		idState.ms, idState.init = now, true
		idState.hi = binary.BigEndian.Uint16(b[:2])
		idState.lo = binary.BigEndian.Uint64(b[2:])
	} else { // same millisecond, or the clock stepped back: stay increasing
		idState.lo++
		if idState.lo == 0 {
			idState.hi++
			if idState.hi == 0 {
				idState.ms++
			}
		}
	}
	ms, hi, lo := idState.ms, idState.hi, idState.lo
	idState.Unlock()

	var out [26]byte
	for i := 9; i >= 0; i-- { // 50 bits of time
		out[i] = idAlphabet[ms&31]
		ms >>= 5
	}
	for i := 25; i >= 10; i-- { // 80 random bits
		out[i] = idAlphabet[lo&31]
		lo = lo>>5 | uint64(hi&31)<<59
		hi >>= 5
	}
	return string(out[:])
}

// ValidID reports whether id can name a job: 1 to 80 characters of
// [A-Za-z0-9_-] (a Step Functions execution name, and safe in store keys).
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > 80 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
