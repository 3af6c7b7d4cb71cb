package shake

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// captures are the fixtures' scenarios and the reader each ran.
var captures = []struct {
	name string
	mode Mode
}{
	{"scan-full", ModeScan},
	{"sync-rdb-aof", ModeSync},
	{"sync-rdb-aof-interval1", ModeSync},
	{"valkey-to-redis-scan", ModeScan},
	{"valkey-to-redis-scan-forcerewrite", ModeScan},
	{"valkey-to-redis-sync", ModeSync},
	{"bad-password", ModeScan},
	{"unreachable-target", ModeScan},
}

// logFiles returns the log files of a capture: the console output with
// and without colours (or an excerpt) and the JSON log file.
func logFiles(t *testing.T, name string) []string {
	t.Helper()
	var files []string
	for _, suffix := range []string{".stdout.log", ".stdout.nocolor.log", ".stdout.excerpt.nocolor.log", ".shake.log.jsonl"} {
		f := filepath.Join("testdata", "fixtures", name+suffix)
		if _, err := os.Stat(f); err == nil {
			files = append(files, f)
		}
	}
	require.NotEmpty(t, files, "no log files for %s", name)
	return files
}

// parsed is what the parser made of one log file.
type parsed struct {
	Fixture  string         `json:"fixture"`
	Records  map[string]int `json:"records"` // by level
	Timeline []change       `json:"timeline"`
	Progress []Progress     `json:"progress"` // after each status line
	Final    Status         `json:"final"`
	records  []Record
}

// change is a moment where the stage, phase, readiness or failure changed.
type change struct {
	Line     int       `json:"line"`
	Time     time.Time `json:"time,omitzero"`
	Stage    Stage     `json:"stage"`
	Phase    Phase     `json:"phase,omitempty"`
	Ready    bool      `json:"readyForCutover,omitempty"`
	Stopping bool      `json:"stopping,omitempty"`
	Failure  string    `json:"failure,omitempty"`
}

func parseFile(t *testing.T, file string, mode Mode) parsed {
	t.Helper()
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	p := NewParser(ParserOptions{Mode: mode, Location: time.UTC})
	out := parsed{Fixture: filepath.Base(file), Records: map[string]int{}}
	var last change
	n := 0
	keep := func(recs ...Record) {
		for _, r := range recs {
			lvl := string(r.Level)
			if lvl == "" {
				lvl = "other"
			}
			out.Records[lvl]++
			out.records = append(out.records, r)
		}
	}
	require.NoError(t, readLines(f, maxLineLen, func(line string) {
		n++
		recs, _ := p.Line(line)
		keep(recs...)
		st := p.Status()
		c := change{Line: n, Time: st.Progress.Time, Stage: st.Stage, Phase: st.Progress.Phase,
			Ready: st.ReadyForCutover, Stopping: st.Stopping}
		if st.Failure != nil {
			c.Failure = string(st.Failure.Kind) + "/" + string(st.Failure.Side)
		}
		if strings.Contains(ansiRE.ReplaceAllString(line, ""), "read_count=[") {
			out.Progress = append(out.Progress, st.Progress)
		}
		cmp := c
		cmp.Line, cmp.Time = last.Line, last.Time
		if cmp != last {
			out.Timeline = append(out.Timeline, c)
			last = c
		}
	}))
	if r := p.Flush(); r != nil {
		keep(*r)
	}
	out.Final = p.Status()
	return out
}

