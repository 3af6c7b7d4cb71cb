package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/topology"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

// renderOutcome prints the summary table of a run.
func renderOutcome(w io.Writer, out workflow.Outcome, took time.Duration) {
	j := out.Job
	if len(out.Shards) == 0 && out.Source.Engine == "" {
		// Failed before planning: the error alone says it all.
		fmt.Fprintf(w, "job %s: %s\n", j.ID, j.Status)
		return
	}
	fmt.Fprintf(w, "\njob %s: %s (%s)\n", j.ID, j.Status, took.Round(time.Millisecond))
	fmt.Fprintf(w, "  source  %s  %s\n", j.Source, describe(out.Source))
	fmt.Fprintf(w, "  target  %s  %s\n", j.Target, describe(out.Target))
	if len(out.Shards) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\tSHARD\tDB\tCOPIED\tSKIPPED\tEXPIRED\tFAILED\tFALLBACKS\tDONE\t")
		var total job.Counters
		for _, s := range out.Shards {
			c := s.Counters
			total.Add(c)
			fmt.Fprintf(tw, "\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%v\t\n", s.Node, s.DB, c.Copied, c.Skipped, c.Expired, c.Failed, c.Fallbacks, s.Done)
		}
		fmt.Fprintf(tw, "\tTOTAL\t\t%d\t%d\t%d\t%d\t%d\t\t\n", total.Copied, total.Skipped, total.Expired, total.Failed, total.Fallbacks)
		tw.Flush()
	}
	c := j.Counters
	if workflow.IsShake(j.Mode) {
		renderShake(w, out)
	} else if out.Elapsed > 0 {
		secs := out.Elapsed.Seconds()
		rate := float64(c.Copied+c.Skipped+c.Expired) / secs
		keys := fmt.Sprintf("%.0f", rate)
		if rate < 10 {
			keys = fmt.Sprintf("%.2g", rate) // one huge key: 0.32 keys/s, not 0
		}
		fmt.Fprintf(w, "  %d keys, %s in %s: %s keys/s, %s/s\n", c.Copied, bytesHuman(c.Bytes), out.Elapsed.Round(time.Millisecond),
			keys, bytesHuman(int64(float64(c.Bytes)/secs)))
	}
	notes := []struct {
		n    int64
		text string
	}{
		{c.Fallbacks, "keys fell back from DUMP/RESTORE to type commands (the target refused the source's RDB version, or an ACL denies DUMP or RESTORE)"},
		{c.EvalFallbacks, "compound keys were finished with PEXPIRE then RENAME because the target denies EVAL"},
		{c.FieldTTLsDropped, "hash field TTLs could not be carried: the target has no per-field expiry"},
		{c.PendingNotCarried, "stream pending entries were not carried (their message was deleted from the stream while pending)"},
		{c.ListsChanged, "lists changed while they were copied: copy them again once writes stop"},
		{c.TempKeysSwept, "temporary keys of interrupted copies were removed"},
	}
	for _, n := range notes {
		if n.n > 0 {
			fmt.Fprintf(w, "  note: %d %s\n", n.n, n.text)
		}
	}
	for _, e := range out.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", e)
	}
	for _, e := range out.Errors {
		fmt.Fprintf(w, "  error: %s\n", endpoint.Redact(e))
	}
	if j.Error != "" {
		fmt.Fprintf(w, "  %s\n", j.Error)
	}
}

func describe(i topology.Info) string {
	if i.Engine == "" {
		return ""
	}
	return "(" + i.String() + ")"
}

func bytesHuman(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// outcomeJSON is the --json form of a run.
type outcomeJSON struct {
	Job       job.Job       `json:"job"`
	Shards    []job.Shard   `json:"shards"`
	Source    topology.Info `json:"source"`
	Target    topology.Info `json:"target"`
	ElapsedMs int64         `json:"elapsedMs"`
	Errors    []string      `json:"errors,omitempty"`
	Warnings  []string      `json:"warnings,omitempty"`
	Error     string        `json:"error,omitempty"`
}

func jsonOutcome(out workflow.Outcome, err error) outcomeJSON {
	o := outcomeJSON{Job: out.Job, Shards: out.Shards, Source: out.Source, Target: out.Target,
		ElapsedMs: out.Elapsed.Milliseconds(), Errors: out.Errors, Warnings: out.Warnings}
	if o.Shards == nil {
		o.Shards = []job.Shard{}
	}
	if err != nil {
		o.Error = endpoint.Redact(err.Error())
	}
	return o
}

// renderShake prints what redis-shake last reported of a run.
func renderShake(w io.Writer, out workflow.Outcome) {
	j, p := out.Job, out.Job.Progress
	fmt.Fprintf(w, "  redis-shake (%s): stage %s, %d entries written", j.Mode, j.Stage, p.Keys)
	if p.RDBBytesTotal > 0 {
		fmt.Fprintf(w, ", RDB %s of %s", bytesHuman(p.RDBBytesDone), bytesHuman(p.RDBBytesTotal))
	}
	if j.Mode == job.ModeRedisShakeSync && p.Phase == "syncing_aof" {
		fmt.Fprintf(w, ", replication diff %s", bytesHuman(p.AOFDiff))
	}
	if out.Elapsed > 0 {
		fmt.Fprintf(w, " in %s", out.Elapsed.Round(time.Millisecond))
	}
	fmt.Fprintln(w)
}
