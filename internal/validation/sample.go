package validation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"

	"github.com/valkey-io/valkey-go"
)

// Sampling: the sample is spread over every master and database in
// proportion to their key counts, with at least one key from each that
// holds any. A shard (master × database) asked for at least as many keys
// as it holds is read whole with SCAN; otherwise keys are drawn with
// pipelined RANDOMKEY on that node, de-duplicated, for a few rounds.
// With a filter, the key counts are the matching keys', and each shard's
// keys come from the sample its filtered pass kept (see filter.go).
const (
	scanCount   = 1000
	drawFactor  = 4
	randomBatch = 1000 // RANDOMKEY commands per pipeline at most
)

// shard is one master and database of one side with its key count.
type shard struct {
	addr string
	db   int
	keys int64
	pair dbPair
}

// sampleKey is one sampled key and the database pair it belongs to.
type sampleKey struct {
	pair dbPair
	key  string
}

// shards lists the (master, db) shards of one side for the pairs.
func (v *run) shards(target bool) []shard {
	var out []shard
	for i, p := range v.pairs {
		c := v.rep.KeyCounts[i]
		ms, db := c.SourceMasters, p.src
		if target {
			if p.noTarget {
				continue
			}
			ms, db = c.TargetMasters, p.dst
		}
		for _, m := range ms {
			out = append(out, shard{addr: m.Addr, db: db, keys: m.Keys, pair: p})
		}
	}
	return out
}

// allocate splits want keys over shards in proportion to their key
// counts (largest remainders), with at least one per non-empty shard.
// exhaustive is true when the shards hold no more than want keys.
func allocate(shards []shard, want int) (quota []int64, exhaustive bool) {
	var total int64
	for _, s := range shards {
		total += s.keys
	}
	quota = make([]int64, len(shards))
	if total <= int64(want) {
		for i, s := range shards {
			quota[i] = s.keys
		}
		return quota, true
	}
	type rem struct {
		i    int
		frac float64
	}
	var rems []rem
	var given int64
	for i, s := range shards {
		exact := float64(want) * float64(s.keys) / float64(total)
		quota[i] = int64(exact)
		given += quota[i]
		rems = append(rems, rem{i, exact - float64(quota[i])})
	}
	slices.SortStableFunc(rems, func(a, b rem) int {
		switch {
		case a.frac > b.frac:
			return -1
		case a.frac < b.frac:
			return 1
		}
		return 0
	})
	for _, r := range rems {
		if given >= int64(want) {
			break
		}
		quota[r.i]++
		given++
	}
	for i, s := range shards {
		if s.keys > 0 && quota[i] == 0 {
			quota[i] = 1
		}
	}
	return quota, false
}

// draw samples keys from the shards of one side.
func (v *run) draw(ctx context.Context, c Conn, target bool, want int) ([]sampleKey, bool, error) {
	sideName := "source"
	if target {
		sideName = "target"
	}
	shards := v.shards(target)
	quota, exhaustive := allocate(shards, want)
	var out []sampleKey
	for i, s := range shards {
		if quota[i] == 0 {
			v.rep.Sample.Shards = append(v.rep.Sample.Shards, ShardSample{Side: sideName, Addr: s.addr, DB: s.db, Keys: s.keys})
			continue
		}
		node, err := c.Node(s.addr, s.db)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", sideName, err)
		}
		var keys []string
		switch {
		case v.passes != nil:
			keys = v.passes[shardID{target: target, addr: s.addr, db: s.db}].take(quota[i])
		case quota[i] >= s.keys:
			keys, err = scanAll(ctx, node)
		default:
			keys, err = randomKeys(ctx, node, int(quota[i]))
		}
		if err != nil {
			return nil, false, fmt.Errorf("%s %s db %d: %w", sideName, s.addr, s.db, err)
		}
		v.rep.Sample.Shards = append(v.rep.Sample.Shards, ShardSample{Side: sideName, Addr: s.addr, DB: s.db, Keys: s.keys, Drawn: len(keys)})
		for _, k := range keys {
			out = append(out, sampleKey{pair: s.pair, key: k})
		}
	}
	return out, exhaustive, nil
}

