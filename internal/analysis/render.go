package analysis

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
)

// WriteText renders r for a terminal: the findings first, then the sides,
// the sample's figures in tables, and one section per source master.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	table := func(rows func(tw *tabwriter.Writer)) {
		tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		rows(tw)
		tw.Flush()
	}

	title := "Analysis"
	if r.JobID != "" {
		title += " " + r.JobID
	}
	p("%s (%d ms)\n", title, r.DurationMs)
	p("  source  %s\n          %s\n", r.Source.Endpoint, describeSide(r.Source))
	p("  target  %s\n          %s\n", r.Target.Endpoint, describeSide(r.Target))

	p("\nFindings")
	nb := len(r.BlockingFindings())
	switch {
	case len(r.Findings) == 0:
		p(": none\n")
	case nb > 0:
		p(" (%d blocking: a migration is refused unless forced)\n", nb)
	default:
		p(" (none blocking)\n")
	}
	for _, f := range r.Findings {
		p("  %-8s  %-16s  %s\n", f.Severity, f.Category, f.Message)
	}

	if f := r.Filter; f != nil {
		p("\nFilter: %s selects ", f.describe())
		if r.Sample.Complete {
			p("%s of %s keys (counted)\n", num(r.EstimatedKeys), num(f.Keys))
		} else {
			p("about %s of %s keys (%s of %s keys scanned matched)\n", num(r.EstimatedKeys), num(f.Keys), num(f.Matched), num(f.Scanned))
		}
	}
	s := r.Sample
	p("\nSample: %s of %s keys", num(s.Sampled), num(r.EstimatedKeys))
	switch {
	case s.Complete:
		p(" (every key: the figures are exact)\n")
	case s.StoppedBy != "":
		p(" (stopped by the %d ms time budget)\n", s.TimeBudgetMs)
	default:
		p(" (%.1f %%; figures extrapolated per shard)\n", 100*float64(s.Sampled)/float64(max(r.EstimatedKeys, 1)))
	}
	if len(r.Types) > 0 {
		table(func(tw *tabwriter.Writer) {
			fmt.Fprintln(tw, "  TYPE\tSAMPLED\tESTIMATED\t")
			for _, t := range r.Types {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t\n", t.Type, num(t.Sampled), num(t.Estimated))
			}
		})
	}
	m := r.Memory
	if m.Available {
		p("\nMemory: about %s", humanBytes(m.EstimatedBytes))
		if m.Confidence != "exact" {
			p(" (95 %%: %s to %s)", humanBytes(m.LowBytes), humanBytes(m.HighBytes))
		}
		p(", confidence %s\n  %s\n", m.Confidence, m.Note)
		if m.ServerBytes > 0 {
			p("  The source itself accounts %s to its keys (MEMORY STATS, every database).\n", humanBytes(m.ServerBytes))
		}
	} else {
		p("\nMemory: no estimate (%s)\n", m.Note)
	}

	p("\nTTLs (estimated keys)\n")
	table(func(tw *tabwriter.Writer) {
		e := r.TTL.Estimated
		fmt.Fprintln(tw, "  NONE\t< 1 H\t< 24 H\t< 7 D\t≥ 7 D\t")
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t\n", num(e.None), num(e.Under1h), num(e.Under24h), num(e.Under7d), num(e.Over7d))
	})

	p("\nShards\n")
	table(func(tw *tabwriter.Writer) {
		if r.Filter != nil {
			fmt.Fprintln(tw, "  MASTER\tDB\tKEYS\tMATCHING\tSAMPLED\tMEMORY\tTYPES\t")
		} else {
			fmt.Fprintln(tw, "  MASTER\tDB\tKEYS\tSAMPLED\tMEMORY\tTYPES\t")
		}
		for _, sh := range r.Shards {
			matching := ""
			if r.Filter != nil {
				matching = num(sh.EstimatedKeys) + "\t"
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s%s\t%s\t%s\t\n", sh.Node, sh.DB, num(sh.Keys), matching, num(sh.Sampled), humanBytes(sh.EstimatedBytes), typeMix(sh.Types))
		}
	})
	for _, side := range []struct {
		name string
		s    Side
	}{{"source", r.Source}, {"target", r.Target}} {
		if !side.s.Cluster {
			continue
		}
		p("\n%s masters\n", strings.ToUpper(side.name[:1])+side.name[1:])
		table(func(tw *tabwriter.Writer) {
			fmt.Fprintln(tw, "  MASTER\tSLOTS\tREPLICAS\tKEYS\tUSED MEMORY\tMAXMEMORY\t")
			for _, mm := range side.s.Masters {
				fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\t%s\t%s\t\n", mm.Addr, mm.SlotCount, mm.Replicas, num(mm.Keys), humanBytes(mm.UsedMemory), maxMemory(mm.MaxMemory))
			}
		})
	}

	if len(r.LargestKeys.ByMemory) > 0 {
		p("\nLargest keys by memory\n")
		keyTable(bw, r.LargestKeys.ByMemory)
	}
	if len(r.LargestKeys.ByElements) > 0 {
		p("\nLargest keys by elements\n")
		keyTable(bw, r.LargestKeys.ByElements)
	}
	writeSweep(bw, r.LargestKeys.Sweep)

	h := r.HashFieldTTL
	p("\nHash field TTLs: ")
	if h.Checked {
		p("%d of %d sampled hashes have field TTLs (%d fields)", h.HashesWithTTL, h.HashesSampled, h.FieldsWithTTL)
		if h.ServerHashes >= 0 {
			p("; the source counts %d", h.ServerHashes)
		}
		p("; target support: %v\n", yesNo(h.TargetSupported))
	} else {
		p("not checked: %s\n", h.Note)
	}

	c := r.Commands
	p("\nCommands")
	if len(c.Calls) > 0 {
		p("\n  most called: %s", counts(c.Calls))
	}
	for _, l := range c.Logs {
		p("\n  %s %s (%d entries): %s", c.Log, l.Type, l.Entries, counts(l.Top))
	}
	if c.Note != "" {
		p("\n  (%s)", c.Note)
	}
	p("\n")

	f := r.FastPath
	p("\nDUMP/RESTORE fast path: ")
	if f.Available {
		p("available (source RDB %d)\n", f.SourceRDBVersion)
	} else {
		p("unavailable (source RDB %d, target accepts up to %d): type commands are used\n", f.SourceRDBVersion, f.TargetRDBVersion)
	}
	o := r.Overlap
	p("Target: %s keys in the databases written to", num(o.TargetKeys))
	if o.Checked > 0 {
		p("; %d of %d sampled keys exist there (about %s in all)", o.Existing, o.Checked, num(o.Estimated))
	}
	p("\n")
	for _, side := range []struct {
		name string
		p    *ACLPreflight
	}{{"source", r.Source.Preflight}, {"target", r.Target.Preflight}} {
		writePreflight(bw, side.name, side.p)
	}
	for _, n := range r.Notes {
		p("note: %s\n", n)
	}
	return bw.Flush()
}

