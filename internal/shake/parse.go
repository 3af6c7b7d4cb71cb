package shake

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Stage is where a redis-shake run stands, as its log shows it.
type Stage string

const (
	// StageInitialSync: copying the existing data (scan mode: the whole
	// run; sync mode: handshake, BGSAVE, RDB transfer and load).
	StageInitialSync Stage = "initial_sync"
	// StageReplicating: sync mode, every source streams its replication
	// (AOF) to the target; see Status.ReadyForCutover.
	StageReplicating Stage = "replicating"
	// StageDone: redis-shake logged "all done" (scan finished, or sync
	// stopped cleanly).
	StageDone Stage = "done"
	// StageFailed: redis-shake logged an error, or crashed; see
	// Status.Failure.
	StageFailed Stage = "failed"
)

// Phase is the state of redis-shake's reader on its last status line.
type Phase string

const (
	PhaseScanning      Phase = "scanning"       // scan_reader: SCAN in progress
	PhaseScanFinished  Phase = "scan_finished"  // scan_reader: SCAN done, queued keys still being copied
	PhaseHandshake     Phase = "handshake"      // sync_reader: "hand shaking"
	PhaseWaitingBgsave Phase = "waiting_bgsave" // the source is writing its RDB
	PhaseReceivingRDB  Phase = "receiving_rdb"  // the RDB is being downloaded
	PhaseSyncingRDB    Phase = "syncing_rdb"    // the RDB is being written to the target
	PhaseSyncingAOF    Phase = "syncing_aof"    // replication stream
)

// phaseOrder ranks the sync phases: a cluster is as far as its slowest
// source.
var phaseOrder = map[Phase]int{
	PhaseHandshake: 1, PhaseWaitingBgsave: 2, PhaseReceivingRDB: 3, PhaseSyncingRDB: 4, PhaseSyncingAOF: 5,
	PhaseScanning: 1, PhaseScanFinished: 2,
}

// Level is the level of a log record.
type Level string

const (
	LevelTrace Level = "trace"
	LevelDebug Level = "debug"
	LevelInfo  Level = "info"
	LevelWarn  Level = "warn"
	LevelError Level = "error"
	LevelFatal Level = "fatal"
	LevelPanic Level = "panic"
	// LevelUnknown: a line that is not a log record (stderr, an unknown
	// format).
	LevelUnknown Level = ""
)

// consoleLevels maps zerolog's console abbreviations.
var consoleLevels = map[string]Level{
	"TRC": LevelTrace, "DBG": LevelDebug, "INF": LevelInfo, "WRN": LevelWarn,
	"ERR": LevelError, "FTL": LevelFatal, "PNC": LevelPanic, "???": LevelUnknown,
}

func (l Level) isError() bool { return l == LevelError || l == LevelFatal || l == LevelPanic }

// Record is one record of redis-shake's log: a console line with the
// lines that continue it (a stack trace), or one line of the JSON log
// file. Message is sanitized.
type Record struct {
	Time    time.Time `json:"time,omitzero"`
	Level   Level     `json:"level"`
	Message string    `json:"message"`
}

// Progress is what redis-shake's last status line(s) said. Counts are
// entries: keys (or the commands a big key is split into) in scan mode
// and during the RDB, commands during replication.
type Progress struct {
	Time       time.Time `json:"time,omitzero"`
	Phase      Phase     `json:"phase,omitempty"`
	ReadCount  int64     `json:"readCount"`
	ReadOPS    float64   `json:"readOps"`
	WriteCount int64     `json:"writeCount"`
	WriteOPS   float64   `json:"writeOps"`
	// Scan mode: the database being scanned and how far the SCAN cursor
	// is through it (0–100; averaged over the nodes of a cluster), and the
	// keys found but not yet copied.
	ScanDB      int     `json:"scanDb"`
	ScanPercent float64 `json:"scanPercent"`
	PendingKeys int64   `json:"pendingKeys"`
	// Sync mode: RDB bytes written to the target out of the RDB's size,
	// summed over the sources. redis-shake prints them rounded to two
	// significant digits (3.2 MiB), so they are approximate.
	RDBBytesDone  int64 `json:"rdbBytesDone"`
	RDBBytesTotal int64 `json:"rdbBytesTotal"`
	// AOFDiff: replication bytes received from the sources and not yet
	// sent to the target (redis-shake's diff), summed over the sources.
	AOFDiff int64 `json:"aofDiff"`
	// Sources: the number of source nodes reporting (1 for standalone).
	Sources int `json:"sources"`
}

