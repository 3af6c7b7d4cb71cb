// Package bolt is the local job.Store: one bbolt file, normally
// ~/.kvmigrate/jobs.db, held open (and locked) by one kvmigrate process.
//
// Layout (bucket/key):
//
//	store/schema             "1"
//	jobs/<id>/meta           the Job as JSON
//	jobs/<id>/shards/<node>\x00<db, 8 bytes big endian>   a Shard as JSON
//	jobs/<id>/reports/<name> report body
//	index/<createdAt ns, 8 bytes big endian><id>           newest-first listing
//	slots/<kind>/<id>        acquisition time (RFC 3339)
//
// bbolt serializes write transactions, so the conditional Transition and the
// read-add-write of AddCounters are atomic. Open sweeps jobs whose ExpireAt
// has passed, and clears the concurrency slots: the file lock guarantees no
// other process is running jobs from this file, so any slot found at Open
// belonged to a process that is gone (resumed jobs take theirs again).
package bolt

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/kvmigrate/kvmigrate/internal/job"
)

// LockTimeout is how long Open waits for another process to release the file.
const LockTimeout = time.Second

const schemaVersion = "1"

// ErrLocked: another process holds the job store file.
var ErrLocked = errors.New("job store is locked")

var (
	bucketStore   = []byte("store")
	bucketJobs    = []byte("jobs")
	bucketIndex   = []byte("index")
	bucketSlots   = []byte("slots")
	bucketShards  = []byte("shards")
	bucketReports = []byte("reports")
	keySchema     = []byte("schema")
	keyMeta       = []byte("meta")
)

// Store is a job.Store in a bbolt file.
type Store struct {
	db   *bbolt.DB
	path string
}

var _ job.Store = (*Store)(nil)

// DefaultPath returns $KVMIGRATE_HOME/jobs.db, or ~/.kvmigrate/jobs.db when
// KVMIGRATE_HOME is not set, creating the directory (0700) if needed.
func DefaultPath() (string, error) {
	dir := os.Getenv("KVMIGRATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("job store path: set KVMIGRATE_HOME or HOME: %w", err)
		}
		dir = filepath.Join(home, ".kvmigrate")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("job store directory: %w", err)
	}
	return filepath.Join(dir, "jobs.db"), nil
}

// Open opens (creating if needed, mode 0600, parent directory 0700) the job
// store at path. If another process holds it, Open fails after LockTimeout
// with an error wrapping ErrLocked.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("job store directory: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: LockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("job store %s is locked by another kvmigrate process (waited %s); wait for it to finish or stop it: %w",
			path, LockTimeout, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open job store %s: %w", path, err)
	}
	s := &Store{db: db, path: path}
	if err := db.Update(func(tx *bbolt.Tx) error { return s.init(tx, time.Now()) }); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open job store %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) init(tx *bbolt.Tx, now time.Time) error {
	meta, err := tx.CreateBucketIfNotExists(bucketStore)
	if err != nil {
		return err
	}
	switch v := meta.Get(keySchema); {
	case v == nil:
		if err := meta.Put(keySchema, []byte(schemaVersion)); err != nil {
			return err
		}
	case string(v) != schemaVersion:
		return fmt.Errorf("schema version %s is not %s: written by a different kvmigrate version", v, schemaVersion)
	}
	for _, name := range [][]byte{bucketJobs, bucketIndex} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	if tx.Bucket(bucketSlots) != nil {
		if err := tx.DeleteBucket(bucketSlots); err != nil {
			return err
		}
	}
	if _, err := tx.CreateBucket(bucketSlots); err != nil {
		return err
	}
	return sweep(tx, now)
}

