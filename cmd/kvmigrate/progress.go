package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

func shardName(node string, db int) string { return fmt.Sprintf("%s/db%d", node, db) }

// processed is how many keys a delta moved through the shard's scan.
func processed(c job.Counters) int64 { return c.Copied + c.Skipped + c.Expired + c.Failed }

// progress draws a bar per shard: keys done of the shard's DBSIZE, keys/s, ETA.
type progress struct {
	ctx    context.Context
	w      io.Writer
	p      *mpb.Progress
	mu     sync.Mutex
	bars   map[string]*mpb.Bar
	totals map[string]int64
	// shake is the bar of a redis-shake run (shakeview.go).
	shake *shakeBar
}

func newProgress(ctx context.Context, w io.Writer) *progress {
	return &progress{
		ctx: ctx, w: w,
		p:      newBars(ctx, w),
		bars:   map[string]*mpb.Bar{},
		totals: map[string]int64{},
	}
}

func newBars(ctx context.Context, w io.Writer) *mpb.Progress {
	return mpb.NewWithContext(ctx, mpb.WithOutput(w), mpb.WithWidth(32), mpb.WithRefreshRate(150*time.Millisecond))
}

func (p *progress) Planned(jobID string, shards []workflow.ShardPlan) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range shards {
		name := shardName(s.Node, s.DB)
		total := max(s.Keys, processed(s.Done), 1)
		// A bar made with total 0 never completes by itself (mpb v8):
		// it completes when the shard says so (SetTotal(-1, true)), not
		// when the count reaches DBSIZE, which keys written since planning
		// add to. SetTotal(n, false) only changes the total shown.
		bar := p.p.AddBar(0,
			mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR), decor.CountersNoUnit("%d / %d keys", decor.WCSyncSpace)),
			mpb.AppendDecorators(decor.AverageSpeed(nil, "%.0f keys/s", decor.WCSyncSpace), decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), "done")),
		)
		bar.SetTotal(total, false)
		bar.SetCurrent(processed(s.Done))
		bar.DecoratorAverageAdjust(time.Now())
		if s.Finished {
			bar.SetTotal(-1, true)
		}
		p.bars[name] = bar
		p.totals[name] = total
	}
}

func (p *progress) Progress(node string, db int, delta job.Counters) {
	name := shardName(node, db)
	p.mu.Lock()
	defer p.mu.Unlock()
	bar := p.bars[name]
	if bar == nil {
		return
	}
	n := processed(delta)
	if cur := bar.Current() + n; cur > p.totals[name] {
		p.totals[name] = cur
		bar.SetTotal(cur, false)
	}
	bar.IncrInt64(n)
}

func (p *progress) ShardDone(node string, db int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if bar := p.bars[shardName(node, db)]; bar != nil {
		bar.SetTotal(-1, true)
	}
}

func (p *progress) wait() {
	p.mu.Lock()
	for _, b := range p.bars {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	if p.shake != nil && p.shake.bar != nil && !p.shake.bar.Completed() {
		p.shake.bar.Abort(false)
	}
	bars := p.p
	p.mu.Unlock()
	bars.Wait()
}

// lineProgress prints a line per shard every few seconds when stderr is not
// a terminal (CI logs, pipes).
type lineProgress struct {
	w     io.Writer
	mu    sync.Mutex
	done  map[string]int64
	total map[string]int64
	last  time.Time
	// shakeLine is the last redis-shake line printed (shakeview.go).
	shakeLine string
}

func newLineProgress(w io.Writer) *lineProgress {
	return &lineProgress{w: w, done: map[string]int64{}, total: map[string]int64{}, last: time.Now()}
}

func (p *lineProgress) Planned(jobID string, shards []workflow.ShardPlan) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "job %s: %d shard(s)\n", jobID, len(shards))
	for _, s := range shards {
		name := shardName(s.Node, s.DB)
		p.total[name], p.done[name] = s.Keys, processed(s.Done)
	}
}

func (p *lineProgress) Progress(node string, db int, delta job.Counters) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done[shardName(node, db)] += processed(delta)
	if time.Since(p.last) < 5*time.Second {
		return
	}
	p.last = time.Now()
	for name, n := range p.done {
		fmt.Fprintf(p.w, "  %s: %d / %d keys\n", name, n, p.total[name])
	}
}

func (p *lineProgress) ShardDone(node string, db int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name := shardName(node, db)
	fmt.Fprintf(p.w, "  %s: done, %d keys\n", name, p.done[name])
}
