package analysis

import (
	"context"
	"sort"
	"strconv"
	"strings"

	"github.com/valkey-io/valkey-go"
)

const (
	topCalls = 15 // commands listed from INFO commandstats
	topLog   = 10 // commands listed per log
)

// commandLogTypes are the logs of COMMANDLOG (Valkey 8.1+).
var commandLogTypes = []string{"slow", "large-request", "large-reply"}

// containers are the commands whose first argument is a subcommand.
var containers = map[string]bool{
	"acl": true, "client": true, "cluster": true, "command": true, "commandlog": true, "config": true,
	"function": true, "latency": true, "memory": true, "module": true, "object": true, "pubsub": true,
	"script": true, "slowlog": true, "xgroup": true, "xinfo": true,
}

// commands reads the command distribution of the source's masters: call
// counts from INFO commandstats, and the entries of COMMANDLOG (when the
// server has it: asked with COMMAND INFO) or SLOWLOG. Only command names
// are kept, never their arguments.
func (a *analyzer) commands(ctx context.Context, s *sideData) (Commands, error) {
	out := Commands{Calls: []CommandCount{}, Logs: []LogSummary{}}
	first, err := s.conn.Node(s.info.Masters[0].Addr, 0)
	if err != nil {
		return out, err
	}
	logTypes := []string{"slow"}
	out.Log = "slowlog"
	if a.hasCommand(ctx, s.name, first, "commandlog") {
		out.Log = "commandlog"
		logTypes = commandLogTypes
	}
	calls := map[string]int64{}
	callsRead := false
	logs := map[string]map[string]int64{}
	entries := map[string]int{}
	logRead := false
	for _, m := range s.info.Masters {
		node, err := s.conn.Node(m.Addr, 0)
		if err != nil {
			return out, err
		}
		if !a.isDenied(s.name, "INFO") {
			stats, err := infoSection(ctx, node, "commandstats")
			if ok, fatal := a.optional(s.name, "INFO", err); fatal != nil {
				return out, fatal
			} else if ok {
				callsRead = true
				for k, n := range parseCommandStats(stats) {
					calls[k] += n
				}
			}
		}
		for _, typ := range logTypes {
			name := "SLOWLOG GET"
			cmd := node.B().SlowlogGet().Count(-1).Build()
			if out.Log == "commandlog" {
				name = "COMMANDLOG GET"
				cmd = node.B().Arbitrary("COMMANDLOG", "GET").Args("-1", typ).Build()
			}
			if a.isDenied(s.name, name) {
				continue
			}
			rows, err := node.Do(ctx, cmd).ToArray()
			ok, fatal := a.optional(s.name, name, err)
			if fatal != nil {
				return out, fatal
			}
			if !ok {
				continue
			}
			logRead = true
			if logs[typ] == nil {
				logs[typ] = map[string]int64{}
			}
			for _, row := range rows {
				if c := logEntryCommand(row); c != "" {
					logs[typ][c]++
					entries[typ]++
				}
			}
		}
	}
	if callsRead {
		out.Calls = top(calls, topCalls)
	}
	if !logRead {
		out.Log = ""
		out.Note = "neither COMMANDLOG nor SLOWLOG could be read"
		return out, nil
	}
	for _, typ := range logTypes {
		if logs[typ] == nil {
			continue
		}
		out.Logs = append(out.Logs, LogSummary{Type: typ, Entries: entries[typ], Top: top(logs[typ], topLog)})
	}
	if out.Log == "slowlog" {
		out.Note = "SLOWLOG holds only commands slower than slowlog-log-slower-than; calls are counted since the servers started"
	} else {
		out.Note = "COMMANDLOG holds only slow commands and large requests and replies; calls are counted since the servers started"
	}
	return out, nil
}

// logEntryCommand returns the command name of a SLOWLOG/COMMANDLOG entry
// [id, time, duration or size, [args...], client, name].
func logEntryCommand(row valkey.ValkeyMessage) string {
	fields, err := row.ToArray()
	if err != nil || len(fields) < 4 {
		return ""
	}
	args, err := fields[3].ToArray()
	if err != nil || len(args) == 0 {
		return ""
	}
	name, err := args[0].ToString()
	if err != nil {
		return ""
	}
	name = strings.ToLower(name)
	if containers[name] && len(args) > 1 {
		if sub, err := args[1].ToString(); err == nil && !strings.HasPrefix(sub, "...") {
			name += "|" + strings.ToLower(sub)
		}
	}
	return name
}

// parseCommandStats reads "cmdstat_get:calls=3,usec=..." lines.
func parseCommandStats(stats map[string]string) map[string]int64 {
	out := map[string]int64{}
	for k, v := range stats {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		for part := range strings.SplitSeq(v, ",") {
			if n, ok := strings.CutPrefix(part, "calls="); ok {
				out[name], _ = strconv.ParseInt(n, 10, 64)
			}
		}
	}
	return out
}

// top returns the n largest counts, ties by name.
func top(counts map[string]int64, n int) []CommandCount {
	out := make([]CommandCount, 0, len(counts))
	for c, k := range counts {
		out = append(out, CommandCount{Command: c, Count: k})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Command < out[j].Command
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}
