package transfer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/topology"
	"github.com/valkey-io/valkey-go"
)

// ErrTopology marks source/target shapes that cannot be copied.
var ErrTopology = errors.New("unsupported topology")

// Plan splits a migration into shards: one per source master and database
// holding keys. dbs restricts the databases (nil: every database in use).
// It refuses a cluster source with a standalone target, and databases
// other than 0 with a cluster target.
func Plan(src, dst topology.Info, dbs []int) ([]Chunk, error) {
	if src.Cluster && !dst.Cluster {
		return nil, fmt.Errorf("%w: the source is a cluster (%d masters) and the target is standalone; "+
			"a standalone server cannot hold every slot's keys under the same names safely — migrate to a cluster target",
			ErrTopology, len(src.Masters))
	}
	want := dbs
	if want == nil {
		want = src.Databases()
	}
	if dst.Cluster {
		var bad []string
		for _, db := range want {
			if db != 0 {
				bad = append(bad, fmt.Sprintf("db%d (%d keys)", db, src.Keyspace[db]))
			}
		}
		if len(bad) > 0 {
			return nil, fmt.Errorf("%w: the target is a cluster, which has only database 0, and the source has keys in %s; "+
				"migrate database 0 alone by naming it in the source URL (…/0), or move the other databases to a standalone target",
				ErrTopology, strings.Join(bad, ", "))
		}
	}
	var out []Chunk
	for _, m := range src.Masters {
		for _, db := range want {
			if dbs == nil && m.Keyspace[db] == 0 {
				continue
			}
			out = append(out, Chunk{Node: m.Addr, DB: db, Cursor: "0"})
		}
	}
	return out, nil
}

// SweepShard deletes the temporary keys a shard's chunks left on the
// target (a chunk that failed or was interrupted); call it when none of the
// shard's chunks runs. It returns how many keys it removed.
func (c *Copier) SweepShard(ctx context.Context, ch Chunk) (int64, error) {
	return c.sweep(ctx, c.opts.TargetDB(ch.DB), TempPattern(c.opts.JobID, ShardTag(ch.Node, ch.DB)))
}

// SweepJob deletes every temporary key of the job from the target
// databases the source databases dbs map to; call it when no chunk of the
// job runs (on resume).
func (c *Copier) SweepJob(ctx context.Context, dbs []int) (int64, error) {
	var total int64
	seen := map[int]bool{}
	for _, db := range dbs {
		tdb := c.opts.TargetDB(db)
		if seen[tdb] {
			continue
		}
		seen[tdb] = true
		n, err := c.sweep(ctx, tdb, TempPattern(c.opts.JobID, ""))
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (c *Copier) sweep(ctx context.Context, db int, pattern string) (int64, error) {
	masters, err := c.dst.Masters(ctx)
	if err != nil {
		return 0, fmt.Errorf("target masters: %w", err)
	}
	var removed int64
	for _, addr := range masters {
		node, err := c.dst.Node(addr, db)
		if err != nil {
			return removed, err
		}
		cursor := uint64(0)
		for {
			var page valkey.ScanEntry
			err := idempotent(ctx, func() (err error) {
				page, err = node.Do(ctx, node.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
				return err
			})
			if err != nil {
				return removed, fmt.Errorf("sweep temp keys on %s db %d: %w", addr, db, err)
			}
			for _, k := range page.Elements {
				var n int64
				err := idempotent(ctx, func() (err error) {
					n, err = node.Do(ctx, node.B().Unlink().Key(k).Build()).AsInt64()
					return err
				})
				if err != nil {
					return removed, fmt.Errorf("sweep temp key on %s: %w", addr, err)
				}
				removed += n
			}
			if cursor = page.Cursor; cursor == 0 {
				break
			}
		}
	}
	return removed, nil
}

// idempotent runs do, an idempotent command (SCAN, UNLINK), again when it
// fails on the connection rather than with a server's error reply: the
// first command on a connection to a server that restarted meanwhile
// meets the dead socket (EOF) while the client reconnects. At most three
// tries, 100 ms apart.
func idempotent(ctx context.Context, do func() error) error {
	var err error
	for try := range 3 {
		if try > 0 {
			select {
			case <-ctx.Done():
				return err
			case <-time.After(100 * time.Millisecond):
			}
		}
		err = do()
		if _, reply := valkey.IsValkeyErr(err); err == nil || reply || ctx.Err() != nil {
			return err
		}
	}
	return err
}
