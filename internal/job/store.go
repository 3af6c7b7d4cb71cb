package job

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Store keeps jobs, their shard checkpoints, reports and the concurrency
// slots. Implementations: Memory (this package), job/bolt, job/dynamo; all
// pass jobtest.Run. Errors wrap ErrNotFound, ErrConflict, ErrLimit,
// ErrInvalid, ErrTransient or the context's error.
//
// The shape follows the DynamoDB single table (PK=job#<id>): Transition and
// Update are conditional writes that never write Counters (so a store can
// SET the other attributes on the condition "status = the status read" and
// retry), AddCounters is an atomic ADD, List pages with an opaque token.
type Store interface {
	// Create stores a new job (see Prepare for the checks and defaults).
	// ErrConflict if the id exists.
	Create(ctx context.Context, j Job) error
	// Get returns the job. ErrNotFound.
	Get(ctx context.Context, id string) (Job, error)
	// List returns jobs newest first (CreatedAt, then ID, descending) and the
	// token of the next page, "" after the last one. A page may hold fewer
	// than Limit jobs even when next is not "".
	List(ctx context.Context, opts ListOptions) (jobs []Job, next string, err error)
	// Transition moves the job to status to if its current status allows it
	// (Job.CanTransition), applies mut, and returns the stored job; see
	// Apply. A *TransitionError (ErrConflict) leaves the job unchanged.
	Transition(ctx context.Context, id string, to Status, mut func(*Job)) (Job, error)
	// Update applies mut to the non-status fields (stage, ARNs, error,
	// options...); see ApplyUpdate.
	Update(ctx context.Context, id string, mut func(*Job)) (Job, error)
	// AddCounters atomically adds c to the job's counters. ErrNotFound.
	AddCounters(ctx context.Context, id string, c Counters) error
	// PutShard inserts or replaces the checkpoint of (s.Node, s.DB); a zero
	// UpdatedAt is set to now. ErrNotFound if the job does not exist.
	PutShard(ctx context.Context, id string, s Shard) error
	// Shards returns the job's checkpoints sorted by node, then db.
	// ErrNotFound if the job does not exist; none yet is an empty slice.
	Shards(ctx context.Context, id string) ([]Shard, error)
	// PutReport stores (replaces) a named report, e.g. ReportAnalysis.
	// ErrNotFound if the job does not exist.
	PutReport(ctx context.Context, id, name string, body []byte) error
	// Report returns a named report. ErrNotFound for no job or no report.
	Report(ctx context.Context, id, name string) ([]byte, error)
	// ReportNames lists the names of the job's reports that begin with
	// prefix ("" for all), in ascending byte order: a series of reports
	// such as the baseline snapshots "snapshot#<time>" (DynamoDB: a Query
	// with begins_with on the sort key). ErrNotFound if the job does not
	// exist; none is an empty slice.
	ReportNames(ctx context.Context, id, prefix string) ([]string, error)
	// Acquire takes one of limit concurrency slots of kind for id,
	// atomically; ErrLimit when limit slots of that kind are held by other
	// ids. Idempotent: an id that holds a slot gets nil again. The job need
	// not exist.
	Acquire(ctx context.Context, id string, kind Kind, limit int) error
	// Release frees id's slot of kind; releasing a slot not held is nil.
	Release(ctx context.Context, id string, kind Kind) error
	Close() error
}

// ListOptions filter and page List. Zero values mean "any" / "first page".
type ListOptions struct {
	Kind   Kind   `json:"kind,omitempty"`
	Status Status `json:"status,omitempty"`
	// Limit is the page size: 0 means DefaultListLimit; above MaxListLimit
	// it is capped.
	Limit int `json:"limit,omitempty"`
	// Next is the token a previous List returned.
	Next string `json:"next,omitempty"`
}

const (
	DefaultListLimit = 50
	MaxListLimit     = 1000
)

