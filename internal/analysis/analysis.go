// Package analysis is phase 1 of a migration: it reads a source and a
// target, writes nothing to either, and reports what a migration would move
// (keys, types, memory, TTLs, hash field TTLs, the command mix) and what
// would break or differ, as findings with a severity. Blocking findings are
// enforced by Report.Gate.
//
// It is light on production servers: SCAN with COUNT and pipelines, a
// sample of at most 50,000 keys, a time budget and an optional rate limit;
// never KEYS, never DEBUG. A user that may not run a command the analysis
// uses (a read-only ACL user) gets a permissions finding, not an error.
// The ACL pre-flight checks with ACL DRYRUN, which runs nothing, whether
// each side's user may run the commands a migration would send
// (acl_preflight findings).
//
// The analyze Lambda and the local workflow both call Analyze.
package analysis

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"
	"golang.org/x/time/rate"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/topology"
)

// Sample sizes (keys over all shards) and the default time budget.
const (
	DefaultSample     = 5_000
	MinSample         = 1_000
	MaxSample         = 50_000
	DefaultTimeBudget = 30 * time.Second
)

// ErrInvalidOptions is wrapped by Options.Check's errors.
var ErrInvalidOptions = errors.New("invalid analysis options")

// Options shape an analysis. The zero value is the default.
type Options struct {
	// Sample is how many keys to sample over all shards: 1,000 to 50,000;
	// 0 means DefaultSample.
	Sample int
	// TimeBudget bounds the sampling; when it runs out the report says so
	// and extrapolates from what was sampled. 0 means DefaultTimeBudget.
	TimeBudget time.Duration
	// MaxOps limits the commands per second sent to each side (0: no
	// limit). Pipelined commands count one by one.
	MaxOps int
	// JobID is copied into the report.
	JobID string
	// Match and Type are the copy's filters (kvmigrate --match, --type):
	// a SCAN MATCH glob and one of topology.KeyTypes. With either, the report
	// describes the keys a migration would copy, not the whole keyspace:
	// the sample SCANs with the same MATCH and TYPE as the copy, and the
	// key count is extrapolated from the share of keys that match (see
	// Report.Filter). "" (or a Match of "*") filters nothing.
	Match string
	Type  string
	// NoSweep turns the big-key sweep off (see LargestKeys.Sweep): the
	// largest keys then come from the sample alone.
	NoSweep bool
}

// Check validates o.
func (o Options) Check() error {
	if o.Sample != 0 && (o.Sample < MinSample || o.Sample > MaxSample) {
		return fmt.Errorf("sample size %d: must be from %d to %d keys: %w", o.Sample, MinSample, MaxSample, ErrInvalidOptions)
	}
	if o.TimeBudget < 0 {
		return fmt.Errorf("time budget %s: must not be negative: %w", o.TimeBudget, ErrInvalidOptions)
	}
	if o.MaxOps < 0 {
		return fmt.Errorf("max ops %d: must not be negative: %w", o.MaxOps, ErrInvalidOptions)
	}
	if err := topology.CheckKeyType(o.Type); err != nil {
		return fmt.Errorf("%w: %w", err, ErrInvalidOptions)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Sample == 0 {
		o.Sample = DefaultSample
	}
	if o.TimeBudget == 0 {
		o.TimeBudget = DefaultTimeBudget
	}
	if o.Match == "*" {
		o.Match = ""
	}
	return o
}

// filtered reports whether the options select some keys only.
func (o Options) filtered() bool { return o.Match != "" || o.Type != "" }

// Conn is what the analysis needs of a connection (*endpoint.Conn has it).
type Conn interface {
	Endpoint() endpoint.Endpoint
	Cluster() bool
	Masters(ctx context.Context) ([]string, error)
	Node(addr string, db int) (valkey.Client, error)
	Client(db int) (valkey.Client, error)
}

// Analyze reads src and dst and returns the report. It writes nothing to
// either. Missing permissions and commands a server lacks become findings
// and notes; errors are for what makes a report impossible (a server that
// cannot be read at all, a lost connection, ctx).
func Analyze(ctx context.Context, src, dst Conn, opts Options) (*Report, error) {
	if err := opts.Check(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	started := time.Now()
	a := &analyzer{
		opts:   opts,
		srcLim: newLimiter(opts.MaxOps),
		dstLim: newLimiter(opts.MaxOps),
	}
	a.memOK.Store(true)
	r := &Report{Version: ReportVersion, JobID: opts.JobID, StartedAt: started.UTC().Truncate(time.Millisecond)}

	s, err := a.discover(ctx, "source", src)
	if err != nil {
		return nil, fmt.Errorf("analyze source %s: %w", src.Endpoint(), err)
	}
	d, err := a.discover(ctx, "target", dst)
	if err != nil {
		return nil, fmt.Errorf("analyze target %s: %w", dst.Endpoint(), err)
	}
	// The command logs first, so that the analysis's own SCANs are not in them.
	r.Commands, err = a.commands(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("analyze source %s: %w", src.Endpoint(), err)
	}

	plan := a.plan(s, d)
	results, stopped, err := a.sampleAll(ctx, s, d, plan)
	if err != nil {
		return nil, err
	}

	r.Source, r.Target = s.side, d.side
	r.Source.Denied, r.Target.Denied = a.denied("source"), a.denied("target")
	r.FastPath = FastPath{
		SourceRDBVersion: s.info.RDBVersion,
		TargetRDBVersion: topology.MaxRDBVersion(d.info.Engine, d.info.Version),
		Available:        d.info.Accepts(s.info.RDBVersion),
	}
	a.summarize(r, plan, results, stopped, s, d)
	if err := a.preflight(ctx, r, plan, results, s, d); err != nil {
		return nil, err
	}
	r.Notes = append(r.Notes, a.notes...)
	r.Findings = Findings(r)
	for _, f := range r.Findings {
		r.Blocking = r.Blocking || f.Severity == Blocking
	}
	r.DurationMs = time.Since(started).Milliseconds()
	return r, nil
}

// analyzer holds the state of one analysis.
type analyzer struct {
	opts           Options
	srcLim, dstLim *limiter
	memOK          atomic.Bool // MEMORY USAGE allowed
	hfeOK          atomic.Bool // HSCAN/HPEXPIRETIME allowed on the source

	mu       sync.Mutex
	notes    []string
	deniedBy map[string][]string // side → commands denied, in order seen
}

func (a *analyzer) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range a.notes {
		if n == msg {
			return
		}
	}
	a.notes = append(a.notes, msg)
}

// deny records that side's user may not run command.
func (a *analyzer) deny(side, command string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.deniedBy == nil {
		a.deniedBy = map[string][]string{}
	}
	for _, c := range a.deniedBy[side] {
		if c == command {
			return
		}
	}
	a.deniedBy[side] = append(a.deniedBy[side], command)
}

func (a *analyzer) denied(side string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.deniedBy[side]...)
}

