// Package transfer copies keys from a Redis or Valkey source to a Redis or
// Valkey target, exactly (types, bytes, TTLs, databases, cluster slots), in
// resumable chunks of one shard (one master node and one database).
//
// A chunk SCANs from a cursor, probes each batch of keys with one pipeline,
// writes small strings with SET PX in one pipeline, small compound keys with
// DUMP/RESTORE when the target accepts the source's payloads (otherwise, for
// hashes, lists, sets and sorted sets, read whole in one pipeline and
// written with one atomic script call per key), and streams everything else
// through a temporary key that is renamed into place with its TTL in one
// atomic step. The same chunk run again from the same cursor
// converges to the same target state.
package transfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/topology"

	"github.com/valkey-io/valkey-go"
	"golang.org/x/time/rate"

	"github.com/kvmigrate/kvmigrate/internal/job"
)

// Strategy picks how keys are read and written.
type Strategy string

// Strategies.
const (
	// StrategyAuto writes strings with SET, small compound keys with
	// DUMP/RESTORE while the target accepts the payloads, and the rest
	// with type commands.
	StrategyAuto Strategy = "auto"
	// StrategyDump uses DUMP/RESTORE for every key small enough to hold
	// in memory (big keys are streamed with type commands).
	StrategyDump Strategy = "dump"
	// StrategyCommands never uses DUMP/RESTORE.
	StrategyCommands Strategy = "commands"
)

// Conflict says what to do with a key that already exists on the target.
type Conflict string

// Conflict policies.
const (
	ConflictReplace Conflict = "replace"
	ConflictSkip    Conflict = "skip"
)

// Errors a caller can classify with errors.Is.
var (
	// ErrInvalidOptions marks options that can never work.
	ErrInvalidOptions = errors.New("invalid copy options")
	// ErrTransient marks failures worth retrying: a lost connection, a
	// timeout, a server that is loading or failing over.
	ErrTransient = errors.New("transient failure")
)

// Conns gives the copier its clients (endpoint.Conn has these methods).
type Conns interface {
	// Client is a routing client for database db.
	Client(db int) (valkey.Client, error)
	// Node is a client for exactly one node, on database db.
	Node(addr string, db int) (valkey.Client, error)
	// Masters lists the master nodes.
	Masters(ctx context.Context) ([]string, error)
}

// Options tune a Copier. Zero values take the defaults.
type Options struct {
	// JobID names the job in its temporary keys: 1-64 letters, digits
	// or '-'.
	JobID      string
	Strategy   Strategy
	OnConflict Conflict
	// Match is a SCAN MATCH glob; Type a SCAN TYPE filter (string, list,
	// set, zset, hash, stream).
	Match string
	Type  string
	// BatchSize is the SCAN COUNT and probe pipeline size (default 500).
	BatchSize int
	// InFlight bounds the keys copied concurrently (default 64, min 50).
	InFlight int
	// MaxOps limits commands per second sent to the source (0: no limit).
	MaxOps int
	// TargetDB maps a source database to the target database; nil keeps
	// the number.
	TargetDB func(db int) int
	// SourceFieldTTL / TargetFieldTTL: the side has per-field hash expiry.
	SourceFieldTTL, TargetFieldTTL bool
	// FastPath says the target is expected to accept the source's DUMP
	// payloads (from topology); auto starts with commands when false.
	FastPath bool
	// Progress, when set, receives counters after each batch.
	Progress func(node string, db int, delta job.Counters)
	Logger   *slog.Logger
}

// Defaults and bounds.
const (
	DefaultBatchSize = 500
	DefaultInFlight  = 64
	// inlineMax is the largest string read in the probe; longer strings
	// are streamed in bigChunk pieces.
	inlineMax = 16 << 10
	bigChunk  = 1 << 20
	// dumpMaxElements: compound keys up to this many elements take the
	// DUMP/RESTORE path; bigger ones are streamed with type commands so
	// memory stays bounded whatever the key size.
	dumpMaxElements = 2_000
	// elemChunk is how many elements one streamed read or write moves.
	elemChunk = 1_000
	// wholeMax: sets and sorted sets up to this size are read at once
	// (SMEMBERS, ZRANGE); bigger ones are scanned.
	wholeMax = 10_000
)

// Copier copies keys between two deployments. It is safe for concurrent
// use by the chunks of several shards.
type Copier struct {
	src, dst Conns
	opts     Options
	log      *slog.Logger
	limiter  *rate.Limiter
	// evalDenied is set once the target refuses EVAL; from then on
	// compound keys are finalised with PEXPIRE (on the temporary key) and
	// RENAME.
	evalDenied atomic.Bool
}

