// Package shake runs redis-shake (v4) for the redis_shake and
// redis_shake_sync modes: it writes redis-shake's TOML configuration from
// typed options, finds the binary, supervises the process, turns its log
// into progress, stages and classified failures, and sanitizes everything
// redis-shake prints before it leaves the process.
//
// kvmigrate does not reimplement redis-shake. The log formats handled here
// are the ones of redis-shake v4.2.0 captured in testdata/fixtures (console
// output with and without colours, and the JSON log file).
package shake

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/BurntSushi/toml"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
)

// Mode is the redis-shake reader a job uses. The values are the job modes
// of internal/job (job.ModeRedisShake, job.ModeRedisShakeSync).
type Mode string

const (
	// ModeScan runs scan_reader: SCAN + DUMP/RESTORE, one pass, and exits
	// when the scan is done.
	ModeScan Mode = "redis_shake"
	// ModeSync runs sync_reader: PSYNC full sync (RDB), then replication
	// (AOF) until it is stopped for the cutover.
	ModeSync Mode = "redis_shake_sync"
)

// Valid reports whether m is ModeScan or ModeSync.
func (m Mode) Valid() bool { return m == ModeScan || m == ModeSync }

// Existing says what redis-shake does when a key it restores already exists
// on the target ([advanced] rdb_restore_command_behavior).
type Existing string

const (
	// ExistingFail stops redis-shake at the first key that exists
	// ("panic", redis-shake's default).
	ExistingFail Existing = "panic"
	// ExistingReplace overwrites the key ("rewrite").
	ExistingReplace Existing = "rewrite"
	// ExistingSkip keeps the target's key ("skip").
	ExistingSkip Existing = "skip"
)

// Defaults applied by Config.TOML to zero fields.
const (
	DefaultLogInterval        = 5    // seconds between status lines
	DefaultPipelineCountLimit = 1024 // redis-shake's own default
	// LogFile is the JSON log redis-shake writes in Config.Dir.
	LogFile = "shake.log"
)

// ErrInvalidConfig is wrapped by every error Config.TOML returns.
var ErrInvalidConfig = errors.New("invalid redis-shake configuration")

// Config holds the options kvmigrate sets in redis-shake's configuration.
// The zero value of an optional field means redis-shake's default.
type Config struct {
	Mode Mode
	// Source and Target, with their credentials. Cluster must be known
	// (ClusterOn or ClusterOff): resolve ClusterAuto from the topology first.
	// redis-shake writes every key to the database number it comes from, so
	// Source.DB and Target.DB must be equal; a DB other than 0 restricts the
	// copy to that database (allow_db).
	//
	// TLS: redis-shake v4 connects with TLS without verifying the server's
	// certificate and has no CA, client certificate or server name
	// settings, so endpoints that set tls_ca, tls_cert, tls_key or
	// tls_server_name are refused rather than silently weakened.
	Source, Target endpoint.Endpoint

	// Dir is redis-shake's working directory ([advanced] dir), an absolute
	// path: its log file, and in sync mode the RDB and AOF it receives
	// (about the size of the source's dataset).
	Dir string

	// PreferReplica makes sync_reader read from a replica of each source
	// master (prefer_replica). Sync mode only.
	PreferReplica bool
	// Filter restricts which keys and databases are copied.
	Filter Filter
	// OnExisting: what to do with keys that exist on the target
	// (default ExistingFail).
	OnExisting Existing
	// TargetMaxQPS caps the commands per second written to the target
	// ([advanced] target_redis_max_qps, 0: no cap). Only redis-shake
	// releases that include tair-opensource/RedisShake#980 (after v4.2.0)
	// know this key; older ones ignore it.
	TargetMaxQPS int
	// RestoreAsCommands makes redis-shake rewrite every key as plain
	// commands instead of RESTORE (target_redis_proto_max_bulk_len = 0):
	// slower, but it works when the target refuses the source's RDB version
	// (ERR DUMP payload version or checksum are wrong), e.g. Valkey → Redis
	// 7.0 in scan mode. It logs one warning per key.
	RestoreAsCommands bool
	// ScanCount is the COUNT of each SCAN (scan_reader count; 0: default).
	ScanCount int
	// PipelineCountLimit bounds the commands in flight to the target
	// (default DefaultPipelineCountLimit); lower it for a slow target.
	PipelineCountLimit int
	// LogInterval is the number of seconds between status lines
	// (default DefaultLogInterval).
	LogInterval int
}

