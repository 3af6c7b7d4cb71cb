package validation

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/kvmigrate/kvmigrate/internal/topology"
)

// count sets the database pairs and counts every database on every master
// of both sides with DBSIZE (a cluster's count is the sum over its
// masters, never one node's), then the discrepancy. With a filter, the
// counts are those of the filtered SCAN passes (see filter.go).
func (v *run) count(ctx context.Context, sinfo, dinfo topology.Info) error {
	dbs := v.o.DBs
	if dbs == nil {
		dbs = append(sinfo.Databases(), dinfo.Databases()...)
		slices.Sort(dbs)
		dbs = slices.Compact(dbs)
		if len(dbs) == 0 {
			dbs = []int{0}
		}
	}
	for _, db := range dbs {
		if db < 0 {
			return fmt.Errorf("database %d: must not be negative", db)
		}
		if sinfo.Cluster && db != 0 {
			return fmt.Errorf("%w: database %d: the source is a cluster, which has only database 0", ErrTopology, db)
		}
		p := dbPair{src: db, dst: v.o.TargetDB(db)}
		p.noTarget = dinfo.Cluster && p.dst != 0
		v.pairs = append(v.pairs, p)
	}
	if v.o.filtered() {
		if err := v.scanFiltered(ctx); err != nil {
			return err
		}
	}

	var diff, total int64
	for _, p := range v.pairs {
		c := DBCount{SourceDB: p.src, TargetDB: p.dst, SourceMasters: []MasterCount{}, TargetMasters: []MasterCount{}}
		for _, addr := range v.smasters {
			n, err := v.keys(ctx, v.src, shardID{addr: addr, db: p.src})
			if err != nil {
				return fmt.Errorf("source: %w", err)
			}
			c.Source += n
			c.SourceMasters = append(c.SourceMasters, MasterCount{Addr: addr, Keys: n})
		}
		if !p.noTarget {
			for _, addr := range v.dmasters {
				n, err := v.keys(ctx, v.dst, shardID{target: true, addr: addr, db: p.dst})
				if err != nil {
					return fmt.Errorf("target: %w", err)
				}
				c.Target += n
				c.TargetMasters = append(c.TargetMasters, MasterCount{Addr: addr, Keys: n})
			}
		}
		diff += abs(c.Source - c.Target)
		total += c.Source
		v.rep.KeyCounts = append(v.rep.KeyCounts, c)
	}
	v.rep.KeyCountDiscrepancyPct = discrepancy(diff, total)

	for i, p := range v.pairs {
		c := v.rep.KeyCounts[i]
		switch {
		case p.noTarget && c.Source > 0:
			v.issue(Issue{Kind: IssueKeyCount, DB: p.src, Detail: fmt.Sprintf(
				"%d %s in source database %d, which maps to target database %d: the target is a cluster, which has only database 0",
				c.Source, v.counted(), p.src, p.dst)})
		case c.Source != c.Target && v.rep.KeyCountDiscrepancyPct >= MaxDiscrepancyPct:
			v.issue(Issue{Kind: IssueKeyCount, DB: p.src, Detail: countDetail(c, v.counted())})
		}
	}
	return nil
}

// counted names what the key counts count.
func (v *run) counted() string {
	if v.o.filtered() {
		return "matching keys"
	}
	return "keys"
}

func countDetail(c DBCount, counted string) string {
	d := c.Target - c.Source
	what := "missing on the target"
	if d > 0 {
		what = "more on the target"
	}
	s := fmt.Sprintf("%d %s on the source, %d on the target (%d %s)", c.Source, counted, c.Target, abs(d), what)
	if c.SourceDB != c.TargetDB {
		s = fmt.Sprintf("source db %d → target db %d: %s", c.SourceDB, c.TargetDB, s)
	}
	return s
}

// discrepancy is diff in percent of total, rounded to 1/10000 %.
func discrepancy(diff, total int64) float64 {
	switch {
	case diff == 0:
		return 0
	case total == 0:
		return 100
	}
	return math.Round(float64(diff)/float64(total)*100*1e4) / 1e4
}

// keys is the key count of one shard: its filtered pass's with a filter,
// else DBSIZE.
func (v *run) keys(ctx context.Context, c Conn, id shardID) (int64, error) {
	if v.passes != nil {
		return v.passes[id].keys, nil
	}
	return dbsize(ctx, c, id.addr, id.db)
}

func dbsize(ctx context.Context, c Conn, addr string, db int) (int64, error) {
	node, err := c.Node(addr, db)
	if err != nil {
		return 0, err
	}
	n, err := node.Do(ctx, node.B().Dbsize().Build()).AsInt64()
	if err != nil {
		return 0, fmt.Errorf("DBSIZE on %s db %d: %w", addr, db, err)
	}
	return n, nil
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}
