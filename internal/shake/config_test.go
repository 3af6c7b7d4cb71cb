package shake

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
)

func mustEndpoint(t testing.TB, raw string) endpoint.Endpoint {
	t.Helper()
	e, err := endpoint.Parse(raw)
	require.NoError(t, err)
	return e
}

func TestModesAreTheJobModes(t *testing.T) {
	assert.Equal(t, job.ModeRedisShake, string(ModeScan))
	assert.Equal(t, job.ModeRedisShakeSync, string(ModeSync))
}

// TestConfigMatchesFixtures builds, for each real configuration in the
// fixtures, the Config meaning the same, and checks that every key and
// value of the real file is in ours, in the same section.
func TestConfigMatchesFixtures(t *testing.T) {
	const dir = "/srv/shake/data"
	local := func(port int, extra string) string {
		return fmt.Sprintf("redis://%s127.0.0.1:%d?cluster=false", extra, port)
	}
	tests := []struct {
		fixture string
		cfg     Config
	}{
		{"scan-full", Config{Mode: ModeScan, Source: mustEndpoint(t, local(17001, "")), Target: mustEndpoint(t, local(17021, "")), Dir: dir}},
		{"sync-rdb-aof", Config{Mode: ModeSync, Source: mustEndpoint(t, local(17001, "")), Target: mustEndpoint(t, local(17021, "")), Dir: dir}},
		{"sync-rdb-aof-interval1", Config{Mode: ModeSync, Source: mustEndpoint(t, local(17001, "")), Target: mustEndpoint(t, local(17021, "")), Dir: dir, LogInterval: 1}},
		{"valkey-to-redis-scan", Config{Mode: ModeScan, Source: mustEndpoint(t, local(17031, "")), Target: mustEndpoint(t, local(17011, "")), Dir: dir}},
		{"valkey-to-redis-scan-forcerewrite", Config{Mode: ModeScan, Source: mustEndpoint(t, local(17031, "")), Target: mustEndpoint(t, local(17011, "")), Dir: dir, ScanCount: 100, RestoreAsCommands: true}},
		{"valkey-to-redis-sync", Config{Mode: ModeSync, Source: mustEndpoint(t, local(17031, "")), Target: mustEndpoint(t, local(17011, "")), Dir: dir}},
		{"bad-password", Config{Mode: ModeScan, Source: mustEndpoint(t, local(17002, "")), Target: mustEndpoint(t, local(17011, ":wrong-password@")), Dir: dir}},
		{"unreachable-target", Config{Mode: ModeScan, Source: mustEndpoint(t, local(17002, "")), Target: mustEndpoint(t, local(17999, "")), Dir: dir}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture+" has the keys of the real configuration", func(t *testing.T) {
			var want map[string]map[string]any
			_, err := toml.DecodeFile(filepath.Join("testdata", "fixtures", tt.fixture+".shake.toml.txt"), &want)
			require.NoError(t, err)
			out, err := tt.cfg.TOML()
			require.NoError(t, err)
			var got map[string]map[string]any
			_, err = toml.Decode(string(out), &got)
			require.NoError(t, err)
			for section, kv := range want {
				for k, v := range kv {
					assert.Equal(t, v, got[section][k], "[%s] %s", section, k)
				}
			}
			assert.Len(t, got, len(want), "the same sections: %v", keys(got))
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestConfigGolden keeps the whole generated files in
// testdata/golden/config; go test -run TestConfigGolden -update rewrites
// them.
func TestConfigGolden(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"scan-standalone", Config{Mode: ModeScan,
			Source: mustEndpoint(t, "redis://10.0.0.1:6379?cluster=false"),
			Target: mustEndpoint(t, "valkey://10.0.0.2:6379?cluster=false"),
			Dir:    "/var/lib/kvmigrate/job1"}},
		{"scan-cluster-acl-tls-filters", Config{Mode: ModeScan,
			Source:     mustEndpoint(t, "rediss://reader:r3ad%24er@src.example.com:6380?cluster=true"),
			Target:     mustEndpoint(t, "valkeys://writer:wr1ter@[2001:db8::1]:6380?cluster=true"),
			Dir:        "/tmp/shake",
			OnExisting: ExistingReplace, TargetMaxQPS: 20000, ScanCount: 500, PipelineCountLimit: 256,
			Filter: Filter{AllowKeyPrefix: []string{"user:", "${HOME}"}, BlockKeyRegex: []string{`^tmp:\d+$`}, BlockDB: []int{5}}}},
		{"sync-replica-db3", Config{Mode: ModeSync,
			Source:        mustEndpoint(t, "redis://:pw@10.0.0.1:6379/3?cluster=false"),
			Target:        mustEndpoint(t, "redis://10.0.0.2:6379/3?cluster=false"),
			Dir:           "/data",
			PreferReplica: true, OnExisting: ExistingSkip, RestoreAsCommands: true, LogInterval: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.cfg.TOML()
			require.NoError(t, err)
			golden(t, filepath.Join("testdata", "golden", "config", tt.name+".toml"), out)
		})
	}
}

func TestConfigSyncReader(t *testing.T) {
	out, err := Config{Mode: ModeSync,
		Source: mustEndpoint(t, "redis://h:1?cluster=true"), Target: mustEndpoint(t, "redis://h:2?cluster=false"),
		Dir: "/d"}.TOML()
	require.NoError(t, err)
	var got struct {
		SyncReader map[string]any `toml:"sync_reader"`
		ScanReader map[string]any `toml:"scan_reader"`
		Writer     map[string]any `toml:"redis_writer"`
		Advanced   map[string]any `toml:"advanced"`
	}
	_, err = toml.Decode(string(out), &got)
	require.NoError(t, err)
	assert.Nil(t, got.ScanReader)
	assert.Equal(t, true, got.SyncReader["sync_rdb"])
	assert.Equal(t, true, got.SyncReader["sync_aof"])
	assert.Equal(t, false, got.SyncReader["prefer_replica"], "off unless asked")
	assert.Equal(t, true, got.SyncReader["cluster"])
	assert.Equal(t, false, got.Writer["cluster"])
	assert.Equal(t, int64(0), got.Advanced["status_port"], "status_port would listen on all interfaces")
	assert.Equal(t, "info", got.Advanced["log_level"], "debug would log every command with its values")
	assert.NotContains(t, got.Advanced, "target_redis_proto_max_bulk_len")
	assert.NotContains(t, got.Advanced, "target_redis_max_qps")
}

func TestConfigRefusesControlCharacters(t *testing.T) {
	base := func() Config {
		return Config{Mode: ModeScan,
			Source: mustEndpoint(t, "redis://u:p@h:1?cluster=false"), Target: mustEndpoint(t, "redis://h:2?cluster=false"), Dir: "/d"}
	}
	fields := []struct {
		field string
		set   func(c *Config, v string)
	}{
		{"source.password", func(c *Config, v string) { c.Source = c.Source.WithCredentials("u", "pw"+v+"secret") }},
		{"source.username", func(c *Config, v string) { c.Source = c.Source.WithCredentials("us"+v+"er", "pw") }},
		{"target.password", func(c *Config, v string) { c.Target = c.Target.WithCredentials("", "pw"+v+"secret") }},
		{"target.username", func(c *Config, v string) { c.Target = c.Target.WithCredentials(v, "pw") }},
		{"source.address", func(c *Config, v string) { c.Source.Host = "h" + v }},
		{"dir", func(c *Config, v string) { c.Dir = "/d" + v }},
		{"filter.allow_key_prefix[1]", func(c *Config, v string) { c.Filter.AllowKeyPrefix = []string{"ok", "p" + v} }},
		{"filter.block_key_regex[0]", func(c *Config, v string) { c.Filter.BlockKeyRegex = []string{"r" + v} }},
	}
	controls := []string{"\x00", "\x08", "\x0b", "\x0c", "\x0e", "\x1b", "\x1f", "\x7f"}
	for _, f := range fields {
		for _, c := range controls {
			t.Run(fmt.Sprintf("refuses %q in %s", c, f.field), func(t *testing.T) {
				cfg := base()
				f.set(&cfg, c)
				_, err := cfg.TOML()
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrInvalidConfig)
				var fe *FieldError
				require.ErrorAs(t, err, &fe)
				assert.Equal(t, f.field, fe.Field)
				assert.Contains(t, err.Error(), "control character")
				assert.NotContains(t, err.Error(), "secret", "the value is never in the error")
			})
		}
	}
	t.Run("accepts tab, newline and carriage return in a password", func(t *testing.T) {
		cfg := base()
		cfg.Source = cfg.Source.WithCredentials("u", "a\tb\nc\rd\"e\\f")
		out, err := cfg.TOML()
		require.NoError(t, err)
		var back tomlFile
		_, err = toml.Decode(string(out), &back)
		require.NoError(t, err)
		assert.Equal(t, "a\tb\nc\rd\"e\\f", back.ScanReader.Password)
		assert.Equal(t, 1, strings.Count(string(out), "password"), "the value stayed on its line")
	})
	t.Run("refuses invalid UTF-8", func(t *testing.T) {
		cfg := base()
		cfg.Target = cfg.Target.WithCredentials("", "pw\xffsecret")
		_, err := cfg.TOML()
		var fe *FieldError
		require.ErrorAs(t, err, &fe)
		assert.Equal(t, "target.password", fe.Field)
		assert.Contains(t, err.Error(), "UTF-8")
	})
}

// envSubst is what redis-shake v4 does to its configuration file before
// parsing it (config.envWithFallback): ${NAME} becomes $NAME's value.
var envSubstRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*?)}`)

func envSubst(s string) string {
	return envSubstRE.ReplaceAllString(s, "INJECTED")
}

func TestConfigDefeatsEnvironmentSubstitution(t *testing.T) {
	pw := "${AWS_SECRET_ACCESS_KEY}$x${HOME}"
	cfg := Config{Mode: ModeSync,
		Source: mustEndpoint(t, "redis://h:1?cluster=false").WithCredentials("${USER}", pw),
		Target: mustEndpoint(t, "redis://h:2?cluster=false"), Dir: "/d/${PWD}",
		Filter: Filter{AllowKeyPrefix: []string{"${PATH}:"}}}
	out, err := cfg.TOML()
	require.NoError(t, err)
	assert.NotContains(t, string(out), "$", "every $ is written \\u0024")
	var back tomlFile
	_, err = toml.Decode(envSubst(string(out)), &back)
	require.NoError(t, err)
	assert.Equal(t, pw, back.SyncReader.Password)
	assert.Equal(t, "${USER}", back.SyncReader.Username)
	assert.Equal(t, "/d/${PWD}", back.Advanced.Dir)
	assert.Equal(t, []string{"${PATH}:"}, back.Filter.AllowKeyPrefix)
}

func TestConfigRefusals(t *testing.T) {
	ok := func() Config {
		return Config{Mode: ModeScan, Source: mustEndpoint(t, "redis://h:1?cluster=false"),
			Target: mustEndpoint(t, "redis://h:2?cluster=false"), Dir: "/d"}
	}
	tests := []struct {
		name  string
		edit  func(c *Config)
		field string
	}{
		{"an unknown mode", func(c *Config) { c.Mode = "command" }, "mode"},
		{"a source whose cluster mode is not known", func(c *Config) { c.Source = mustEndpoint(t, "redis://h:1") }, "source.cluster"},
		{"a target whose cluster mode is not known", func(c *Config) { c.Target = mustEndpoint(t, "redis://h:1") }, "target.cluster"},
		{"a CA file redis-shake cannot use", func(c *Config) { c.Target = mustEndpoint(t, "rediss://h:1?cluster=false&tls_ca=/ca.pem") }, "target.tls"},
		{"a TLS server name redis-shake cannot use", func(c *Config) {
			c.Source = mustEndpoint(t, "rediss://h:1?cluster=false&tls_server_name=x")
		}, "source.tls"},
		{"different source and target databases", func(c *Config) { c.Target = mustEndpoint(t, "redis://h:2/4?cluster=false") }, "target.db"},
		{"allow_db that contradicts the source database", func(c *Config) {
			c.Source, c.Target = mustEndpoint(t, "redis://h:1/2?cluster=false"), mustEndpoint(t, "redis://h:2/2?cluster=false")
			c.Filter.AllowDB = []int{3}
		}, "filter.allow_db"},
		{"prefer_replica in scan mode", func(c *Config) { c.PreferReplica = true }, "prefer_replica"},
		{"a relative directory", func(c *Config) { c.Dir = "data" }, "dir"},
		{"no directory", func(c *Config) { c.Dir = "" }, "dir"},
		{"an invalid regular expression", func(c *Config) { c.Filter.AllowKeyRegex = []string{"(unclosed"} }, "filter.allow_key_regex[0]"},
		{"an empty prefix", func(c *Config) { c.Filter.BlockKeyPrefix = []string{""} }, "filter.block_key_prefix[0]"},
		{"an unknown behaviour on existing keys", func(c *Config) { c.OnExisting = "merge" }, "rdb_restore_command_behavior"},
		{"a negative rate", func(c *Config) { c.TargetMaxQPS = -1 }, "target_redis_max_qps"},
		{"a negative log interval", func(c *Config) { c.LogInterval = -1 }, "log_interval"},
		{"a port out of range", func(c *Config) { c.Target.Port = 70000 }, "target.address"},
	}
	for _, tt := range tests {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			cfg := ok()
			tt.edit(&cfg)
			_, err := cfg.TOML()
			assert.ErrorIs(t, err, ErrInvalidConfig)
			var fe *FieldError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, tt.field, fe.Field)
		})
	}
	t.Run("reports every problem at once", func(t *testing.T) {
		cfg := ok()
		cfg.Mode, cfg.Dir, cfg.TargetMaxQPS = "x", "", -5
		_, err := cfg.TOML()
		var joined interface{ Unwrap() []error }
		require.True(t, errors.As(err, &joined))
		var fields []string
		for _, e := range joined.Unwrap() {
			var fe *FieldError
			require.ErrorAs(t, e, &fe)
			fields = append(fields, fe.Field)
		}
		assert.Equal(t, []string{"mode", "dir", "target_redis_max_qps"}, fields)
	})
	t.Run("restricts the copy to the source URL's database", func(t *testing.T) {
		cfg := ok()
		cfg.Source, cfg.Target = mustEndpoint(t, "redis://h:1/2?cluster=false"), mustEndpoint(t, "redis://h:2/2?cluster=false")
		out, err := cfg.TOML()
		require.NoError(t, err)
		var back tomlFile
		_, err = toml.Decode(string(out), &back)
		require.NoError(t, err)
		require.NotNil(t, back.Filter)
		assert.Equal(t, []int{2}, back.Filter.AllowDB)
	})
	t.Run("accepts TLS without verification, as redis-shake does it", func(t *testing.T) {
		cfg := ok()
		cfg.Target = mustEndpoint(t, "rediss://h:1?cluster=false&tls_insecure=true")
		out, err := cfg.TOML()
		require.NoError(t, err)
		assert.Contains(t, string(out), "tls = true")
	})
}