// TestParseGolden compares what the parser makes of every real log file
// with testdata/golden/<file>.json, and the sanitized records with
// <file>.records.txt. go test -run TestParseGolden -update rewrites them.
func TestParseGolden(t *testing.T) {
	for _, c := range captures {
		for _, file := range logFiles(t, c.name) {
			t.Run(filepath.Base(file), func(t *testing.T) {
				got := parseFile(t, file, c.mode)
				js, err := json.MarshalIndent(got, "", "  ")
				require.NoError(t, err)
				var recs strings.Builder
				for _, r := range got.records {
					fmt.Fprintf(&recs, "%s %-5s %s\n", r.Time.Format(time.RFC3339), r.Level, r.Message)
				}
				golden(t, filepath.Join("testdata", "golden", filepath.Base(file)+".json"), append(js, '\n'))
				golden(t, filepath.Join("testdata", "golden", filepath.Base(file)+".records.txt"), []byte(recs.String()))
			})
		}
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "golden file missing: run go test -run %s -update", t.Name())
	assert.Equal(t, string(want), string(got), "differs from %s (go test -update rewrites it)", path)
}

// TestParseFixtures states, capture by capture, what the parser must get
// out of the real logs, in every format.
func TestParseFixtures(t *testing.T) {
	mib := int64(1 << 20)
	at := func(s string) time.Time {
		tm, err := time.Parse(time.DateTime, "2026-11-26 "+s)
		require.NoError(t, err)
		return tm
	}
	tests := []struct {
		capture    string
		mode       Mode
		stage      Stage
		failure    FailureKind
		side       Side
		class      error
		phases     []Phase
		readyAt    []time.Time // every time ReadyForCutover turns true
		replAt     time.Time   // when the stage turned replicating
		final      func(t *testing.T, p Progress)
		stopping   bool
		warnings   int64
		maxRDB     [2]int64 // largest RDB done/total seen
		reasonHint string
	}{
		{capture: "scan-full", mode: ModeScan, stage: StageDone,
			phases: []Phase{PhaseScanning, PhaseScanFinished},
			final: func(t *testing.T, p Progress) {
				assert.Equal(t, int64(958215), p.ReadCount)
				assert.Equal(t, int64(958214), p.WriteCount)
				assert.InDelta(t, 12986.28, p.WriteOPS, 0.001)
				assert.Equal(t, 100.0, p.ScanPercent, "all done: the scan is complete")
				assert.Zero(t, p.PendingKeys)
			}},
		{capture: "sync-rdb-aof", mode: ModeSync, stage: StageDone, stopping: true,
			phases:  []Phase{PhaseSyncingRDB, PhaseSyncingAOF},
			replAt:  at("14:25:46"),
			readyAt: []time.Time{at("14:26:06")}, // diff 0, 39, then three 0s
			maxRDB:  [2]int64{29 * mib, 30 * mib},
			final: func(t *testing.T, p Progress) {
				assert.Equal(t, int64(1053187), p.WriteCount)
				assert.Zero(t, p.AOFDiff)
				assert.Equal(t, 30*mib, p.RDBBytesDone, "the RDB is complete once the AOF streams")
				assert.Equal(t, 30*mib, p.RDBBytesTotal)
			}},
		{capture: "sync-rdb-aof-interval1", mode: ModeSync, stage: StageDone, stopping: true,
			phases: []Phase{PhaseWaitingBgsave, PhaseSyncingRDB, PhaseSyncingAOF},
			replAt: at("14:17:14"),
			// diff=[5280353] (the whole offset), 0, 0, 0 → ready; 46 and
			// 180277 (writes) → not ready; 0, 0, 0 → ready again.
			readyAt: []time.Time{at("14:17:17"), at("14:17:23")},
			maxRDB:  [2]int64{30 * mib, 30 * mib},
			final: func(t *testing.T, p Progress) {
				assert.Equal(t, int64(1050040), p.WriteCount)
			}},
		{capture: "valkey-to-redis-scan", mode: ModeScan, stage: StageFailed,
			failure: FailureRDBVersion, side: SideTarget, class: ErrRDBVersion,
			reasonHint: "ERR DUMP payload version or checksum are wrong"},
		{capture: "valkey-to-redis-scan-forcerewrite", mode: ModeScan, stage: StageDone, warnings: 20,
			phases: []Phase{PhaseScanning, PhaseScanFinished},
			final: func(t *testing.T, p Progress) {
				assert.Equal(t, int64(3221494), p.WriteCount)
				assert.Zero(t, p.PendingKeys)
			}},
		{capture: "valkey-to-redis-sync", mode: ModeSync, stage: StageReplicating, stopping: true,
			phases: []Phase{PhaseSyncingRDB, PhaseSyncingAOF},
			replAt: at("14:23:23"),
			maxRDB: [2]int64{54 * mib, 55 * mib},
			final: func(t *testing.T, p Progress) {
				assert.Equal(t, int64(3392268), p.WriteCount)
			}},
		{capture: "bad-password", mode: ModeScan, stage: StageFailed,
			failure: FailureAuth, side: SideTarget, class: endpoint.ErrAuth,
			reasonHint: "WRONGPASS"},
		{capture: "unreachable-target", mode: ModeScan, stage: StageFailed,
			failure: FailureUnreachable, side: SideTarget, class: endpoint.ErrUnreachable,
			reasonHint: "127.0.0.1:17999 (connection refused)"},
	}
	for _, tt := range tests {
		for _, file := range logFiles(t, tt.capture) {
			t.Run(filepath.Base(file)+" gives "+string(tt.stage), func(t *testing.T) {
				got := parseFile(t, file, tt.mode)
				st := got.Final
				assert.Equal(t, tt.stage, st.Stage)
				assert.Equal(t, tt.stopping, st.Stopping)
				assert.Equal(t, tt.warnings, st.Warnings)
				assert.False(t, st.ReadyForCutover, "no run ends ready: they end done, failed or stopping")

				var phases []Phase
				var readyAt []time.Time
				var replAt time.Time
				prev := change{}
				for _, c := range got.Timeline {
					if c.Phase != "" && (len(phases) == 0 || phases[len(phases)-1] != c.Phase) {
						phases = append(phases, c.Phase)
					}
					if c.Ready && !prev.Ready {
						readyAt = append(readyAt, c.Time)
					}
					if c.Stage == StageReplicating && replAt.IsZero() {
						replAt = c.Time
					}
					prev = c
				}
				assert.Equal(t, tt.phases, phases, "phases in order")
				assert.Equal(t, tt.readyAt, readyAt, "ready for cutover at")
				assert.Equal(t, tt.replAt, replAt, "replicating from")
				var maxRDB [2]int64
				for _, p := range got.Progress {
					if p.Phase == PhaseSyncingRDB && p.RDBBytesDone >= maxRDB[0] {
						maxRDB = [2]int64{p.RDBBytesDone, p.RDBBytesTotal}
					}
				}
				assert.Equal(t, tt.maxRDB, maxRDB, "RDB progress shown in sync mode")
				if tt.final != nil {
					tt.final(t, st.Progress)
				}

				if tt.failure == "" {
					assert.Nil(t, st.Failure)
					assert.Empty(t, st.LastErrors)
					return
				}
				require.NotNil(t, st.Failure)
				assert.Equal(t, tt.failure, st.Failure.Kind)
				assert.Equal(t, tt.side, st.Failure.Side)
				assert.ErrorIs(t, st.Failure, tt.class)
				assert.ErrorIs(t, st.Failure, ErrFailed)
				assert.Contains(t, st.Failure.Reason, tt.reasonHint)
				assert.Equal(t, "2026-11-26", st.Failure.Time.Format(time.DateOnly), "the failure carries the record's time")
				require.Len(t, st.LastErrors, 1)
				assert.Contains(t, st.LastErrors[0], "goexit()", "the stack trace is kept with the error")
			})
		}
	}
}