// writePreflight says what the ACL pre-flight found for one side.
func writePreflight(w io.Writer, side string, p *ACLPreflight) {
	switch {
	case p == nil:
		return
	case !p.Checked:
		fmt.Fprintf(w, "ACL pre-flight (%s): not checked: %s\n", side, p.Note)
		return
	case len(p.Denied) == 0:
		fmt.Fprintf(w, "ACL pre-flight (%s user %s): the %d commands of the copy checked are allowed\n", side, p.User, p.Commands)
		return
	}
	fmt.Fprintf(w, "ACL pre-flight (%s user %s): %d of %d commands of the copy checked are denied\n", side, p.User, len(p.Denied), p.Commands)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  COMMAND\tKEY\tNEEDED\tREASON\t")
	for i, d := range p.Denied {
		if i == maxDeniedRows && len(p.Denied) > maxDeniedRows+1 {
			fmt.Fprintf(tw, "  … and %d more (--json lists them all)\t\t\t\t\n", len(p.Denied)-i)
			break
		}
		key := "-"
		if d.Key != "" {
			key = DisplayKey(d.Key)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t\n", d.Command, key, d.Need, d.Reason)
	}
	tw.Flush()
}

// maxDeniedRows bounds the denied commands the terminal lists per side
// (the findings name every command).
const maxDeniedRows = 12

func describeSide(s Side) string {
	var b strings.Builder
	if s.Engine == "" {
		b.WriteString("engine unknown")
	} else {
		fmt.Fprintf(&b, "%s %s", s.Engine, s.Version)
	}
	if s.Cluster {
		fmt.Fprintf(&b, " cluster (%d masters)", len(s.Masters))
	} else {
		b.WriteString(" standalone")
	}
	fmt.Fprintf(&b, ", %s keys", num(s.Keys))
	if len(s.Databases) > 1 {
		fmt.Fprintf(&b, " in %d databases", len(s.Databases))
	}
	if s.UsedMemory > 0 {
		fmt.Fprintf(&b, ", %s used", humanBytes(s.UsedMemory))
	}
	fmt.Fprintf(&b, ", maxmemory %s", maxMemory(s.MaxMemory))
	if s.MaxMemoryPolicy != "" {
		fmt.Fprintf(&b, " (%s)", s.MaxMemoryPolicy)
	}
	return b.String()
}

func maxMemory(n int64) string {
	if n <= 0 {
		return "none"
	}
	return humanBytes(n)
}

func keyTable(w io.Writer, keys []KeyInfo) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  KEY\tTYPE\tMEMORY\tELEMENTS\tMASTER\tDB\tFOUND BY\t")
	for _, k := range keys {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d\t%s\t\n", DisplayKey(k.Key), k.Type, humanBytes(k.Bytes), num(k.Elements), k.Node, k.DB, k.FoundBy)
	}
	tw.Flush()
}