// optional classifies the error of a command the report can do without:
// nil error → ok; a permission denial → recorded, not ok; another error
// reply (unknown command, disabled command) → a note, not ok; anything
// else (connection lost, ctx) → fatal.
func (a *analyzer) optional(side, command string, err error) (ok bool, fatal error) {
	if err == nil {
		return true, nil
	}
	if isNoPerm(err) {
		a.deny(side, command)
		return false, nil
	}
	var verr *valkey.ValkeyError
	if errors.As(err, &verr) {
		a.note("%s: %s failed (%s); the report leaves it out", side, command, endpoint.Redact(firstLine(verr.Error())))
		return false, nil
	}
	return false, fmt.Errorf("%s: %w", command, err)
}

func isNoPerm(err error) bool {
	if errors.Is(err, endpoint.ErrNoPermission) {
		return true
	}
	var verr *valkey.ValkeyError
	return errors.As(err, &verr) && strings.HasPrefix(verr.Error(), "NOPERM")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// limiter rate-limits commands to one side; nil means no limit.
type limiter struct{ l *rate.Limiter }

func newLimiter(perSecond int) *limiter {
	if perSecond <= 0 {
		return nil
	}
	// A tenth of a second's worth at once: pipelines are split into waits.
	return &limiter{rate.NewLimiter(rate.Limit(perSecond), max(perSecond/10, 1))}
}

// wait blocks until n commands may be sent.
func (l *limiter) wait(ctx context.Context, n int) error {
	if l == nil {
		return ctx.Err()
	}
	for n > 0 {
		k := min(n, l.l.Burst())
		if err := l.l.WaitN(ctx, k); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		n -= k
	}
	return nil
}

// shardPlan is one (source master, database) to sample, and the target
// database its keys go to.
type shardPlan struct {
	node     string
	db, tdb  int
	keys     int64
	expires  int64 // -1: unknown
	quota    int
	targetOK bool // the target database holds keys: check overlap
}

// plan lists the shards a migration would copy, as transfer.Plan does
// (without its refusals: those are findings here), and shares the sample
// among them in proportion to their key counts.
func (a *analyzer) plan(s, d *sideData) []shardPlan {
	srcEP, dstEP := s.conn.Endpoint(), d.conn.Endpoint()
	var dbs []int
	single := srcEP.OneDB() || dstEP.OneDB()
	if single {
		dbs = []int{srcEP.DB}
	} else {
		dbs = s.info.Databases()
	}
	targetDB := func(db int) int {
		if single {
			return dstEP.DB
		}
		return db
	}
	var out []shardPlan
	for _, m := range s.info.Masters {
		for _, db := range dbs {
			n := m.Keyspace[db]
			if !single && n == 0 {
				continue
			}
			exp := int64(-1)
			if e, ok := s.expires[m.Addr]; ok {
				exp = e[db]
			}
			tdb := targetDB(db)
			out = append(out, shardPlan{node: m.Addr, db: db, tdb: tdb, keys: n, expires: exp, targetOK: d.info.Keyspace[tdb] > 0})
		}
	}
	a.share(out)
	return out
}

// share sets the shards' quotas: every key when the sample covers them
// all; otherwise the sample split in proportion to the key counts (largest
// remainder), at least one key per non-empty shard.
func (a *analyzer) share(plan []shardPlan) {
	n := a.opts.Sample
	var total int64
	for _, p := range plan {
		total += p.keys
	}
	if total <= int64(n) {
		for i := range plan {
			plan[i].quota = n // every key, and room for keys added meanwhile
		}
		return
	}
	type rem struct {
		i int
		r float64
	}
	var rems []rem
	given := 0
	for i, p := range plan {
		exact := float64(n) * float64(p.keys) / float64(total)
		q := int(exact)
		if q == 0 && p.keys > 0 {
			q = 1
		}
		plan[i].quota = q
		given += q
		rems = append(rems, rem{i, exact - float64(int(exact))})
	}
	sort.SliceStable(rems, func(x, y int) bool { return rems[x].r > rems[y].r })
	for k := 0; given < n && k < len(rems); k++ {
		plan[rems[k].i].quota++
		given++
	}
	for given > n { // the minimum of one took more than the sample
		big := 0
		for i := range plan {
			if plan[i].quota > plan[big].quota {
				big = i
			}
		}
		plan[big].quota--
		given--
	}
}