// jobIDPattern leaves out '_', the separator in temporary key names: with
// it, the sweep pattern of job "a" (__kvmigrate_tmp_a_*) would match, and
// delete, the temporary keys of a job "a_b" running on the same target.
var jobIDPattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// New builds a Copier.
func New(src, dst Conns, opts Options) (*Copier, error) {
	var problems []string
	if !jobIDPattern.MatchString(opts.JobID) {
		problems = append(problems, fmt.Sprintf("job id %q must be 1-64 letters, digits or '-'", opts.JobID))
	}
	switch opts.Strategy {
	case "":
		opts.Strategy = StrategyAuto
	case StrategyAuto, StrategyDump, StrategyCommands:
	default:
		problems = append(problems, fmt.Sprintf("strategy %q is not one of auto, dump, commands", opts.Strategy))
	}
	switch opts.OnConflict {
	case "":
		opts.OnConflict = ConflictReplace
	case ConflictReplace, ConflictSkip:
	default:
		problems = append(problems, fmt.Sprintf("on-conflict %q is not one of replace, skip", opts.OnConflict))
	}
	if err := topology.CheckKeyType(opts.Type); err != nil {
		problems = append(problems, err.Error())
	}
	if opts.MaxOps < 0 {
		problems = append(problems, "max-ops must not be negative")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalidOptions, strings.Join(problems, "; "))
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.InFlight <= 0 {
		opts.InFlight = DefaultInFlight
	}
	opts.InFlight = max(opts.InFlight, 50)
	if opts.TargetDB == nil {
		opts.TargetDB = func(db int) int { return db }
	}
	c := &Copier{src: src, dst: dst, opts: opts, log: opts.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxOps > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(opts.MaxOps), opts.MaxOps)
	}
	return c, nil
}

// Chunk names where a chunk starts.
type Chunk struct {
	Node   string `json:"node"`
	DB     int    `json:"db"`
	Cursor string `json:"cursor"`
	// Commands forces type commands for this shard (the target refused a
	// DUMP payload earlier).
	Commands bool `json:"commands,omitempty"`
}

// Limits bound one chunk: it stops scanning at Deadline or after MaxKeys
// keys, whichever comes first (zero: no bound), and finishes the keys it
// already scanned. The first SCAN page is always copied, even past the
// Deadline, so that every chunk moves its shard on.
type Limits struct {
	Deadline time.Time
	MaxKeys  int
}