// TestParseFormatsAgree checks that the console output, with and without
// colours, and the JSON log file of a run end in the same status.
func TestParseFormatsAgree(t *testing.T) {
	for _, c := range captures {
		files := logFiles(t, c.name)
		if len(files) < 2 {
			continue
		}
		t.Run(c.name+" ends the same in every format", func(t *testing.T) {
			want := parseFile(t, files[0], c.mode).Final
			for _, f := range files[1:] {
				assert.Equal(t, want, parseFile(t, f, c.mode).Final, filepath.Base(f))
			}
		})
	}
}

func TestParseStatusLines(t *testing.T) {
	mib := int64(1 << 20)
	prefix := "2026-11-26 14:00:00 INF read_count=[10], read_ops=[1.50], write_count=[9], write_ops=[1.25], "
	tests := []struct {
		name  string
		mode  Mode
		lines []string
		check func(t *testing.T, st Status)
	}{
		{"reads an empty RDB done size as 0", ModeSync, []string{prefix + "syncing rdb, size=[/30 MiB]"},
			func(t *testing.T, st Status) {
				assert.Equal(t, PhaseSyncingRDB, st.Progress.Phase)
				assert.Zero(t, st.Progress.RDBBytesDone)
				assert.Equal(t, 30*mib, st.Progress.RDBBytesTotal)
			}},
		{"reads sizes in B, KiB and GiB", ModeSync, []string{prefix + "receiving rdb, size=[82 B/1.5 GiB]"},
			func(t *testing.T, st Status) {
				assert.Equal(t, PhaseReceivingRDB, st.Progress.Phase)
				assert.Equal(t, int64(82), st.Progress.RDBBytesDone)
				assert.Equal(t, int64(1.5*float64(1<<30)), st.Progress.RDBBytesTotal)
			}},
		{"keeps the total while a diskless RDB is received", ModeSync, []string{
			prefix + "receiving rdb diskless, size=[3.0 MiB]"},
			func(t *testing.T, st Status) {
				assert.Equal(t, PhaseReceivingRDB, st.Progress.Phase)
				assert.Zero(t, st.Progress.RDBBytesTotal)
			}},
		{"treats a negative diff as nothing pending", ModeSync, []string{
			prefix + "syncing aof, diff=[-16384]", prefix + "syncing aof, diff=[0]", prefix + "syncing aof, diff=[0]"},
			func(t *testing.T, st Status) {
				assert.Zero(t, st.Progress.AOFDiff)
				assert.True(t, st.ReadyForCutover)
			}},
		{"waits for every cluster source before replicating", ModeSync, []string{
			prefix + "src-1, syncing aof, diff=[0]",
			prefix + "src-2, syncing rdb, size=[1.0 MiB/2.0 MiB]",
			prefix + "src-0, syncing aof, diff=[0]"},
			func(t *testing.T, st Status) {
				assert.Equal(t, StageInitialSync, st.Stage)
				assert.Equal(t, PhaseSyncingRDB, st.Progress.Phase, "a cluster is as far as its slowest source")
				assert.Equal(t, 3, st.Progress.Sources)
				assert.Equal(t, 2*mib, st.Progress.RDBBytesTotal)
			}},
		{"replicates once the round of cluster sources has come back", ModeSync, []string{
			prefix + "src-1, syncing aof, diff=[0]",
			prefix + "src-2, syncing aof, diff=[7]",
			prefix + "src-0, syncing aof, diff=[0]",
			prefix + "src-1, syncing aof, diff=[0]"},
			func(t *testing.T, st Status) {
				assert.Equal(t, StageReplicating, st.Stage)
				assert.Equal(t, int64(7), st.Progress.AOFDiff, "summed over sources")
				assert.False(t, st.ReadyForCutover, "src-2 still has a diff")
			}},
		{"ignores a status line it cannot read beyond the counts", ModeScan, []string{prefix + "something new=[x]"},
			func(t *testing.T, st Status) {
				assert.Equal(t, int64(9), st.Progress.WriteCount)
				assert.Equal(t, Phase(""), st.Progress.Phase)
				assert.Equal(t, StageInitialSync, st.Stage)
			}},
		{"lets a cluster source in an unknown state block readiness", ModeSync, []string{
			prefix + "src-1, syncing aof, diff=[0]", prefix + "src-0, syncing aof, diff=[0]",
			prefix + "src-1, syncing aof, diff=[0]", prefix + "src-0, syncing aof, diff=[0]",
			prefix + "src-1, syncing aof, diff=[0]", prefix + "src-0, syncing aof, diff=[0]",
			prefix + "src-1, something new"},
			func(t *testing.T, st Status) {
				assert.Equal(t, StageReplicating, st.Stage)
				assert.False(t, st.ReadyForCutover)
				assert.Equal(t, Phase(""), st.Progress.Phase)
			}},
		{"never replicates in scan mode", ModeScan, []string{prefix + "syncing aof, diff=[0]"},
			func(t *testing.T, st Status) { assert.Equal(t, StageInitialSync, st.Stage) }},
		{"keeps the first error as the failure", ModeScan, []string{
			"2026-11-26 14:00:00 ERR dial failed. address=[10.0.0.1:6379], tls=[true], err=[dial tcp 10.0.0.1:6379: i/o timeout]",
			"2026-11-26 14:00:01 ERR something else"},
			func(t *testing.T, st Status) {
				require.NotNil(t, st.Failure)
				assert.Equal(t, FailureUnreachable, st.Failure.Kind)
				assert.Len(t, st.LastErrors, 2)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewParser(ParserOptions{Mode: tt.mode})
			for _, l := range tt.lines {
				p.Line(l)
			}
			p.Flush()
			tt.check(t, p.Status())
		})
	}
}

