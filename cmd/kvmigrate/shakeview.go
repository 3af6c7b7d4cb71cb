package main

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/shake"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// The display of a redis-shake run: one bar with the stage. Scan mode: how
// far the SCAN is, keys and ops/s. Sync mode: the RDB bytes written of the
// RDB's size during the initial sync, then the replication diff and
// whether it is ready for cutover.

// shakeBar is the bar of a redis-shake run; progress.mu guards it, except
// text, which the bar's decorator reads while it renders.
type shakeBar struct {
	mode  string
	bar   *mpb.Bar // nil while paused
	st    shake.Status
	ended bool
	text  atomic.Pointer[string]
}

func (p *progress) ShakeStarted(_ string, mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shake = &shakeBar{mode: mode}
	p.shake.text.Store(new("starting"))
	p.shake.bar = p.addShakeBar()
}

// addShakeBar adds the bar to the current container; p.mu is held.
func (p *progress) addShakeBar() *mpb.Bar {
	sb := p.shake
	name := "redis-shake scan"
	if sb.mode == job.ModeRedisShakeSync {
		name = "redis-shake sync"
	}
	// Total 0: the bar completes only when the run ends (ShakeEnded), never
	// because it is full; SetTotal(n, false) only changes what it shows.
	bar := p.p.AddBar(0,
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return *sb.text.Load() })),
	)
	total, cur := shakeBarValues(sb.mode, sb.st)
	bar.SetTotal(total, false)
	bar.SetCurrent(cur)
	return bar
}

func (p *progress) ShakeStatus(_ string, st shake.Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sb := p.shake
	if sb == nil {
		return
	}
	sb.st = st
	sb.text.Store(new(shakeText(sb.mode, st)))
	if sb.bar != nil {
		total, cur := shakeBarValues(sb.mode, st)
		sb.bar.SetTotal(total, false)
		sb.bar.SetCurrent(cur)
	}
}

func (p *progress) ShakeEnded(_ string, end workflow.ShakeEnd) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sb := p.shake
	if sb == nil {
		return
	}
	sb.ended = true
	sb.text.Store(new(shakeText(sb.mode, sb.st) + " · " + strings.ReplaceAll(string(end), "_", " ")))
	if sb.bar == nil {
		return
	}
	if end == workflow.ShakeFinished || end == workflow.ShakeCutOver {
		sb.bar.SetTotal(-1, true)
	} else {
		sb.bar.Abort(false)
	}
}

// pause takes the bars off the terminal (a question is asked); resume
// draws them again.
func (p *progress) pause() {
	p.mu.Lock()
	if sb := p.shake; sb != nil && sb.bar != nil {
		sb.bar.Abort(false)
		sb.bar = nil
	}
	for _, b := range p.bars {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	bars := p.p
	p.mu.Unlock()
	bars.Wait()
}

func (p *progress) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p = newBars(p.ctx, p.w)
	p.bars = map[string]*mpb.Bar{}
	if sb := p.shake; sb != nil && !sb.ended {
		sb.bar = p.addShakeBar()
	}
}

// shakeBarValues: scan mode, per mille of the SCAN; sync mode, the RDB
// bytes during the initial sync, then full.
func shakeBarValues(mode string, st shake.Status) (total, cur int64) {
	p := st.Progress
	switch {
	case mode == job.ModeRedisShake && st.Stage == shake.StageDone:
		return 1000, 1000
	case mode == job.ModeRedisShake:
		return 1000, int64(p.ScanPercent * 10)
	case st.Stage == shake.StageReplicating || st.Stage == shake.StageDone:
		total = max(p.RDBBytesTotal, 1)
		return total, total
	case p.RDBBytesTotal > 0:
		return p.RDBBytesTotal, min(p.RDBBytesDone, p.RDBBytesTotal)
	}
	return 1, 0
}

// shakeText says where a run stands, e.g. "initial_sync (syncing_rdb) ·
// RDB 12.0 MiB / 30.0 MiB · 1000000 keys · 50123 ops/s".
func shakeText(mode string, st shake.Status) string {
	p := st.Progress
	stage := string(st.Stage)
	if stage == "" {
		stage = "starting"
	}
	if st.Stage == shake.StageInitialSync && p.Phase != "" {
		stage += " (" + string(p.Phase) + ")"
	}
	parts := []string{stage}
	switch {
	case mode == job.ModeRedisShake:
		parts = append(parts, fmt.Sprintf("%.0f%% scanned", p.ScanPercent))
	case st.Stage == shake.StageInitialSync && p.RDBBytesTotal > 0:
		parts = append(parts, fmt.Sprintf("RDB %s / %s", bytesHuman(p.RDBBytesDone), bytesHuman(p.RDBBytesTotal)))
	}
	unit := "keys"
	if p.Phase == shake.PhaseSyncingAOF {
		unit = "commands"
	}
	parts = append(parts, fmt.Sprintf("%d %s", p.WriteCount, unit), fmt.Sprintf("%.0f ops/s", p.WriteOPS))
	switch {
	case st.Stopping:
		parts = append(parts, "stopping")
	case st.Stage == shake.StageReplicating:
		parts = append(parts, "diff "+bytesHuman(p.AOFDiff))
		if st.ReadyForCutover {
			parts = append(parts, "ready for cutover (Ctrl-C, or kvmigrate cutover JOB)")
		} else {
			parts = append(parts, "catching up")
		}
	}
	return strings.Join(parts, " · ")
}

func (p *lineProgress) ShakeStarted(id, mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "job %s: redis-shake (%s) started\n", id, mode)
}

// ShakeStatus prints a line when the stage, phase or readiness changes,
// and every few seconds otherwise.
func (p *lineProgress) ShakeStatus(_ string, st shake.Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := fmt.Sprintf("%s/%s/%v", st.Stage, st.Progress.Phase, st.ReadyForCutover)
	if key == p.shakeLine && time.Since(p.last) < 5*time.Second {
		return
	}
	p.shakeLine, p.last = key, time.Now()
	mode := job.ModeRedisShake
	if st.Mode == shake.ModeSync {
		mode = job.ModeRedisShakeSync
	}
	fmt.Fprintf(p.w, "  redis-shake: %s\n", shakeText(mode, st))
}

func (p *lineProgress) ShakeEnded(id string, end workflow.ShakeEnd) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "job %s: redis-shake %s\n", id, strings.ReplaceAll(string(end), "_", " "))
}