// Status is what the log has said so far.
type Status struct {
	Mode     Mode     `json:"mode"`
	Stage    Stage    `json:"stage"`
	Progress Progress `json:"progress"`
	// ReadyForCutover: sync mode, replicating, and every source's diff has
	// been 0 on ReadyAfter consecutive status lines. It falls back to
	// false when writes are pending again.
	ReadyForCutover bool `json:"readyForCutover"`
	// Stopping: redis-shake logged that it got a signal.
	Stopping bool `json:"stopping,omitempty"`
	// Warnings counts warning records.
	Warnings int64    `json:"warnings"`
	Failure  *Failure `json:"failure,omitempty"`
	// LastErrors holds the last error records and stderr lines,
	// sanitized, oldest first.
	LastErrors []string `json:"lastErrors,omitempty"`
}

func (s Status) clone() Status {
	if s.Failure != nil {
		f := *s.Failure
		s.Failure = &f
	}
	s.LastErrors = append([]string(nil), s.LastErrors...)
	return s
}

// DefaultReadyAfter is the number of consecutive status lines with
// diff=[0] after which a sync is ready for cutover (15 s at the default
// log interval).
const DefaultReadyAfter = 3

// maxLastErrors bounds Status.LastErrors.
const maxLastErrors = 10

// Warning records are all counted (Status.Warnings), but beyond the first
// maxWarnRecords only one in warnRecordEvery is returned, and the others
// are not even sanitized: redis-shake can print one warning per key
// (200,002 within a second in the valkey-to-redis-scan-forcerewrite
// capture), and reading its output must keep up with it.
const (
	maxWarnRecords  = 100
	warnRecordEvery = 10000
)

// ParserOptions configure a Parser.
type ParserOptions struct {
	Mode Mode
	// ReadyAfter: see Status.ReadyForCutover (default DefaultReadyAfter).
	ReadyAfter int
	// Sources is the number of source masters when known (a cluster's
	// status lines go round them, "src-N, ..."). 0: learnt from the log
	// once the round has come back to a source already seen.
	Sources int
	// Sanitizer sanitizes records (nil: no known secrets).
	Sanitizer *Sanitizer
	// Location of the console timestamps (default time.Local: redis-shake
	// prints its local time without a zone).
	Location *time.Location
}

// Parser turns redis-shake's log, line by line, into a Status. It reads
// both the console output (with or without colours) and the JSON log file,
// even mixed. It is not safe for concurrent use.
type Parser struct {
	opts    ParserOptions
	st      Status
	pending *record // the console record that continuation lines extend
	srcs    map[int]*sourceState
	lastSrc int
	round   bool // a cluster's status lines have gone round every source
}

type record struct {
	time    time.Time
	level   Level
	first   string   // the record's first line, raw
	more    []string // continuation lines, raw
	size    int      // bytes in more
	failure bool     // this record set Status.Failure
}

// Bounds on one record: the text kept (it is cut to MaxRecordLen once
// sanitized anyway) and the stack lines read to tell a failure's side.
const (
	maxRecordInput = 64 << 10
	maxStackLines  = 32
	maxSources     = 4096 // src-N of a cluster: far more than any has masters
)

type sourceState struct {
	phase              Phase
	rdbDone, rdbTotal  int64
	diff               int64
	zeroRun            int
	scanDB             int
	scanPercent        float64
	pending            int64
	sawRDB, sawAOFDiff bool
}

// NewParser returns a parser in StageInitialSync.
func NewParser(opts ParserOptions) *Parser {
	if opts.ReadyAfter <= 0 {
		opts.ReadyAfter = DefaultReadyAfter
	}
	if opts.Location == nil {
		opts.Location = time.Local
	}
	return &Parser{
		opts:    opts,
		st:      Status{Mode: opts.Mode, Stage: StageInitialSync},
		srcs:    map[int]*sourceState{},
		lastSrc: -1,
	}
}

func stripANSI(s string) string {
	if strings.IndexByte(s, 0x1b) < 0 {
		return s
	}
	return ansiRE.ReplaceAllString(s, "")
}

// Status returns what the log has said so far.
func (p *Parser) Status() Status { return p.st.clone() }