// sweep deletes the jobs whose ExpireAt has passed.
func sweep(tx *bbolt.Tx, now time.Time) error {
	jobs := tx.Bucket(bucketJobs)
	var expired []job.Job
	err := jobs.ForEachBucket(func(id []byte) error {
		j, err := readJob(jobs.Bucket(id))
		if err != nil {
			return fmt.Errorf("job %s: %w", id, err)
		}
		if !j.ExpireAt.IsZero() && j.ExpireAt.Before(now) {
			expired = append(expired, j)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, j := range expired {
		if err := jobs.DeleteBucket([]byte(j.ID)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketIndex).Delete(indexKey(j)); err != nil {
			return err
		}
	}
	return nil
}

// Path returns the file the store was opened from.
func (s *Store) Path() string { return s.path }

// Close releases the file (and its lock).
func (s *Store) Close() error { return s.db.Close() }

func indexKey(j job.Job) []byte {
	ns := max(j.CreatedAt.UnixNano(), 0) // before 1970 sorts as 1970
	k := make([]byte, 8, 8+len(j.ID))
	binary.BigEndian.PutUint64(k, uint64(ns))
	return append(k, j.ID...)
}

func shardKey(s job.Shard) []byte {
	k := make([]byte, 0, len(s.Node)+9)
	k = append(k, s.Node...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, uint64(s.DB))
}

func readJob(b *bbolt.Bucket) (job.Job, error) {
	var j job.Job
	raw := b.Get(keyMeta)
	if raw == nil {
		return j, errors.New("job record has no meta")
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return j, fmt.Errorf("decode job record: %w", err)
	}
	return j, nil
}

func writeJob(b *bbolt.Bucket, j job.Job) error {
	raw, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	return b.Put(keyMeta, raw)
}

// jobBucket returns the bucket of job id, or ErrNotFound.
func jobBucket(tx *bbolt.Tx, id string) (*bbolt.Bucket, error) {
	if b := tx.Bucket(bucketJobs).Bucket([]byte(id)); b != nil {
		return b, nil
	}
	return nil, fmt.Errorf("job %q: %w", id, job.ErrNotFound)
}

func (s *Store) view(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

func (s *Store) update(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(fn)
}

func (s *Store) Create(ctx context.Context, j job.Job) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	j, err := job.Prepare(j, time.Now())
	if err != nil {
		return err
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		if jobs.Bucket([]byte(j.ID)) != nil {
			return fmt.Errorf("create job %s: id exists: %w", j.ID, job.ErrConflict)
		}
		b, err := jobs.CreateBucket([]byte(j.ID))
		if err != nil {
			return err
		}
		if _, err := b.CreateBucket(bucketShards); err != nil {
			return err
		}
		if _, err := b.CreateBucket(bucketReports); err != nil {
			return err
		}
		if err := writeJob(b, j); err != nil {
			return err
		}
		return tx.Bucket(bucketIndex).Put(indexKey(j), nil)
	})
}

func (s *Store) Get(ctx context.Context, id string) (job.Job, error) {
	var j job.Job
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b, err := jobBucket(tx, id)
		if err != nil {
			return err
		}
		j, err = readJob(b)
		return err
	})
	return j, err
}

func (s *Store) List(ctx context.Context, opts job.ListOptions) ([]job.Job, string, error) {
	limit, err := opts.Check()
	if err != nil {
		return nil, "", err
	}
	var after []byte
	if opts.Next != "" {
		after, err = base64.RawURLEncoding.DecodeString(opts.Next)
		if err != nil || len(after) < 9 || !job.ValidID(string(after[8:])) {
			return nil, "", fmt.Errorf("list jobs: malformed next token: %w", job.ErrInvalid)
		}
	}
	var (
		page []job.Job
		next string
	)
	err = s.view(ctx, func(tx *bbolt.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		c := tx.Bucket(bucketIndex).Cursor()
		var k []byte
		switch {
		case after == nil:
			k, _ = c.Last()
		default:
			if k, _ = c.Seek(after); k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev() // Seek lands on after itself or the first key above it
			}
		}
		for ; k != nil; k, _ = c.Prev() {
			b := jobs.Bucket(k[8:])
			if b == nil {
				return fmt.Errorf("index names job %s, which has no record", k[8:])
			}
			j, err := readJob(b)
			if err != nil {
				return fmt.Errorf("job %s: %w", k[8:], err)
			}
			if !opts.Match(j) {
				continue
			}
			if len(page) == limit { // one more matches: there is a next page
				next = base64.RawURLEncoding.EncodeToString(indexKey(page[len(page)-1]))
				return nil
			}
			page = append(page, j)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return page, next, nil
}

func (s *Store) Transition(ctx context.Context, id string, to job.Status, mut func(*job.Job)) (job.Job, error) {
	return s.modify(ctx, id, func(j job.Job) (job.Job, error) { return job.Apply(j, to, mut, time.Now()) })
}

func (s *Store) Update(ctx context.Context, id string, mut func(*job.Job)) (job.Job, error) {
	return s.modify(ctx, id, func(j job.Job) (job.Job, error) { return job.ApplyUpdate(j, mut, time.Now()) })
}

func (s *Store) modify(ctx context.Context, id string, apply func(job.Job) (job.Job, error)) (job.Job, error) {
	var out job.Job
	err := s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := jobBucket(tx, id)
		if err != nil {
			return err
		}
		j, err := readJob(b)
		if err != nil {
			return fmt.Errorf("job %s: %w", id, err)
		}
		if out, err = apply(j); err != nil {
			return err
		}
		return writeJob(b, out)
	})
	if err != nil {
		return job.Job{}, err
	}
	return out, nil
}

