package validation

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/topology"
)

// Baseline: snapshots of the target's load figures, taken before the
// migration (the analyze step records at least MinBaseline of them, spaced
// over a window) and after it (Run takes one before its own reads), kept
// in the job store as reports named SnapshotPrefix + the time. Run compares
// the "after" figures with the mean and spread of the "before" ones and
// flags regressions as issues.

// SnapshotPrefix starts the report names of snapshots; the rest is the
// time in RFC 3339 with 9 fractional digits, UTC, so names sort by time.
const SnapshotPrefix = "snapshot#"

const snapshotTimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// Baseline defaults.
const (
	// MinBaseline is how many pre-migration snapshots a comparison needs.
	MinBaseline = 5
	// DefaultSnapshotInterval is how long one snapshot measures ops/s and CPU.
	DefaultSnapshotInterval = time.Second
	// DefaultBaselineWindow is the span RecordBaseline spreads snapshots over.
	DefaultBaselineWindow = time.Minute
)

// Regression thresholds (see CompareBaseline).
const (
	cpuMarginPts      = 25.0 // percentage points of one core
	opsDropShare      = 0.25 // a quarter of the baseline throughput
	opsMinBaseline    = 100.0
	fragMargin        = 0.3
	fragHealthy       = 1.5
	fragMinUsedMemory = 32 << 20
	memSlack          = 64 << 20
	memGrowthFactor   = 2.0
)

// Snapshot is one reading of a deployment's load figures, over all its
// masters.
type Snapshot struct {
	At time.Time `json:"at"`
	// OpsPerSec: commands processed per second, summed over the masters,
	// measured over IntervalMs (total_commands_processed).
	OpsPerSec float64 `json:"opsPerSec"`
	// UsedMemory: used_memory summed over the masters, in bytes.
	UsedMemory int64 `json:"usedMemory"`
	// FragmentationRatio: summed RSS over summed used memory.
	FragmentationRatio float64 `json:"fragmentationRatio"`
	// CPUPercent: the busiest master's CPU (user+sys) over IntervalMs, in
	// percent of one core (the servers are single-threaded).
	CPUPercent float64 `json:"cpuPercent"`
	Masters    int     `json:"masters"`
	IntervalMs int64   `json:"intervalMs"`
}

// SnapshotStore keeps snapshots as job reports; job.Store has it.
type SnapshotStore interface {
	PutReport(ctx context.Context, id, name string, body []byte) error
	Report(ctx context.Context, id, name string) ([]byte, error)
	ReportNames(ctx context.Context, id, prefix string) ([]string, error)
}

// BaselineCheck asks Run to compare the target with its baseline.
type BaselineCheck struct {
	Store SnapshotStore
	JobID string
	// MigrationStart: snapshots taken before it are the baseline.
	MigrationStart time.Time
	// Interval of the "after" snapshot (DefaultSnapshotInterval when 0).
	Interval time.Duration
}

func (b *BaselineCheck) interval() time.Duration {
	if b.Interval <= 0 {
		return DefaultSnapshotInterval
	}
	return b.Interval
}

// BaselineReport is the comparison of the target's figures.
type BaselineReport struct {
	MigrationStart time.Time `json:"migrationStart"`
	// Before: pre-migration snapshots found.
	Before int `json:"before"`
	// Compared is false when there were fewer than MinBaseline; Skipped
	// says why.
	Compared bool               `json:"compared"`
	Skipped  string             `json:"skipped,omitempty"`
	After    Snapshot           `json:"after"`
	Metrics  []MetricComparison `json:"metrics"`
}

// MetricComparison is one figure before and after.
type MetricComparison struct {
	Metric       string  `json:"metric"` // opsPerSec, usedMemory, fragmentationRatio, cpuPercent
	BeforeMean   float64 `json:"beforeMean"`
	BeforeStdDev float64 `json:"beforeStdDev"`
	After        float64 `json:"after"`
	// Limit is the bound After is held to (a floor for opsPerSec, a
	// ceiling for the others); 0 when the metric is not checked.
	Limit      float64 `json:"limit"`
	Regression bool    `json:"regression"`
	Detail     string  `json:"detail,omitempty"`
}