// Filter mirrors redis-shake's [filter] key and database rules. Empty lists
// allow everything. Regular expressions use Go's syntax (redis-shake is
// written in Go) and are checked here.
type Filter struct {
	AllowKeyPrefix []string
	AllowKeySuffix []string
	AllowKeyRegex  []string
	BlockKeyPrefix []string
	BlockKeySuffix []string
	BlockKeyRegex  []string
	AllowDB        []int
	BlockDB        []int
}

// FieldError is one problem with one field of a Config. It never contains
// the field's value (which may be a password).
type FieldError struct {
	Field   string // e.g. "source.password", "filter.allow_key_prefix[2]"
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Unwrap makes errors.Is(err, ErrInvalidConfig) true.
func (e *FieldError) Unwrap() error { return ErrInvalidConfig }

// The TOML document. Keys and sections are those of redis-shake v4's
// shake.toml (see the *.shake.toml.txt fixtures).
type tomlFile struct {
	ScanReader  *scanReader  `toml:"scan_reader,omitempty"`
	SyncReader  *syncReader  `toml:"sync_reader,omitempty"`
	RedisWriter redisWriter  `toml:"redis_writer"`
	Filter      *tomlFilter  `toml:"filter,omitempty"`
	Advanced    tomlAdvanced `toml:"advanced"`
}

type scanReader struct {
	Cluster  bool   `toml:"cluster"`
	Address  string `toml:"address"`
	Username string `toml:"username,omitempty"`
	Password string `toml:"password,omitempty"`
	TLS      bool   `toml:"tls"`
	Count    int    `toml:"count,omitzero"`
}

type syncReader struct {
	Cluster       bool   `toml:"cluster"`
	Address       string `toml:"address"`
	Username      string `toml:"username,omitempty"`
	Password      string `toml:"password,omitempty"`
	TLS           bool   `toml:"tls"`
	SyncRDB       bool   `toml:"sync_rdb"`
	SyncAOF       bool   `toml:"sync_aof"`
	PreferReplica bool   `toml:"prefer_replica"`
	TryDiskless   bool   `toml:"try_diskless"`
}

type redisWriter struct {
	Cluster  bool   `toml:"cluster"`
	Address  string `toml:"address"`
	Username string `toml:"username,omitempty"`
	Password string `toml:"password,omitempty"`
	TLS      bool   `toml:"tls"`
}

type tomlFilter struct {
	AllowKeyPrefix []string `toml:"allow_key_prefix,omitempty"`
	AllowKeySuffix []string `toml:"allow_key_suffix,omitempty"`
	AllowKeyRegex  []string `toml:"allow_key_regex,omitempty"`
	BlockKeyPrefix []string `toml:"block_key_prefix,omitempty"`
	BlockKeySuffix []string `toml:"block_key_suffix,omitempty"`
	BlockKeyRegex  []string `toml:"block_key_regex,omitempty"`
	AllowDB        []int    `toml:"allow_db,omitempty"`
	BlockDB        []int    `toml:"block_db,omitempty"`
}

type tomlAdvanced struct {
	Dir         string `toml:"dir"`
	LogFile     string `toml:"log_file"`
	LogLevel    string `toml:"log_level"`
	LogInterval int    `toml:"log_interval"`
	// Both ports stay 0: status_port listens on all interfaces.
	StatusPort                 int    `toml:"status_port"`
	PprofPort                  int    `toml:"pprof_port"`
	RDBRestoreCommandBehavior  string `toml:"rdb_restore_command_behavior"`
	PipelineCountLimit         int    `toml:"pipeline_count_limit"`
	TargetRedisProtoMaxBulkLen *int64 `toml:"target_redis_proto_max_bulk_len,omitempty"`
	TargetRedisMaxQPS          int    `toml:"target_redis_max_qps,omitzero"`
}

// TOML returns redis-shake's configuration file for c. It reports every
// problem at once, each a *FieldError wrapping ErrInvalidConfig; values
// containing control characters (\x00–\x08, \x0b, \x0c, \x0e–\x1f, \x7f)
// are refused. The file contains the passwords: keep it away from disk and
// logs (Start hands it to redis-shake through a pipe).
//
// redis-shake substitutes ${NAME} in its configuration file with the
// environment variable NAME before parsing it; TOML writes every '$' in a
// value as \u0024 so that a password or key prefix cannot pull in the
// environment.
func (c Config) TOML() ([]byte, error) {
	doc, errs := c.document()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	enc.Indent = "" // as redis-shake's own shake.toml
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode redis-shake configuration: %w", err)
	}
	// Every '$' of the document is inside a basic (double-quoted) string:
	// keys are fixed and the other values are numbers and booleans.
	out := bytes.ReplaceAll(buf.Bytes(), []byte("$"), []byte(`\u0024`))

	// Read it back: what redis-shake will parse must be what was meant.
	var back tomlFile
	if _, err := toml.Decode(string(out), &back); err != nil {
		return nil, fmt.Errorf("redis-shake configuration does not parse back: %w", err)
	}
	if !reflect.DeepEqual(back, doc) {
		return nil, errors.New("redis-shake configuration does not read back as written")
	}
	return out, nil
}