func (s *Store) AddCounters(ctx context.Context, id string, c job.Counters) error {
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := jobBucket(tx, id)
		if err != nil {
			return err
		}
		j, err := readJob(b)
		if err != nil {
			return fmt.Errorf("job %s: %w", id, err)
		}
		j.Counters.Add(c)
		return writeJob(b, j)
	})
}

func (s *Store) PutShard(ctx context.Context, id string, sh job.Shard) error {
	if err := job.CheckShard(sh); err != nil {
		return fmt.Errorf("job %s: %w", id, err)
	}
	if sh.UpdatedAt.IsZero() {
		sh.UpdatedAt = time.Now()
	}
	sh.UpdatedAt = sh.UpdatedAt.UTC().Round(0)
	raw, err := json.Marshal(sh)
	if err != nil {
		return fmt.Errorf("encode shard %s/%d of job %s: %w", sh.Node, sh.DB, id, err)
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := jobBucket(tx, id)
		if err != nil {
			return err
		}
		return b.Bucket(bucketShards).Put(shardKey(sh), raw)
	})
}

func (s *Store) Shards(ctx context.Context, id string) ([]job.Shard, error) {
	out := []job.Shard{}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b, err := jobBucket(tx, id)
		if err != nil {
			return err
		}
		return b.Bucket(bucketShards).ForEach(func(k, v []byte) error {
			var sh job.Shard
			if err := json.Unmarshal(v, &sh); err != nil {
				return fmt.Errorf("job %s: decode shard %q: %w", id, k, err)
			}
			out = append(out, sh)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	job.SortShards(out) // the key order already is (node, db); this keeps the contract explicit
	return out, nil
}

func (s *Store) PutReport(ctx context.Context, id, name string, body []byte) error {
	if name == "" {
		return fmt.Errorf("job %s: report name is empty: %w", id, job.ErrInvalid)
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := jobBucket(tx, id)
		if err != nil {
			return err
		}
		if body == nil {
			body = []byte{}
		}
		return b.Bucket(bucketReports).Put([]byte(name), body)
	})
}

func (s *Store) Report(ctx context.Context, id, name string) ([]byte, error) {
	var out []byte
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b, err := jobBucket(tx, id)
		if err != nil {
			return err
		}
		v := b.Bucket(bucketReports).Get([]byte(name))
		if v == nil {
			return fmt.Errorf("job %s: report %q: %w", id, name, job.ErrNotFound)
		}
		out = bytes.Clone(v)
		return nil
	})
	return out, err
}

func (s *Store) ReportNames(ctx context.Context, id, prefix string) ([]string, error) {
	names := []string{}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		b, err := jobBucket(tx, id)
		if err != nil {
			return err
		}
		c := b.Bucket(bucketReports).Cursor()
		p := []byte(prefix)
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			names = append(names, string(k))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return names, nil
}

func (s *Store) Acquire(ctx context.Context, id string, kind job.Kind, limit int) error {
	if err := job.CheckSlot(id, kind, limit); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		held, err := tx.Bucket(bucketSlots).CreateBucketIfNotExists([]byte(kind))
		if err != nil {
			return err
		}
		if held.Get([]byte(id)) != nil {
			return nil
		}
		n := 0
		if err := held.ForEach(func(_, _ []byte) error { n++; return nil }); err != nil {
			return err
		}
		if n >= limit {
			return fmt.Errorf("job %s: %d of %d %s slots held: %w", id, n, limit, kind, job.ErrLimit)
		}
		return held.Put([]byte(id), []byte(time.Now().UTC().Format(time.RFC3339)))
	})
}

func (s *Store) Release(ctx context.Context, id string, kind job.Kind) error {
	if err := job.CheckSlot(id, kind, 1); err != nil {
		return err
	}
	return s.update(ctx, func(tx *bbolt.Tx) error {
		held := tx.Bucket(bucketSlots).Bucket([]byte(kind))
		if held == nil {
			return nil
		}
		return held.Delete([]byte(id))
	})
}
