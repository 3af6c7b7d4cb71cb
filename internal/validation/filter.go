package validation

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/topology"

	"github.com/valkey-io/valkey-go"
)

// Filtered validation. A migration with a copy filter (Options.Match,
// Options.Type: kvmigrate --match, --type) copies only the keys a SCAN
// with that MATCH and TYPE returns, so only those are validated, on both
// sides:
//   - Key counts: DBSIZE counts every key, so each master and database of
//     both sides is read in one full SCAN MATCH … TYPE … pass instead, and
//     the distinct keys it returns are counted (SCAN may return a key
//     twice: a set of 64-bit hashes of the names de-duplicates them, about
//     10 to 20 bytes per matching key of the shards being scanned). The
//     passes run concurrently, at most scanWorkers at a time; the clients
//     pipeline them.
//   - Samples: RANDOMKEY cannot filter, so the same pass keeps a uniform
//     sample of each shard's matching keys (a reservoir of the side's
//     sample size); the sample is then spread over the shards in
//     proportion to their matching keys as without a filter, each shard's
//     share taken from its reservoir.
//   - Extra keys: only target keys that match are drawn (from the
//     target's reservoirs) and looked up on the source; a key on the
//     target that the filter does not select is not the migration's.

// ErrInvalidOptions is wrapped by Options.Check's errors.
var ErrInvalidOptions = errors.New("invalid validation options")

// scanWorkers bounds the filtered SCAN passes running at once.
const scanWorkers = 8

// Filter is the copy filter a report was made with: its key counts are
// those of the keys the filter selects on each side (a SCAN MATCH/TYPE
// pass over every master and database, not DBSIZE), and its samples were
// drawn from those keys only.
type Filter struct {
	Match string `json:"match,omitempty"` // SCAN MATCH glob
	Type  string `json:"type,omitempty"`  // SCAN TYPE
}

// String writes f as the CLI flags that give it.
func (f Filter) String() string { return topology.FilterFlags(f.Match, f.Type) }

// Check validates o.
func (o Options) Check() error {
	if err := topology.CheckKeyType(o.Type); err != nil {
		return fmt.Errorf("%w: %w", err, ErrInvalidOptions)
	}
	return nil
}

// filtered reports whether the options select some keys only.
func (o Options) filtered() bool { return o.Match != "" || o.Type != "" }

// shardID names one master and database of one side.
type shardID struct {
	target bool
	addr   string
	db     int
}

// pass is the result of the filtered SCAN of one shard.
type pass struct {
	keys   int64    // distinct matching keys
	sample []string // a uniform sample of them, in random order
}

// take returns n keys of the shard's sample (all of them when it holds
// fewer).
func (p *pass) take(n int64) []string {
	return p.sample[:min(n, int64(len(p.sample)))]
}

// scanFiltered runs the filtered pass over every shard of both sides.
func (v *run) scanFiltered(ctx context.Context) error {
	type task struct {
		id   shardID
		c    Conn
		keep int
	}
	var tasks []task
	seen := map[shardID]bool{}
	add := func(id shardID, c Conn, keep int) {
		if !seen[id] {
			seen[id] = true
			tasks = append(tasks, task{id, c, keep})
		}
	}
	for _, p := range v.pairs {
		for _, a := range v.smasters {
			add(shardID{addr: a, db: p.src}, v.src, v.o.Sample)
		}
		if p.noTarget {
			continue
		}
		for _, a := range v.dmasters {
			add(shardID{target: true, addr: a, db: p.dst}, v.dst, v.o.TargetSample)
		}
	}

	started := time.Now()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	seed := maphash.MakeSeed()
	results := make([]*pass, len(tasks))
	sem := make(chan struct{}, scanWorkers)
	var wg sync.WaitGroup
	for i, t := range tasks {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			p, err := v.filteredPass(ctx, t.c, t.id.addr, t.id.db, t.keep, seed)
			if err != nil {
				sideName := "source"
				if t.id.target {
					sideName = "target"
				}
				cancel(fmt.Errorf("%s %s db %d: %w", sideName, t.id.addr, t.id.db, err))
				return
			}
			results[i] = p
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	v.passes = make(map[shardID]*pass, len(tasks))
	var keys int64
	for i, t := range tasks {
		v.passes[t.id] = results[i]
		keys += results[i].keys
	}
	v.o.Log.Info("filtered key counts", "filter", Filter{Match: v.o.Match, Type: v.o.Type}.String(),
		"shards", len(tasks), "matching", keys, "ms", time.Since(started).Milliseconds())
	return nil
}

// filteredPass SCANs one shard to its end with the filter, counting the
// distinct keys returned and keeping a uniform sample of up to keep of
// them (reservoir sampling).
func (v *run) filteredPass(ctx context.Context, c Conn, addr string, db, keep int, seed maphash.Seed) (*pass, error) {
	node, err := c.Node(addr, db)
	if err != nil {
		return nil, err
	}
	p := &pass{}
	seen := map[uint64]struct{}{}
	for cursor := "0"; ; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		next, keys, err := scanPage(ctx, node, cursor, v.o.Match, v.o.Type)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			h := maphash.String(seed, k)
			if _, dup := seen[h]; dup { // SCAN may return a key twice
				continue
			}
			seen[h] = struct{}{}
			p.keys++
			switch {
			case len(p.sample) < keep:
				p.sample = append(p.sample, k)
			case keep > 0:
				if j := rand.Int64N(p.keys); j < int64(keep) {
					p.sample[j] = k
				}
			}
		}
		if cursor = next; cursor == "0" {
			break
		}
	}
	rand.Shuffle(len(p.sample), func(i, j int) { p.sample[i], p.sample[j] = p.sample[j], p.sample[i] })
	return p, nil
}

// scanPage is one SCAN cursor [MATCH glob] COUNT n [TYPE type]: the same
// arguments, in the same order, as the copy's SCAN.
func scanPage(ctx context.Context, node valkey.Client, cursor, match, typ string) (string, []string, error) {
	args := []string{cursor}
	if match != "" {
		args = append(args, "MATCH", match)
	}
	args = append(args, "COUNT", strconv.Itoa(scanCount))
	if typ != "" {
		args = append(args, "TYPE", typ)
	}
	page, err := node.Do(ctx, node.B().Arbitrary("SCAN").Args(args...).Build()).AsScanEntry()
	if err != nil {
		return "", nil, fmt.Errorf("SCAN: %w", err)
	}
	return strconv.FormatUint(page.Cursor, 10), page.Elements, nil
}