// Check validates the filters and returns the effective page size.
func (o ListOptions) Check() (limit int, err error) {
	if o.Kind != "" && !o.Kind.Valid() {
		return 0, fmt.Errorf("list jobs: unknown kind %q: %w", o.Kind, ErrInvalid)
	}
	if o.Status != "" && !o.Status.Valid() {
		return 0, fmt.Errorf("list jobs: unknown status %q: %w", o.Status, ErrInvalid)
	}
	switch {
	case o.Limit < 0:
		return 0, fmt.Errorf("list jobs: negative limit %d: %w", o.Limit, ErrInvalid)
	case o.Limit == 0:
		return DefaultListLimit, nil
	case o.Limit > MaxListLimit:
		return MaxListLimit, nil
	}
	return o.Limit, nil
}

// Match reports whether j passes the filters of o.
func (o ListOptions) Match(j Job) bool {
	return (o.Kind == "" || j.Kind == o.Kind) && (o.Status == "" || j.Status == o.Status)
}

// The helpers below are the rules every Store applies, so that memory, bolt
// and DynamoDB behave alike: a store reads the current record, calls one of
// them, and writes the result conditionally.

// Prepare checks a job before Create and fills its defaults: a valid id,
// kind, status (empty means pending; analysis jobs only hold analysis
// statuses) and mode; no plaintext password in Source or Target; CreatedAt
// and UpdatedAt default to now. Times are normalized (UTC, ExpireAt in whole
// seconds).
func Prepare(j Job, now time.Time) (Job, error) {
	if !ValidID(j.ID) {
		return Job{}, fmt.Errorf("create job: id %q must be 1-80 characters of [A-Za-z0-9_-]: %w", j.ID, ErrInvalid)
	}
	if !j.Kind.Valid() {
		return Job{}, fmt.Errorf("create job %s: unknown kind %q: %w", j.ID, j.Kind, ErrInvalid)
	}
	if j.Status == "" {
		j.Status = StatusPending
	}
	if !j.Status.Valid() || j.Kind == KindAnalysis && !analysisStatuses[j.Status] {
		return Job{}, fmt.Errorf("create job %s: status %q is not one a %s job can hold: %w", j.ID, j.Status, j.Kind, ErrInvalid)
	}
	if err := checkFields(j); err != nil {
		return Job{}, fmt.Errorf("create job %s: %w", j.ID, err)
	}
	if j.CreatedAt.IsZero() {
		j.CreatedAt = now
	}
	if j.UpdatedAt.IsZero() {
		j.UpdatedAt = j.CreatedAt
	}
	return normalize(j), nil
}

// Apply performs Transition on the current record j: j must allow to
// (*TransitionError otherwise); the status is set, then mut runs and may set
// Error, Stage, ARNs, Options, timestamps but not ID, Kind, Status,
// CreatedAt or Counters (ErrInvalid). Then UpdatedAt = now; StartedAt = now
// when leaving pending (if still zero); on reaching a finished status
// FinishedAt = now (if still zero) and ExpireAt = FinishedAt+Retention
// (unless mut changed ExpireAt).
func Apply(j Job, to Status, mut func(*Job), now time.Time) (Job, error) {
	if !j.CanTransition(to) {
		return Job{}, &TransitionError{ID: j.ID, Kind: j.Kind, From: j.Status, To: to}
	}
	from := j.Status
	before := j
	before.Status = to
	j.Status = to
	if err := mutate(&j, before, mut); err != nil {
		return Job{}, fmt.Errorf("job %s: transition %s -> %s: %w", j.ID, from, to, err)
	}
	j.UpdatedAt = now
	if from == StatusPending && j.StartedAt.IsZero() {
		j.StartedAt = now
	}
	if j.Finished() {
		if j.FinishedAt.IsZero() {
			j.FinishedAt = now
		}
		if j.ExpireAt.Equal(before.ExpireAt) {
			j.ExpireAt = j.FinishedAt.Add(Retention)
		}
	}
	return normalize(j), nil
}

// ApplyUpdate performs Update on the current record j: mut may change
// anything but ID, Kind, Status, CreatedAt and Counters (ErrInvalid); then
// UpdatedAt = now.
func ApplyUpdate(j Job, mut func(*Job), now time.Time) (Job, error) {
	if err := mutate(&j, j, mut); err != nil {
		return Job{}, fmt.Errorf("update job %s: %w", j.ID, err)
	}
	j.UpdatedAt = now
	return normalize(j), nil
}