// Result is where a chunk ended and what it did.
type Result struct {
	Chunk
	Done     bool         `json:"done"`
	Scanned  int64        `json:"scanned"`
	Counters job.Counters `json:"counters"`
	// Errors holds the first per-key failures, Warnings the first keys
	// that changed while being copied, for the report.
	Errors   []string `json:"errors,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// TempKeysLeft counts temporary keys this chunk could neither rename
	// nor delete (the target failed): the shard must be swept.
	TempKeysLeft int64 `json:"tempKeysLeft,omitempty"`
}

const maxErrors = 20

// chunkRun is the state of one running chunk.
type chunkRun struct {
	c        *Copier
	node     string
	db       int
	shard    string        // ShardTag, part of the temporary key names
	src, dst valkey.Client // routing clients
	commands atomic.Bool   // fast path refused: commands from now on
	tempLeft atomic.Int64  // temporary keys neither renamed nor deleted (yet)

	cancel context.CancelCauseFunc

	mu       sync.Mutex
	counters job.Counters
	errs     []string
	warnings []string
	fatal    error
	keys     chan keyJob
}

// CopyChunk copies the keys of one shard from ch.Cursor on, until the scan
// completes or a limit is reached, and returns the cursor to go on from.
// Running out of time is not an error. An error means nothing of this
// chunk may be counted as done: run it again from the same cursor.
func (c *Copier) CopyChunk(ctx context.Context, ch Chunk, lim Limits) (Result, error) {
	res := Result{Chunk: ch}
	scanner, err := c.src.Node(ch.Node, ch.DB)
	if err != nil {
		return res, fmt.Errorf("source node %s db %d: %w", ch.Node, ch.DB, err)
	}
	src, err := c.src.Client(ch.DB)
	if err != nil {
		return res, fmt.Errorf("source db %d: %w", ch.DB, err)
	}
	dst, err := c.dst.Client(c.opts.TargetDB(ch.DB))
	if err != nil {
		return res, fmt.Errorf("target db %d: %w", c.opts.TargetDB(ch.DB), err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	run := &chunkRun{c: c, node: ch.Node, db: ch.DB, shard: ShardTag(ch.Node, ch.DB), src: src, dst: dst, cancel: cancel, keys: make(chan keyJob)}
	run.commands.Store(ch.Commands || c.opts.Strategy == StrategyCommands ||
		(c.opts.Strategy == StrategyAuto && !c.opts.FastPath))

	// Compound and big keys are copied by InFlight workers.
	var workers sync.WaitGroup
	for range c.opts.InFlight {
		workers.Go(func() {
			for kj := range run.keys {
				run.copyKey(ctx, kj)
			}
		})
	}
	// Batches are probed and written concurrently with the next SCAN.
	var batches sync.WaitGroup
	sem := make(chan struct{}, 4)

	cursor := ch.Cursor
	if cursor == "" {
		cursor = "0"
	}
	started := false
	for {
		// The deadline bounds the pages after the first: a chunk always
		// moves its shard on by at least one page, however late it began
		// (a slow start must not make a loop of chunks that never advance).
		if ctx.Err() != nil || (started && !lim.Deadline.IsZero() && time.Now().After(lim.Deadline)) ||
			(lim.MaxKeys > 0 && res.Scanned >= int64(lim.MaxKeys)) {
			break
		}
		if started && cursor == "0" {
			break
		}
		started = true
		if err := c.wait(ctx, 1); err != nil {
			break
		}
		count := c.opts.BatchSize
		if lim.MaxKeys > 0 {
			// A small key budget is honoured at page granularity: ask SCAN
			// for no more than what is left of it (COUNT is a hint).
			count = min(count, lim.MaxKeys-int(res.Scanned))
		}
		next, keys, err := c.scan(ctx, scanner, cursor, count)
		if err != nil {
			run.abort(classify(fmt.Errorf("SCAN %s db %d cursor %s: %w", ch.Node, ch.DB, cursor, err)))
			break
		}
		cursor = next
		res.Scanned += int64(len(keys))
		if len(keys) == 0 {
			continue
		}
		sem <- struct{}{}
		batches.Go(func() {
			defer func() { <-sem }()
			run.batch(ctx, keys)
		})
	}
	batches.Wait()
	close(run.keys)
	workers.Wait()

	res.Counters = run.counters
	res.Errors = run.errs
	res.Warnings = run.warnings
	res.Commands = run.commands.Load()
	res.TempKeysLeft = run.tempLeft.Load()
	if run.fatal != nil {
		return res, run.fatal
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.Cursor = cursor
	res.Done = cursor == "0" && started
	return res, nil
}

func (c *Copier) scan(ctx context.Context, node valkey.Client, cursor string, count int) (string, []string, error) {
	args := []string{cursor}
	if c.opts.Match != "" {
		args = append(args, "MATCH", c.opts.Match)
	}
	args = append(args, "COUNT", strconv.Itoa(count))
	if c.opts.Type != "" {
		args = append(args, "TYPE", c.opts.Type)
	}
	arr, err := node.Do(ctx, node.B().Arbitrary("SCAN").Args(args...).Build()).ToArray()
	if err != nil {
		return "", nil, err
	}
	if len(arr) != 2 {
		return "", nil, fmt.Errorf("unexpected SCAN reply with %d elements", len(arr))
	}
	next, err := arr[0].ToString()
	if err != nil {
		return "", nil, err
	}
	keys, err := arr[1].AsStrSlice()
	return next, keys, err
}

// wait applies the source rate limit to n commands.
func (c *Copier) wait(ctx context.Context, n int) error {
	if c.limiter == nil {
		return nil
	}
	for n > 0 {
		step := min(n, c.limiter.Burst())
		if err := c.limiter.WaitN(ctx, step); err != nil {
			return err
		}
		n -= step
	}
	return nil
}

func (r *chunkRun) add(delta job.Counters) {
	r.mu.Lock()
	r.counters.Add(delta)
	r.mu.Unlock()
	if r.c.opts.Progress != nil {
		r.c.opts.Progress(r.node, r.db, delta)
	}
}

// fail records a per-key failure.
func (r *chunkRun) fail(key string, err error) {
	if isFatal(err) {
		r.abort(classify(fmt.Errorf("key %q: %w", key, err)))
		return
	}
	r.mu.Lock()
	r.counters.Failed++
	if len(r.errs) < maxErrors {
		r.errs = append(r.errs, fmt.Sprintf("key %q: %v", key, err))
	}
	r.mu.Unlock()
	if r.c.opts.Progress != nil {
		r.c.opts.Progress(r.node, r.db, job.Counters{Failed: 1})
	}
}

// abort stops the chunk: something failed that no later key can avoid.
func (r *chunkRun) abort(err error) {
	r.mu.Lock()
	if r.fatal == nil {
		r.fatal = err
	}
	r.mu.Unlock()
	r.cancel(err)
}

// warn records a key that changed while it was copied.
func (r *chunkRun) warn(key, what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.warnings) < maxErrors {
		r.warnings = append(r.warnings, fmt.Sprintf("key %q: %s", key, what))
	}
}

// stream hands a key to the streaming workers.
func (r *chunkRun) stream(ctx context.Context, kj keyJob) {
	select {
	case r.keys <- kj:
	case <-ctx.Done():
	}
}

func (r *chunkRun) aborted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fatal != nil
}

// isFatal tells errors that end the chunk (connection lost, target out of
// memory, read-only replica, loading) from those of one key.
func isFatal(err error) bool {
	if err == nil {
		return false
	}
	var unsupported errUnsupportedType
	if errors.As(err, &unsupported) {
		return false // that key only: the others of its shard are copied
	}
	var verr *valkey.ValkeyError
	if !errors.As(err, &verr) {
		return !valkey.IsValkeyNil(err)
	}
	msg := verr.Error()
	for _, p := range []string{"OOM", "READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOAUTH", "WRONGPASS"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// classify marks retryable errors with ErrTransient.
func classify(err error) error {
	var verr *valkey.ValkeyError
	if errors.As(err, &verr) {
		msg := verr.Error()
		for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY "} {
			if strings.HasPrefix(msg, p) {
				return fmt.Errorf("%w: %w", ErrTransient, err)
			}
		}
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrTransient, err)
}