func TestParseSamplesWarnings(t *testing.T) {
	p := NewParser(ParserOptions{Mode: ModeScan})
	returned := 0
	const n = 2*warnRecordEvery + 50
	for i := range n {
		recs, _ := p.Line(fmt.Sprintf("2026-11-26 14:55:20 WRN key=[k:%d] dump len=[77] too large, split it.", i))
		returned += len(recs)
	}
	if r := p.Flush(); r != nil {
		returned++
	}
	st := p.Status()
	assert.Equal(t, int64(n), st.Warnings, "every warning is counted")
	assert.Equal(t, maxWarnRecords+2, returned, "the first 100, then one in 10000")
}

func TestParseStderr(t *testing.T) {
	p := NewParser(ParserOptions{Mode: ModeSync, Sanitizer: NewSanitizer("hunter22")})
	assert.True(t, p.Stderr("panic: runtime error: index out of range [3] with length 3 (auth hunter22)"))
	assert.True(t, p.Stderr("goroutine 1 [running]:"))
	assert.False(t, p.Stderr(""))
	st := p.Status()
	require.NotNil(t, st.Failure)
	assert.Equal(t, FailureCrash, st.Failure.Kind)
	assert.ErrorIs(t, st.Failure, ErrCrashed)
	assert.Equal(t, StageFailed, st.Stage)
	assert.Len(t, st.LastErrors, 2)
	for _, e := range st.LastErrors {
		assert.NotContains(t, e, "hunter22")
	}
	assert.NotContains(t, st.Failure.Reason, "hunter22")
}