func mutate(j *Job, before Job, mut func(*Job)) error {
	if mut == nil {
		return nil
	}
	mut(j)
	var changed []string
	if j.ID != before.ID {
		changed = append(changed, "ID")
	}
	if j.Kind != before.Kind {
		changed = append(changed, "Kind")
	}
	if j.Status != before.Status {
		changed = append(changed, "Status")
	}
	if !j.CreatedAt.Equal(before.CreatedAt) {
		changed = append(changed, "CreatedAt")
	}
	if j.Counters != before.Counters {
		changed = append(changed, "Counters")
	}
	if len(changed) > 0 {
		return fmt.Errorf("mutation changed %s (use Transition for the status, AddCounters for counters): %w",
			strings.Join(changed, ", "), ErrInvalid)
	}
	return checkFields(*j)
}

// checkFields checks the fields a mutation may change.
func checkFields(j Job) error {
	switch j.Mode {
	case "", ModeCommand, ModeRedisShake, ModeRedisShakeSync:
	default:
		return fmt.Errorf("unknown mode %q: %w", j.Mode, ErrInvalid)
	}
	switch j.Request {
	case "", RequestCutover, RequestStop:
	default:
		return fmt.Errorf("unknown request %q: %w", j.Request, ErrInvalid)
	}
	for _, e := range []struct{ name, value string }{{"source", j.Source}, {"target", j.Target}} {
		if HasPassword(e.value) {
			return fmt.Errorf("%s endpoint carries a password; store the redacted form and a secret ref: %w", e.name, ErrInvalid)
		}
	}
	return nil
}

func normalize(j Job) Job {
	j.CreatedAt = normTime(j.CreatedAt)
	j.UpdatedAt = normTime(j.UpdatedAt)
	j.StartedAt = normTime(j.StartedAt)
	j.FinishedAt = normTime(j.FinishedAt)
	j.ExpireAt = normTime(j.ExpireAt).Truncate(time.Second) // DynamoDB TTL: epoch seconds
	return j
}

// normTime drops the monotonic reading and the location, so a time compares
// the same before and after a store round trip.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Round(0)
}

// HasPassword reports whether an endpoint string carries a plaintext
// password: in its userinfo ("redis://user:secret@host") or a password=
// query parameter. A masked one ("xxxxx", "***", "redacted") is fine.
func HasPassword(endpoint string) bool {
	rest := endpoint
	if _, after, ok := strings.Cut(rest, "://"); ok {
		rest = after
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if _, pw, ok := strings.Cut(rest[:at], ":"); ok && !masked(pw) {
			return true
		}
	}
	if _, query, ok := strings.Cut(rest, "?"); ok {
		for _, kv := range strings.FieldsFunc(query, func(r rune) bool { return r == '&' || r == ';' }) {
			k, v, _ := strings.Cut(kv, "=")
			switch strings.ToLower(k) {
			case "password", "pass", "passwd", "pwd", "secret", "token":
				if !masked(v) {
					return true
				}
			}
		}
	}
	return false
}

func masked(s string) bool {
	if s == "" {
		return true
	}
	switch strings.ToLower(strings.Trim(s, "[]<>()")) {
	case "redacted", "hidden", "masked":
		return true
	}
	return strings.Trim(s, "xX*•") == ""
}

// CheckShard validates a checkpoint before PutShard.
func CheckShard(s Shard) error {
	if s.DB < 0 {
		return fmt.Errorf("shard %q db %d: negative db: %w", s.Node, s.DB, ErrInvalid)
	}
	return nil
}

// SortShards orders checkpoints by node, then db, as Shards returns them.
func SortShards(s []Shard) {
	slices.SortFunc(s, func(a, b Shard) int {
		return cmp.Or(strings.Compare(a.Node, b.Node), cmp.Compare(a.DB, b.DB))
	})
}

// CheckSlot validates the arguments of Acquire (and Release, with limit 1).
func CheckSlot(id string, kind Kind, limit int) error {
	if !ValidID(id) {
		return fmt.Errorf("slot for job %q: bad id: %w", id, ErrInvalid)
	}
	if !kind.Valid() {
		return fmt.Errorf("slot for job %s: unknown kind %q: %w", id, kind, ErrInvalid)
	}
	if limit < 1 {
		return fmt.Errorf("slot for job %s: limit %d must be at least 1: %w", id, limit, ErrInvalid)
	}
	return nil
}