func (c Config) document() (tomlFile, []error) {
	var v validator
	doc := tomlFile{}
	if !c.Mode.Valid() {
		v.add("mode", fmt.Sprintf("%q is not a redis-shake mode: use %q or %q", c.Mode, ModeScan, ModeSync))
	}

	srcCluster := v.cluster("source", c.Source)
	dstCluster := v.cluster("target", c.Target)
	v.tls("source", c.Source)
	v.tls("target", c.Target)
	srcAddr := v.address("source", c.Source)
	dstAddr := v.address("target", c.Target)
	v.text("source.username", c.Source.Username)
	v.text("source.password", c.Source.Password())
	v.text("target.username", c.Target.Username)
	v.text("target.password", c.Target.Password())

	switch c.Mode {
	case ModeScan:
		if c.PreferReplica {
			v.add("prefer_replica", "only sync mode (redis_shake_sync) can read from a replica")
		}
		if c.ScanCount < 0 {
			v.add("scan_reader.count", "must not be negative")
		}
		doc.ScanReader = &scanReader{
			Cluster: srcCluster, Address: srcAddr,
			Username: c.Source.Username, Password: c.Source.Password(),
			TLS: c.Source.TLS.Enabled, Count: c.ScanCount,
		}
	case ModeSync:
		if c.ScanCount != 0 {
			v.add("scan_reader.count", "applies to scan mode (redis_shake) only")
		}
		doc.SyncReader = &syncReader{
			Cluster: srcCluster, Address: srcAddr,
			Username: c.Source.Username, Password: c.Source.Password(),
			TLS: c.Source.TLS.Enabled, SyncRDB: true, SyncAOF: true,
			PreferReplica: c.PreferReplica,
		}
	}
	doc.RedisWriter = redisWriter{
		Cluster: dstCluster, Address: dstAddr,
		Username: c.Target.Username, Password: c.Target.Password(),
		TLS: c.Target.TLS.Enabled,
	}

	f := v.filter(c.Filter)
	switch {
	case c.Source.DB != c.Target.DB:
		v.add("target.db", fmt.Sprintf("redis-shake writes each key to the database number it comes from: source db %d cannot go to target db %d (use command mode)", c.Source.DB, c.Target.DB))
	case c.Source.OneDB() && len(f.AllowDB) == 0:
		f.AllowDB = []int{c.Source.DB}
	case c.Source.OneDB() && !(len(f.AllowDB) == 1 && f.AllowDB[0] == c.Source.DB):
		v.add("filter.allow_db", fmt.Sprintf("the source URL names db %d; allow_db must be empty or [%d]", c.Source.DB, c.Source.DB))
	}
	if !reflect.DeepEqual(f, tomlFilter{}) {
		doc.Filter = &f
	}

	switch {
	case c.Dir == "":
		v.add("dir", "is required: redis-shake's working directory (its log, and the RDB and AOF in sync mode)")
	case !filepath.IsAbs(c.Dir):
		v.add("dir", "must be an absolute path")
	}
	v.text("dir", c.Dir)

	behavior := c.OnExisting
	switch behavior {
	case "":
		behavior = ExistingFail
	case ExistingFail, ExistingReplace, ExistingSkip:
	default:
		v.add("rdb_restore_command_behavior", fmt.Sprintf("%q: use %q, %q or %q", behavior, ExistingFail, ExistingReplace, ExistingSkip))
	}
	interval := orDefault(&v, "log_interval", c.LogInterval, DefaultLogInterval)
	pipeline := orDefault(&v, "pipeline_count_limit", c.PipelineCountLimit, DefaultPipelineCountLimit)
	if c.TargetMaxQPS < 0 {
		v.add("target_redis_max_qps", "must not be negative (0: no cap)")
	}
	doc.Advanced = tomlAdvanced{
		Dir: c.Dir, LogFile: LogFile, LogLevel: "info", LogInterval: interval,
		RDBRestoreCommandBehavior: string(behavior),
		PipelineCountLimit:        pipeline,
		TargetRedisMaxQPS:         c.TargetMaxQPS,
	}
	if c.RestoreAsCommands {
		zero := int64(0)
		doc.Advanced.TargetRedisProtoMaxBulkLen = &zero
	}
	return doc, v.errs
}