func TestParseClassifiesErrors(t *testing.T) {
	tests := []struct {
		msg   string
		stack string
		kind  FailureKind
		side  Side
		class error
	}{
		{"[reader_10.0.0.1_6379] receive reply failed. error=[NOAUTH Authentication required.]", "", FailureAuth, SideSource, endpoint.ErrAuth},
		{"auth failed with reply: ERR invalid password", "\t\t\tRedisShake/internal/reader/scan_standalone_reader.go:40 -> NewScanStandaloneReader()", FailureAuth, SideSource, endpoint.ErrAuth},
		{"NOPERM User shake has no permissions to run the 'psync' command", "\t\t\tRedisShake/internal/reader/sync_standalone_reader.go:199 -> (*syncStandaloneReader).sendPSync()", FailurePermission, SideSource, endpoint.ErrNoPermission},
		{"dial failed. address=[h:6380], tls=[true], err=[tls: first record does not look like a TLS handshake]", "", FailureTLS, "", endpoint.ErrTLS},
		{"[writer_h_6379] redisStandaloneWriter received BUSYKEY reply. cmd=[RESTORE k 0 \x00payload]", "", FailureKeyExists, SideTarget, ErrKeyExists},
		{"[writer_h_7000] receive reply failed. cmd=[SELECT 3], error=[ERR SELECT is not allowed in cluster mode]", "", FailureClusterDB, SideTarget, endpoint.ErrClusterDB},
		{"[writer_h_6379] receive reply failed. cmd=[SET k v], error=[OOM command not allowed when used memory > 'maxmemory'.]", "", FailureTargetOOM, SideTarget, ErrTargetOOM},
		{"write tcp 10.92.28.17:45858->10.65.16.28:8004: write: connection reset by peer", "", FailureConnLost, "", ErrConnectionLost},
		{"failed to read config file: toml: line 3: expected '.' or '=', but got 'x' instead", "", FailureConfig, "", ErrInvalidConfig},
		{"something nobody has seen", "", FailureOther, "", ErrFailed},
	}
	for _, tt := range tests {
		t.Run("classifies "+tt.msg[:min(len(tt.msg), 50)], func(t *testing.T) {
			p := NewParser(ParserOptions{Mode: ModeScan})
			p.Line("2026-11-26 14:00:00 ERR " + tt.msg)
			if tt.stack != "" {
				p.Line(tt.stack)
			}
			p.Flush()
			f := p.Status().Failure
			require.NotNil(t, f)
			assert.Equal(t, tt.kind, f.Kind)
			assert.Equal(t, tt.side, f.Side)
			assert.ErrorIs(t, f, tt.class)
			assert.NotContains(t, f.Reason, "payload", "command arguments never reach the reason")
		})
	}
}