// ParseLog reads a whole log, redis-shake's stdout or its JSON log file,
// and returns the status it ends in.
func ParseLog(r io.Reader, opts ParserOptions) (Status, error) {
	p := NewParser(opts)
	err := readLines(r, maxLineLen, func(line string) { p.Line(line) })
	p.Flush()
	if err != nil {
		return p.Status(), fmt.Errorf("read redis-shake log: %w", err)
	}
	return p.Status(), nil
}

var consoleRE = regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (TRC|DBG|INF|WRN|ERR|FTL|PNC|\?\?\?) ?(.*)$`)

type jsonRecord struct {
	Level   *string `json:"level"`
	Time    string  `json:"time"`
	Message *string `json:"message"`
}

// Line reads one line of redis-shake's stdout or JSON log file (without
// its line ending). It returns the records the line completed (a console
// record is complete when the next one starts; see Flush) and whether the
// Status changed.
func (p *Parser) Line(line string) (done []Record, changed bool) {
	line = strings.TrimSuffix(line, "\r")
	plain := stripANSI(line)
	if m := consoleRE.FindStringSubmatch(plain); m != nil {
		t, _ := time.ParseInLocation(time.DateTime, m[1], p.opts.Location)
		done = p.flushInto(done)
		return done, p.start(&record{time: t, level: consoleLevels[m[2]], first: m[3]})
	}
	if strings.HasPrefix(strings.TrimSpace(plain), "{") {
		var j jsonRecord
		if json.Unmarshal([]byte(plain), &j) == nil && j.Level != nil && j.Message != nil {
			t, _ := time.Parse(time.RFC3339Nano, j.Time)
			done = p.flushInto(done)
			first, rest, _ := strings.Cut(*j.Message, "\n")
			r := &record{time: t, level: Level(*j.Level), first: first}
			if rest != "" {
				r.more = strings.Split(rest, "\n")
			}
			changed = p.start(r)
			return p.flushInto(done), changed
		}
	}
	if r := p.pending; r != nil && r.level != LevelUnknown {
		if r.size+len(line) > maxRecordInput {
			return nil, false // the record is long enough: drop the rest
		}
		r.more = append(r.more, line)
		r.size += len(line)
		if r.failure && len(r.more) <= maxStackLines { // the stack trace can tell the side
			p.st.Failure = classify(p.pending, p.opts.Sanitizer)
			return nil, true
		}
		return nil, false
	}
	// A line outside any log record (printed before redis-shake's logger
	// starts, or by something else): a record of its own.
	done = p.flushInto(done)
	return done, p.start(&record{level: LevelUnknown, first: line})
}

func (p *Parser) flushInto(done []Record) []Record {
	if r := p.Flush(); r != nil {
		done = append(done, *r)
	}
	return done
}

// Flush completes the pending console record (call it at the end of the
// output) and returns it, or nil.
func (p *Parser) Flush() *Record {
	r := p.pending
	if r == nil {
		return nil
	}
	p.pending = nil
	if r.level == LevelWarn && p.st.Warnings > maxWarnRecords && p.st.Warnings%warnRecordEvery != 0 {
		return nil
	}
	text := r.first
	if len(r.more) > 0 {
		text += "\n" + strings.Join(r.more, "\n")
	}
	msg := p.opts.Sanitizer.Sanitize(text)
	if r.level.isError() {
		p.addLastError(msg)
	}
	return &Record{Time: r.time, Level: r.level, Message: msg}
}

// Stderr reads one line of redis-shake's standard error: Go runtime
// panics ("panic: ...", "fatal error: ...") and anything else printed
// outside the logger. Every non-empty line is kept in LastErrors.
func (p *Parser) Stderr(line string) (changed bool) {
	line = strings.TrimRight(line, "\r\n")
	if strings.TrimSpace(line) == "" {
		return false
	}
	msg := p.opts.Sanitizer.Sanitize(line)
	p.addLastError(msg)
	if p.st.Failure == nil && (strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ")) {
		p.fail(&Failure{Kind: FailureCrash, Message: msg,
			Reason: "redis-shake crashed: " + msg})
	}
	return true
}

func (p *Parser) addLastError(msg string) {
	p.st.LastErrors = append(p.st.LastErrors, msg)
	if n := len(p.st.LastErrors); n > maxLastErrors {
		p.st.LastErrors = append(p.st.LastErrors[:0], p.st.LastErrors[n-maxLastErrors:]...)
	}
}

func (p *Parser) fail(f *Failure) {
	p.st.Failure = f
	p.st.Stage = StageFailed
	p.st.ReadyForCutover = false
}

// start handles a new record from its first line (progress is not delayed
// until the record is complete) and makes it the pending one.
func (p *Parser) start(r *record) (changed bool) {
	p.pending = r
	msg := r.first
	switch {
	case r.level.isError():
		if p.st.Failure == nil {
			r.failure = true
			p.fail(classify(r, p.opts.Sanitizer))
			return true
		}
		return false
	case r.level == LevelWarn:
		p.st.Warnings++
		return false
	case strings.HasPrefix(msg, "read_count=["):
		return p.status(r.time, msg)
	case msg == "all done":
		if p.st.Stage == StageFailed {
			return false
		}
		if p.opts.Mode == ModeScan && len(p.srcs) > 0 {
			// The scan and the copy of every key it found are finished.
			for _, s := range p.srcs {
				s.phase, s.scanPercent, s.pending = PhaseScanFinished, 100, 0
			}
			p.aggregate()
		}
		p.st.Stage = StageDone
		p.st.ReadyForCutover = false
		return true
	case strings.HasPrefix(msg, "Got signal:"):
		p.st.Stopping = true
		return true
	}
	return false
}

var (
	fieldRE  = regexp.MustCompile(`(\w+)=\[([^\]]*)\]`)
	srcRE    = regexp.MustCompile(`(?:^|, )src-(\d+), `)
	sizeRE   = regexp.MustCompile(`size=\[([^/\]]*)(?:/([^\]]*))?\]`)
	stateRes = []struct {
		phase Phase
		re    *regexp.Regexp
	}{
		{PhaseSyncingAOF, regexp.MustCompile(`\bsyncing aof\b`)},
		{PhaseSyncingRDB, regexp.MustCompile(`\bsyncing rdb\b`)},
		{PhaseReceivingRDB, regexp.MustCompile(`\breceiving rdb\b`)},
		{PhaseWaitingBgsave, regexp.MustCompile(`\bwaiting bgsave\b`)},
		{PhaseHandshake, regexp.MustCompile(`\bhand shaking\b`)},
	}
)

// status reads a status line:
//
//	read_count=[n], read_ops=[f], write_count=[n], write_ops=[f], [src-N, ]<reader status>
//
// where the reader status is one of
//
//	scan_dbid=[d], scan_percent=[p%], need_update_count=[n]   scan
//	need_update_count=[n]                                     scan finished
//	hand shaking | waiting bgsave                             sync
//	receiving rdb, size=[x/y] | receiving rdb diskless, size=[x]
//	syncing rdb, size=[x/y]
//	syncing aof, diff=[n]
func (p *Parser) status(t time.Time, msg string) bool {
	fields := map[string]string{}
	for _, m := range fieldRE.FindAllStringSubmatch(msg, -1) {
		if _, dup := fields[m[1]]; !dup {
			fields[m[1]] = m[2]
		}
	}
	pr := &p.st.Progress
	pr.Time = t
	pr.ReadCount = parseInt(fields["read_count"], pr.ReadCount)
	pr.WriteCount = parseInt(fields["write_count"], pr.WriteCount)
	pr.ReadOPS = parseFloat(fields["read_ops"], pr.ReadOPS)
	pr.WriteOPS = parseFloat(fields["write_ops"], pr.WriteOPS)

	src := 0
	if m := srcRE.FindStringSubmatch(msg); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil && n < maxSources {
			src = n
		}
	}
	if _, seen := p.srcs[src]; seen && src != p.lastSrc {
		p.round = true // the round has come back to a source already seen
	}
	s := p.srcs[src]
	if s == nil {
		s = &sourceState{}
		p.srcs[src] = s
	}
	p.lastSrc = src

	// Only the reader's part: a writer status may follow in other versions.
	reader := msg
	if i := strings.Index(msg, "write_ops=["); i >= 0 {
		reader = msg[i:]
	}
	phase := Phase("")
	for _, st := range stateRes {
		if st.re.MatchString(reader) {
			phase = st.phase
			break
		}
	}
	_, hasPending := fields["need_update_count"]
	if phase == "" && hasPending {
		phase = PhaseScanFinished
		if _, ok := fields["scan_dbid"]; ok {
			phase = PhaseScanning
		}
	}
	if phase == "" {
		// A state this parser does not know: the counts stand, and the
		// source blocks replicating and readiness until it reads again.
		s.phase, s.zeroRun = "", 0
		p.aggregate()
		return true
	}
	s.phase = phase
	switch phase {
	case PhaseScanning, PhaseScanFinished:
		s.pending = parseInt(fields["need_update_count"], s.pending)
		if phase == PhaseScanning {
			s.scanDB = int(parseInt(fields["scan_dbid"], int64(s.scanDB)))
			s.scanPercent = parseFloat(strings.TrimSuffix(fields["scan_percent"], "%"), s.scanPercent)
		} else {
			s.scanPercent = 100
		}
	case PhaseReceivingRDB, PhaseSyncingRDB:
		if m := sizeRE.FindStringSubmatch(reader); m != nil {
			done, _ := parseSize(m[1])
			if phase == PhaseSyncingRDB || m[2] != "" {
				s.rdbDone = done
			}
			if total, ok := parseSize(m[2]); ok {
				s.rdbTotal = total
			}
			s.sawRDB = true
		}
	case PhaseSyncingAOF:
		if s.sawRDB {
			s.rdbDone = s.rdbTotal
		}
		if d, ok := fields["diff"]; ok {
			s.diff = parseInt(d, s.diff)
			s.sawAOFDiff = true
			if s.diff <= 0 {
				s.zeroRun++
			} else {
				s.zeroRun = 0
			}
		}
	}
	p.aggregate()
	return true
}

// aggregate derives the Progress, Stage and readiness from the sources.
func (p *Parser) aggregate() {
	pr := &p.st.Progress
	pr.Sources = len(p.srcs)
	pr.Phase = ""
	pr.RDBBytesDone, pr.RDBBytesTotal, pr.AOFDiff, pr.PendingKeys = 0, 0, 0, 0
	var pct float64
	allAOF, allReady := true, true
	first := true
	for i, s := range p.srcs {
		if first || phaseOrder[s.phase] < phaseOrder[pr.Phase] {
			pr.Phase, first = s.phase, false
		}
		pr.RDBBytesDone += s.rdbDone
		pr.RDBBytesTotal += s.rdbTotal
		pr.PendingKeys += s.pending
		pct += s.scanPercent
		if s.phase == PhaseSyncingAOF && s.diff > 0 {
			pr.AOFDiff += s.diff
		}
		if i == p.lastSrc {
			pr.ScanDB = s.scanDB
		}
		allAOF = allAOF && s.phase == PhaseSyncingAOF
		allReady = allReady && s.sawAOFDiff && s.zeroRun >= p.opts.ReadyAfter
	}
	if len(p.srcs) > 0 {
		pr.ScanPercent = math.Round(pct/float64(len(p.srcs))*100) / 100
	}
	if p.st.Stage != StageInitialSync && p.st.Stage != StageReplicating {
		return // done and failed are final
	}
	// A cluster is replicating when every source is, which needs every
	// source to have reported: known count, or the round has come back.
	complete := len(p.srcs) == 1 && p.lastSrc == 0 && p.opts.Sources <= 1 ||
		p.opts.Sources > 0 && len(p.srcs) >= p.opts.Sources || p.opts.Sources == 0 && p.round
	if p.opts.Mode == ModeSync && allAOF && complete {
		p.st.Stage = StageReplicating
	}
	p.st.ReadyForCutover = p.st.Stage == StageReplicating && allReady
}

func parseInt(s string, old int64) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return old
	}
	return n
}

func parseFloat(s string, old float64) float64 {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return old
	}
	return f
}

var sizeUnits = map[string]float64{
	"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "PiB": 1 << 50, "EiB": 1 << 60,
	"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "PB": 1e15, "EB": 1e18,
}

// parseSize reads a size printed by go-humanize ("3.2 MiB", "30 MiB",
// "82 B"). An empty size (redis-shake prints "size=[/30 MiB]" before the
// first bytes are sent) is 0 and not ok.
func parseSize(s string) (int64, bool) {
	num, unit, _ := strings.Cut(strings.TrimSpace(s), " ")
	f, err := strconv.ParseFloat(num, 64)
	mult, known := sizeUnits[strings.TrimSpace(unit)]
	if unit == "" {
		mult, known = 1, true
	}
	if err != nil || !known || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) || f*mult > math.MaxInt64/2 {
		return 0, false
	}
	return int64(f * mult), true
}