func orDefault(v *validator, field string, n, def int) int {
	switch {
	case n < 0:
		v.add(field, "must not be negative")
	case n == 0:
		return def
	}
	return n
}

type validator struct{ errs []error }

func (v *validator) add(field, problem string) {
	v.errs = append(v.errs, &FieldError{Field: field, Problem: problem})
}

// text refuses control characters and invalid UTF-8 in a value that goes
// into the TOML file. The message names the position, never the value.
func (v *validator) text(field, s string) {
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			v.add(field, fmt.Sprintf("is not valid UTF-8 (byte %d)", i))
			return
		case isTOMLControl(r):
			v.add(field, fmt.Sprintf("contains a control character (%U at byte %d); remove it", r, i))
			return
		}
	}
}

// isTOMLControl reports the control characters refused in values:
// \x00–\x08, \x0b, \x0c, \x0e–\x1f and \x7f (tab, LF and CR are allowed).
func isTOMLControl(r rune) bool {
	return r <= 0x08 || r == 0x0b || r == 0x0c || (r >= 0x0e && r <= 0x1f) || r == 0x7f
}

func (v *validator) cluster(side string, e endpoint.Endpoint) bool {
	switch e.Cluster {
	case endpoint.ClusterOn:
		return true
	case endpoint.ClusterOff:
		return false
	}
	v.add(side+".cluster", "is not known (auto): resolve it from the topology, or set cluster=true|false in the URL")
	return false
}

func (v *validator) tls(side string, e endpoint.Endpoint) {
	t := e.TLS
	var opts []string
	for _, o := range []struct {
		name string
		set  bool
	}{{"tls_ca", t.CAFile != ""}, {"tls_cert", t.CertFile != ""}, {"tls_key", t.KeyFile != ""}, {"tls_server_name", t.ServerName != ""}} {
		if o.set {
			opts = append(opts, o.name)
		}
	}
	if len(opts) > 0 {
		v.add(side+".tls", fmt.Sprintf("redis-shake cannot use %s: it connects with TLS without verifying the server certificate; remove the option to accept that, or use command mode", strings.Join(opts, ", ")))
	}
}

func (v *validator) address(side string, e endpoint.Endpoint) string {
	switch {
	case e.Host == "":
		v.add(side+".address", "the host is empty")
	case e.Port < 1 || e.Port > 65535:
		v.add(side+".address", fmt.Sprintf("port %d is out of range", e.Port))
	}
	v.text(side+".address", e.Host)
	return e.Addr()
}

func (v *validator) filter(f Filter) tomlFilter {
	lists := []struct {
		name string
		vals []string
		re   bool
	}{
		{"allow_key_prefix", f.AllowKeyPrefix, false},
		{"allow_key_suffix", f.AllowKeySuffix, false},
		{"allow_key_regex", f.AllowKeyRegex, true},
		{"block_key_prefix", f.BlockKeyPrefix, false},
		{"block_key_suffix", f.BlockKeySuffix, false},
		{"block_key_regex", f.BlockKeyRegex, true},
	}
	for _, l := range lists {
		for i, s := range l.vals {
			field := "filter." + l.name + "[" + strconv.Itoa(i) + "]"
			if s == "" {
				v.add(field, "is empty")
			}
			v.text(field, s)
			if l.re {
				if _, err := regexp.Compile(s); err != nil {
					v.add(field, "is not a valid regular expression (Go syntax)")
				}
			}
		}
	}
	for _, l := range []struct {
		name string
		dbs  []int
	}{{"allow_db", f.AllowDB}, {"block_db", f.BlockDB}} {
		for i, db := range l.dbs {
			if db < 0 {
				v.add("filter."+l.name+"["+strconv.Itoa(i)+"]", "must not be negative")
			}
		}
	}
	return tomlFilter{
		AllowKeyPrefix: nilIfEmpty(f.AllowKeyPrefix), AllowKeySuffix: nilIfEmpty(f.AllowKeySuffix),
		AllowKeyRegex: nilIfEmpty(f.AllowKeyRegex), BlockKeyPrefix: nilIfEmpty(f.BlockKeyPrefix),
		BlockKeySuffix: nilIfEmpty(f.BlockKeySuffix), BlockKeyRegex: nilIfEmpty(f.BlockKeyRegex),
		AllowDB: nilIfEmpty(f.AllowDB), BlockDB: nilIfEmpty(f.BlockDB),
	}
}

// nilIfEmpty makes an empty list nil, as it reads back from TOML (omitted).
func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}