// TestParseJSONLevels reads the JSON log of later redis-shake releases,
// which log fatal errors at level "panic".
func TestParseJSONLevels(t *testing.T) {
	p := NewParser(ParserOptions{Mode: ModeSync})
	recs, changed := p.Line(`{"level":"panic","time":"2025-10-13T13:12:38+08:00","message":"write tcp 10.92.28.17:45858->10.65.16.28:8004: write: connection reset by peer"}`)
	assert.True(t, changed)
	require.Len(t, recs, 1)
	assert.Equal(t, LevelPanic, recs[0].Level)
	assert.Equal(t, 2025, recs[0].Time.Year())
	st := p.Status()
	require.NotNil(t, st.Failure)
	assert.Equal(t, FailureConnLost, st.Failure.Kind)
}

func TestParseLog(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "fixtures", "unreachable-target.shake.log.jsonl"))
	require.NoError(t, err)
	st, err := ParseLog(bytes.NewReader(data), ParserOptions{Mode: ModeScan})
	require.NoError(t, err)
	require.NotNil(t, st.Failure)
	assert.ErrorIs(t, st.Failure, endpoint.ErrUnreachable)
}

func TestReadLinesCutsLongLines(t *testing.T) {
	long := "2026-11-26 14:00:00 ERR receive reply failed. cmd=[RESTORE k 0 " + strings.Repeat("A", 3*maxLineLen) +
		"] url redis://u:" + strings.Repeat("p", maxLineLen) + "@h"
	in := long + "\nnext line\r\nlast"
	var got []string
	require.NoError(t, readLines(strings.NewReader(in), maxLineLen, func(s string) { got = append(got, s) }))
	require.Len(t, got, 3)
	assert.LessOrEqual(t, len(got[0]), maxLineLen)
	assert.True(t, strings.HasSuffix(got[0], "… (line cut)"))
	assert.NotContains(t, got[0], "AAAA", "the token the cut falls in is dropped")
	assert.Equal(t, []string{"next line", "last"}, got[1:])
}