// TakeSnapshot reads INFO on every master twice, interval apart, and
// returns the deployment's figures. It only reads.
func TakeSnapshot(ctx context.Context, c Conn, interval time.Duration) (Snapshot, error) {
	if interval <= 0 {
		interval = DefaultSnapshotInterval
	}
	masters, err := c.Masters(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	first := make([]map[string]string, len(masters))
	at := time.Now()
	for i, addr := range masters {
		if first[i], err = info(ctx, c, addr); err != nil {
			return Snapshot{}, err
		}
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return Snapshot{}, ctx.Err()
	case <-time.After(interval):
	}
	s := Snapshot{At: at.UTC(), Masters: len(masters)}
	var rss int64
	for i, addr := range masters {
		second, err := info(ctx, c, addr)
		if err != nil {
			return Snapshot{}, err
		}
		dt := time.Since(t0).Seconds()
		cmds := num(second, "total_commands_processed") - num(first[i], "total_commands_processed") - 1 // our INFO
		s.OpsPerSec += max(cmds, 0) / dt
		cpu := (num(second, "used_cpu_sys") + num(second, "used_cpu_user") -
			num(first[i], "used_cpu_sys") - num(first[i], "used_cpu_user")) / dt * 100
		s.CPUPercent = max(s.CPUPercent, cpu)
		s.UsedMemory += int64(num(second, "used_memory"))
		rss += int64(num(second, "used_memory_rss"))
	}
	if s.UsedMemory > 0 {
		s.FragmentationRatio = round(float64(rss)/float64(s.UsedMemory), 3)
	}
	s.OpsPerSec, s.CPUPercent = round(s.OpsPerSec, 1), round(s.CPUPercent, 2)
	s.IntervalMs = time.Since(t0).Milliseconds()
	return s, nil
}

func info(ctx context.Context, c Conn, addr string) (map[string]string, error) {
	node, err := c.Node(addr, 0)
	if err != nil {
		return nil, err
	}
	s, err := node.Do(ctx, node.B().Info().Build()).ToString()
	if err != nil {
		return nil, fmt.Errorf("INFO on %s: %w", addr, err)
	}
	return topology.ParseInfo(s), nil
}

func num(m map[string]string, k string) float64 {
	f, _ := strconv.ParseFloat(strings.TrimSpace(m[k]), 64)
	return f
}

// SaveSnapshot stores s with the job's reports.
func SaveSnapshot(ctx context.Context, st SnapshotStore, jobID string, s Snapshot) error {
	body, err := json.Marshal(s)
	if err != nil {
		return err
	}
	name := SnapshotPrefix + s.At.UTC().Format(snapshotTimeFormat)
	if err := st.PutReport(ctx, jobID, name, body); err != nil {
		return fmt.Errorf("store snapshot %s: %w", name, err)
	}
	return nil
}

// Snapshots returns the job's snapshots, oldest first.
func Snapshots(ctx context.Context, st SnapshotStore, jobID string) ([]Snapshot, error) {
	names, err := st.ReportNames(ctx, jobID, SnapshotPrefix)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	out := make([]Snapshot, 0, len(names))
	for _, name := range names {
		body, err := st.Report(ctx, jobID, name)
		if err != nil {
			return nil, fmt.Errorf("read snapshot %s: %w", name, err)
		}
		var s Snapshot
		if err := json.Unmarshal(body, &s); err != nil {
			return nil, fmt.Errorf("decode snapshot %s: %w", name, err)
		}
		out = append(out, s)
	}
	slices.SortStableFunc(out, func(a, b Snapshot) int { return a.At.Compare(b.At) })
	return out, nil
}

// RecordOptions shape RecordBaseline.
type RecordOptions struct {
	// Count of snapshots (MinBaseline when 0), spread evenly over Window
	// (DefaultBaselineWindow when 0): the first at once, the last at the
	// end of the window.
	Count  int
	Window time.Duration
	// Interval each snapshot measures over (DefaultSnapshotInterval when 0).
	Interval time.Duration
}

// RecordBaseline takes the pre-migration snapshots of the target and
// stores each as soon as it is taken. It returns those it took (also on
// error).
func RecordBaseline(ctx context.Context, c Conn, st SnapshotStore, jobID string, o RecordOptions) ([]Snapshot, error) {
	if o.Count <= 0 {
		o.Count = MinBaseline
	}
	if o.Window <= 0 {
		o.Window = DefaultBaselineWindow
	}
	if o.Interval <= 0 {
		o.Interval = DefaultSnapshotInterval
	}
	start := time.Now()
	var out []Snapshot
	for i := range o.Count {
		if i > 0 {
			at := start.Add(o.Window * time.Duration(i) / time.Duration(o.Count-1))
			select {
			case <-ctx.Done():
				return out, ctx.Err()
			case <-time.After(time.Until(at)):
			}
		}
		s, err := TakeSnapshot(ctx, c, o.Interval)
		if err != nil {
			return out, fmt.Errorf("snapshot %d of %d: %w", i+1, o.Count, err)
		}
		if err := SaveSnapshot(ctx, st, jobID, s); err != nil {
			return out, err
		}
		out = append(out, s)
	}
	return out, nil
}

// CompareBaseline holds after against the snapshots taken before start.
// sourceDataMemory (the source's used_memory above its startup figure,
// 0 when unknown) bounds the expected memory growth. Regressions:
//   - cpuPercent above the baseline mean + max(3σ, 25 points);
//   - opsPerSec below mean − max(3σ, 25 % of the mean), when the mean is at
//     least 100 (an idle target cannot regress);
//   - fragmentationRatio above max(1.5, mean + max(3σ, 0.3)), when the
//     target uses at least 32 MiB (small heaps have meaningless ratios);
//   - usedMemory grown by more than 2 × the source's data + 64 MiB.
func CompareBaseline(all []Snapshot, after Snapshot, start time.Time, sourceDataMemory int64) BaselineReport {
	r := BaselineReport{MigrationStart: start.UTC(), After: after, Metrics: []MetricComparison{}}
	var before []Snapshot
	for _, s := range all {
		if s.At.Before(start) {
			before = append(before, s)
		}
	}
	r.Before = len(before)
	if len(before) < MinBaseline {
		r.Skipped = fmt.Sprintf("%d snapshots taken before the migration started; %d needed", len(before), MinBaseline)
		return r
	}
	r.Compared = true
	stat := func(f func(Snapshot) float64) (mean, sd float64) {
		for _, s := range before {
			mean += f(s)
		}
		mean /= float64(len(before))
		for _, s := range before {
			sd += (f(s) - mean) * (f(s) - mean)
		}
		return mean, math.Sqrt(sd / float64(len(before)))
	}

	m, sd := stat(func(s Snapshot) float64 { return s.CPUPercent })
	c := MetricComparison{Metric: "cpuPercent", BeforeMean: round(m, 2), BeforeStdDev: round(sd, 2), After: after.CPUPercent,
		Limit: round(m+max(3*sd, cpuMarginPts), 2)}
	if c.After > c.Limit {
		c.Regression = true
		c.Detail = fmt.Sprintf("CPU %.1f %% after the migration, %.1f %% ± %.1f before (limit %.1f %%)", c.After, m, sd, c.Limit)
	}
	r.Metrics = append(r.Metrics, c)

	m, sd = stat(func(s Snapshot) float64 { return s.OpsPerSec })
	c = MetricComparison{Metric: "opsPerSec", BeforeMean: round(m, 1), BeforeStdDev: round(sd, 1), After: after.OpsPerSec}
	if m >= opsMinBaseline {
		c.Limit = round(m-max(3*sd, opsDropShare*m), 1)
		if c.After < c.Limit {
			c.Regression = true
			c.Detail = fmt.Sprintf("throughput %.0f ops/s after the migration, %.0f ± %.0f before (floor %.0f)", c.After, m, sd, c.Limit)
		}
	}
	r.Metrics = append(r.Metrics, c)

	m, sd = stat(func(s Snapshot) float64 { return s.FragmentationRatio })
	c = MetricComparison{Metric: "fragmentationRatio", BeforeMean: round(m, 3), BeforeStdDev: round(sd, 3), After: after.FragmentationRatio}
	if after.UsedMemory >= fragMinUsedMemory {
		c.Limit = round(max(fragHealthy, m+max(3*sd, fragMargin)), 3)
		if c.After > c.Limit {
			c.Regression = true
			c.Detail = fmt.Sprintf("memory fragmentation ratio %.2f after the migration, %.2f ± %.2f before (limit %.2f)", c.After, m, sd, c.Limit)
		}
	}
	r.Metrics = append(r.Metrics, c)

	m, sd = stat(func(s Snapshot) float64 { return float64(s.UsedMemory) })
	c = MetricComparison{Metric: "usedMemory", BeforeMean: math.Round(m), BeforeStdDev: math.Round(sd), After: float64(after.UsedMemory)}
	if sourceDataMemory > 0 {
		c.Limit = math.Round(m + memGrowthFactor*float64(sourceDataMemory) + memSlack)
		if c.After > c.Limit {
			c.Regression = true
			c.Detail = fmt.Sprintf("used memory grew by %s, more than twice the source's data (%s) plus 64 MiB",
				mib(c.After-m), mib(float64(sourceDataMemory)))
		}
	}
	r.Metrics = append(r.Metrics, c)
	return r
}

// baseline stores the "after" snapshot, loads the others and compares.
func (v *run) baseline(ctx context.Context, after Snapshot) (BaselineReport, error) {
	b := v.o.Baseline
	if err := SaveSnapshot(ctx, b.Store, b.JobID, after); err != nil {
		return BaselineReport{}, err
	}
	all, err := Snapshots(ctx, b.Store, b.JobID)
	if err != nil {
		return BaselineReport{}, err
	}
	srcData, err := dataMemory(ctx, v.src, v.smasters)
	if err != nil {
		v.o.Log.Warn("source memory unknown; memory growth not checked", "err", err)
	}
	r := CompareBaseline(all, after, b.MigrationStart, srcData)
	for _, m := range r.Metrics {
		if m.Regression {
			v.issue(Issue{Kind: IssueBaseline, Detail: m.Metric + ": " + m.Detail})
		}
	}
	return r, nil
}

// dataMemory is the source's used_memory above used_memory_startup, over
// its masters.
func dataMemory(ctx context.Context, c Conn, masters []string) (int64, error) {
	var total int64
	for _, addr := range masters {
		node, err := c.Node(addr, 0)
		if err != nil {
			return 0, err
		}
		s, err := node.Do(ctx, node.B().Info().Section("memory").Build()).ToString()
		if err != nil {
			return 0, fmt.Errorf("INFO memory on %s: %w", addr, err)
		}
		m := topology.ParseInfo(s)
		total += max(int64(num(m, "used_memory")-num(m, "used_memory_startup")), 0)
	}
	return total, nil
}

func round(f float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(f*p) / p
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