// writeSweep says how far the big-key sweep got, so that a reader knows
// whether the largest keys are exhaustive.
func writeSweep(w io.Writer, sw *KeySweep) {
	if sw == nil {
		fmt.Fprintf(w, "Big-key sweep: off (the largest keys are the sample's)\n")
		return
	}
	types := strings.Join(sw.Types, ", ")
	switch {
	case len(sw.Types) == 0:
		fmt.Fprintf(w, "Big-key sweep: nothing to sweep (strings only; their largest are the sample's)\n")
		return
	case sw.Complete:
		fmt.Fprintf(w, "Big-key sweep: complete (%s on every master): the largest keys by elements are exhaustive\n", types)
		return
	case sw.StoppedBy != "":
		fmt.Fprintf(w, "Big-key sweep: INCOMPLETE, stopped by the time budget (%s): keys beyond it may be larger\n", types)
	default:
		fmt.Fprintf(w, "Big-key sweep: INCOMPLETE (%s): %s\n", types, sw.Note)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  MASTER\tDB\tSWEPT\tCOMPOUND KEYS FOUND\t")
	for _, sh := range sw.Shards {
		state := "complete"
		switch {
		case !sh.Swept:
			state = "skipped"
		case !sh.Complete:
			state = fmt.Sprintf("about %.0f %%", 100*sh.Fraction)
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t\n", sh.Node, sh.DB, state, num(sh.Found))
	}
	tw.Flush()
}

// DisplayKey shows a key name on a terminal: as is when it is printable,
// quoted (Go syntax) otherwise, and cut after 60 characters.
func DisplayKey(k string) string {
	plain := k != ""
	for _, r := range k {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) || unicode.IsSpace(r) {
			plain = false
			break
		}
	}
	if !plain {
		k = strconv.Quote(k)
	}
	if r := []rune(k); len(r) > 60 {
		k = string(r[:57]) + "..."
	}
	return k
}

func typeMix(types map[string]int64) string {
	names := make([]string, 0, len(types))
	for t := range types {
		names = append(names, t)
	}
	sort.Slice(names, func(i, j int) bool {
		if types[names[i]] != types[names[j]] {
			return types[names[i]] > types[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, t := range names {
		parts[i] = fmt.Sprintf("%s %d", t, types[t])
	}
	return strings.Join(parts, ", ")
}

func counts(c []CommandCount) string {
	if len(c) == 0 {
		return "-"
	}
	parts := make([]string, len(c))
	for i, x := range c {
		parts[i] = fmt.Sprintf("%s %s", x.Command, num(x.Count))
	}
	return strings.Join(parts, ", ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// num writes n with thousands separators: 1,234,567.
func num(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
