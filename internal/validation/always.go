package validation

import (
	"context"
	"fmt"
	"slices"

	"github.com/kvmigrate/kvmigrate/internal/topology"
	"github.com/valkey-io/valkey-go"
)

// alwaysKeys returns the keys of Options.Always to compare besides the
// drawn ones: in a validated database whose target can hold it, selected
// by the filter, not drawn already, each once. It sets v.first to every
// such key, drawn or not, for the digest queue.
func (v *run) alwaysKeys(ctx context.Context, drawn []sampleKey) ([]sampleKey, error) {
	if len(v.o.Always) == 0 {
		return nil, nil
	}
	pairs := make(map[int]dbPair, len(v.pairs))
	for _, p := range v.pairs {
		pairs[p.src] = p
	}
	seen := make(map[KeyRef]bool, len(drawn))
	for _, k := range drawn {
		seen[KeyRef{DB: k.pair.src, Key: k.key}] = true
	}
	v.first = map[KeyRef]bool{}
	var out []sampleKey
	for _, r := range v.o.Always {
		p, ok := pairs[r.DB]
		if !ok || p.noTarget || (v.o.Match != "" && !topology.MatchGlob(v.o.Match, r.Key)) {
			continue
		}
		v.first[r] = true
		if !seen[r] {
			seen[r] = true
			out = append(out, sampleKey{pair: p, key: r.Key})
		}
	}
	if v.o.Type == "" || len(out) == 0 {
		return out, nil
	}
	return v.ofType(ctx, out)
}

// ofType keeps the keys whose type on the source is Options.Type, and
// those gone from it (compareBatch counts them as vanished).
func (v *run) ofType(ctx context.Context, keys []sampleKey) ([]sampleKey, error) {
	var out []sampleKey
	for _, group := range byPair(keys) {
		scl, err := v.src.Client(group[0].pair.src)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		for batch := range slices.Chunk(group, probeBatch) {
			cmds := make(valkey.Commands, len(batch))
			for i, k := range batch {
				cmds[i] = scl.B().Type().Key(k.key).Build()
			}
			for i, r := range scl.DoMulti(ctx, cmds...) {
				typ, err := r.ToString()
				if err != nil {
					if transportErr(err) {
						return nil, fmt.Errorf("source: TYPE: %w", err)
					}
					typ = v.o.Type // compareBatch reports the read error
				}
				if typ == v.o.Type || typ == "none" {
					out = append(out, batch[i])
				}
			}
		}
	}
	return out, nil
}