// scanAll returns every key of the node's selected database.
func scanAll(ctx context.Context, node valkey.Client) ([]string, error) {
	var keys []string
	seen := map[string]bool{}
	for cursor := uint64(0); ; {
		page, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Count(scanCount).Build()).AsScanEntry()
		if err != nil {
			return nil, fmt.Errorf("SCAN: %w", err)
		}
		for _, k := range page.Elements {
			if !seen[k] { // SCAN may return a key twice
				seen[k] = true
				keys = append(keys, k)
			}
		}
		if cursor = page.Cursor; cursor == 0 {
			return keys, nil
		}
	}
}

// randomKeys draws up to want distinct keys with pipelined RANDOMKEY, at
// most drawFactor × want draws, stopping early when a batch brings nothing
// new.
func randomKeys(ctx context.Context, node valkey.Client, want int) ([]string, error) {
	seen := map[string]bool{}
	var keys []string
	for drawn := 0; len(keys) < want && drawn < drawFactor*want; {
		n := min(2*(want-len(keys)), randomBatch)
		drawn += n
		cmds := make(valkey.Commands, n)
		for i := range cmds {
			cmds[i] = node.B().Randomkey().Build()
		}
		added := 0
		for _, r := range node.DoMulti(ctx, cmds...) {
			k, err := r.ToString()
			if valkey.IsValkeyNil(err) {
				return keys, nil // the database is empty now
			}
			if err != nil {
				return nil, fmt.Errorf("RANDOMKEY: %w", err)
			}
			if !seen[k] && len(keys) < want {
				seen[k] = true
				keys = append(keys, k)
				added++
			}
		}
		if added == 0 {
			break
		}
	}
	return keys, nil
}

// checkExtras draws keys from the target and looks them up on the source:
// a key only on the target is an issue.
func (v *run) checkExtras(ctx context.Context) error {
	if v.o.TargetSample == 0 {
		return nil
	}
	keys, _, err := v.draw(ctx, v.dst, true, v.o.TargetSample)
	if err != nil {
		return err
	}
	v.rep.Sample.TargetSampled = len(keys)
	for _, group := range byPair(keys) {
		p := group[0].pair
		scl, err := v.src.Client(p.src)
		if err != nil {
			return fmt.Errorf("source: %w", err)
		}
		dcl, err := v.dst.Client(p.dst)
		if err != nil {
			return fmt.Errorf("target: %w", err)
		}
		for batch := range slices.Chunk(group, probeBatch) {
			cmds := make(valkey.Commands, len(batch))
			for i, k := range batch {
				cmds[i] = scl.B().Exists().Key(k.key).Build()
			}
			var absent []sampleKey
			for i, r := range scl.DoMulti(ctx, cmds...) {
				n, err := r.AsInt64()
				if err != nil {
					if transportErr(err) {
						return fmt.Errorf("source: EXISTS: %w", err)
					}
					v.issue(Issue{Kind: IssueRead, DB: p.src, Key: v.name(batch[i].key), Detail: "EXISTS on the source: " + err.Error()})
					continue
				}
				if n == 0 {
					absent = append(absent, batch[i])
				}
			}
			if len(absent) == 0 {
				continue
			}
			// Still on the target (not expired since it was drawn)?
			tcmds := make(valkey.Commands, len(absent))
			for i, k := range absent {
				tcmds[i] = dcl.B().Type().Key(k.key).Build()
			}
			for i, r := range dcl.DoMulti(ctx, tcmds...) {
				typ, err := r.ToString()
				if err != nil {
					if transportErr(err) {
						return fmt.Errorf("target: TYPE: %w", err)
					}
					continue
				}
				if typ == "none" {
					continue
				}
				v.issue(Issue{Kind: IssueExtra, DB: p.src, Key: v.name(absent[i].key), Type: typ,
					Detail: fmt.Sprintf("on the target (%s, db %d), not on the source", typ, p.dst)})
			}
		}
	}
	return nil
}

// byPair groups keys by database pair, keeping their order.
func byPair(keys []sampleKey) [][]sampleKey {
	idx := map[dbPair]int{}
	var out [][]sampleKey
	for _, k := range keys {
		i, ok := idx[k.pair]
		if !ok {
			i = len(out)
			idx[k.pair] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], k)
	}
	return out
}

// transportErr reports whether err is a failure of the connection or the
// context, which ends the run, rather than an error about one key (an
// error reply, an unexpected reply shape), which becomes an issue.
func transportErr(err error) bool {
	var ne net.Error
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, valkey.ErrClosing)
}
