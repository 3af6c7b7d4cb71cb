package job

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Memory is a Store held in process memory, guarded by one mutex. For tests
// and for runs that need no history.
type Memory struct {
	mu    sync.Mutex
	jobs  map[string]*memRecord
	slots map[Kind]map[string]bool
}

type memRecord struct {
	job     Job
	shards  map[shardKey]Shard
	reports map[string][]byte
}

type shardKey struct {
	node string
	db   int
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory Store.
func NewMemory() *Memory {
	return &Memory{jobs: map[string]*memRecord{}, slots: map[Kind]map[string]bool{}}
}

func (m *Memory) record(id string) (*memRecord, error) {
	r, ok := m.jobs[id]
	if !ok {
		return nil, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	return r, nil
}

func (m *Memory) Create(ctx context.Context, j Job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	j, err := Prepare(j, time.Now())
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.jobs[j.ID]; ok {
		return fmt.Errorf("create job %s: id exists: %w", j.ID, ErrConflict)
	}
	m.jobs[j.ID] = &memRecord{job: j, shards: map[shardKey]Shard{}, reports: map[string][]byte{}}
	return nil
}

func (m *Memory) Get(ctx context.Context, id string) (Job, error) {
	if err := ctx.Err(); err != nil {
		return Job{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.record(id)
	if err != nil {
		return Job{}, err
	}
	return r.job, nil
}

func (m *Memory) List(ctx context.Context, opts ListOptions) ([]Job, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	limit, err := opts.Check()
	if err != nil {
		return nil, "", err
	}
	var after *memCursor
	if opts.Next != "" {
		c, err := decodeMemCursor(opts.Next)
		if err != nil {
			return nil, "", err
		}
		after = &c
	}

	m.mu.Lock()
	all := make([]Job, 0, len(m.jobs))
	for _, r := range m.jobs {
		if opts.Match(r.job) {
			all = append(all, r.job)
		}
	}
	m.mu.Unlock()

	slices.SortFunc(all, func(a, b Job) int { return cursorOf(b).compare(cursorOf(a)) }) // newest first
	start := 0
	if after != nil {
		start, _ = slices.BinarySearchFunc(all, *after, func(j Job, c memCursor) int {
			return c.compare(cursorOf(j)) // descending order
		})
		if start < len(all) && cursorOf(all[start]) == *after {
			start++
		}
	}
	end := min(start+limit, len(all))
	page := all[start:end]
	next := ""
	if end < len(all) {
		next = cursorOf(page[len(page)-1]).encode()
	}
	return slices.Clone(page), next, nil
}

// memCursor is a position in the (CreatedAt, ID) order.
type memCursor struct {
	ns int64
	id string
}

func cursorOf(j Job) memCursor { return memCursor{j.CreatedAt.UnixNano(), j.ID} }

func (c memCursor) compare(o memCursor) int {
	return cmp.Or(cmp.Compare(c.ns, o.ns), strings.Compare(c.id, o.id))
}

func (c memCursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.ns, 10) + "/" + c.id))
}

func decodeMemCursor(s string) (memCursor, error) {
	bad := fmt.Errorf("list jobs: malformed next token: %w", ErrInvalid)
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return memCursor{}, bad
	}
	ns, id, ok := bytes.Cut(b, []byte("/"))
	if !ok {
		return memCursor{}, bad
	}
	n, err := strconv.ParseInt(string(ns), 10, 64)
	if err != nil || !ValidID(string(id)) {
		return memCursor{}, bad
	}
	return memCursor{n, string(id)}, nil
}

func (m *Memory) Transition(ctx context.Context, id string, to Status, mut func(*Job)) (Job, error) {
	return m.modify(ctx, id, func(j Job) (Job, error) { return Apply(j, to, mut, time.Now()) })
}

func (m *Memory) Update(ctx context.Context, id string, mut func(*Job)) (Job, error) {
	return m.modify(ctx, id, func(j Job) (Job, error) { return ApplyUpdate(j, mut, time.Now()) })
}

func (m *Memory) modify(ctx context.Context, id string, apply func(Job) (Job, error)) (Job, error) {
	if err := ctx.Err(); err != nil {
		return Job{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.record(id)
	if err != nil {
		return Job{}, err
	}
	j, err := apply(r.job)
	if err != nil {
		return Job{}, err
	}
	r.job = j
	return j, nil
}

func (m *Memory) AddCounters(ctx context.Context, id string, c Counters) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.record(id)
	if err != nil {
		return err
	}
	r.job.Counters.Add(c)
	return nil
}

func (m *Memory) PutShard(ctx context.Context, id string, s Shard) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckShard(s); err != nil {
		return fmt.Errorf("job %s: %w", id, err)
	}
	if s.UpdatedAt.IsZero() {
		s.UpdatedAt = time.Now()
	}
	s.UpdatedAt = normTime(s.UpdatedAt)
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.record(id)
	if err != nil {
		return err
	}
	r.shards[shardKey{s.Node, s.DB}] = s
	return nil
}

func (m *Memory) Shards(ctx context.Context, id string) ([]Shard, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.record(id)
	if err != nil {
		return nil, err
	}
	out := make([]Shard, 0, len(r.shards))
	for _, s := range r.shards {
		out = append(out, s)
	}
	SortShards(out)
	return out, nil
}

func (m *Memory) PutReport(ctx context.Context, id, name string, body []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if name == "" {
		return fmt.Errorf("job %s: report name is empty: %w", id, ErrInvalid)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.record(id)
	if err != nil {
		return err
	}
	r.reports[name] = bytes.Clone(body)
	return nil
}

func (m *Memory) Report(ctx context.Context, id, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.record(id)
	if err != nil {
		return nil, err
	}
	body, ok := r.reports[name]
	if !ok {
		return nil, fmt.Errorf("job %s: report %q: %w", id, name, ErrNotFound)
	}
	return bytes.Clone(body), nil
}

func (m *Memory) ReportNames(ctx context.Context, id, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.record(id)
	if err != nil {
		return nil, err
	}
	names := []string{}
	for name := range r.reports {
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}

func (m *Memory) Acquire(ctx context.Context, id string, kind Kind, limit int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckSlot(id, kind, limit); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	held := m.slots[kind]
	if held == nil {
		held = map[string]bool{}
		m.slots[kind] = held
	}
	if held[id] {
		return nil
	}
	if len(held) >= limit {
		return fmt.Errorf("job %s: %d of %d %s slots held: %w", id, len(held), limit, kind, ErrLimit)
	}
	held[id] = true
	return nil
}

func (m *Memory) Release(ctx context.Context, id string, kind Kind) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckSlot(id, kind, 1); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.slots[kind], id)
	return nil
}

// Close does nothing; the Memory store stays usable.
func (m *Memory) Close() error { return nil }
