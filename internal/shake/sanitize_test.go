package shake

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
)

func TestSanitize(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"strips colours",
			"\x1b[90m2026-11-26 14:22:10\x1b[0m \x1b[1m\x1b[31mERR\x1b[0m\x1b[0m boom",
			"2026-11-26 14:22:10 ERR boom"},
		{"strips a terminal title and a hyperlink",
			"a\x1b]0;pwned\x07b\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\c",
			"ablinkc"},
		{"escapes control characters, keeping tab and newline",
			"a\x00b\x0bc\x7fd\te\nf", `a\x00b\x0bc\x7fd` + "\te\nf"},
		{"escapes a carriage return that would overwrite the line",
			"all good\rFAILED", `all good\x0dFAILED`},
		{"escapes bidirectional overrides and line separators",
			"user\u202etxt.exe\u2028x", `user\u202etxt.exe\u2028x`},
		{"escapes C1 controls", "a\u0085b\u009bc", `a\x85b\x9bc`},
		{"replaces invalid UTF-8", "a\xffb", "a\uFFFDb"},
		{"redacts a URL password",
			"dial redis://admin:hunter2@10.0.0.1:6379 failed",
			"dial redis://admin:xxxxx@10.0.0.1:6379 failed"},
		{"redacts a TOML password pair",
			`toml: line 4: password = "hunter2" bad`, `toml: line 4: password = "xxxxx" bad`},
		{"redacts a JSON password",
			`{"password":"hunter2","user":"a"}`, `{"password":"xxxxx","user":"a"}`},
		{"redacts the arguments of a failed RESTORE, keeping the reply",
			"[writer_h_1] receive reply failed. cmd=[RESTORE str:1 0 \x00@@82\x0b\x00sp\uFFFD], error=[ERR DUMP payload version or checksum are wrong]\n\t\t\tstack.go:1",
			"[writer_h_1] receive reply failed. cmd=[RESTORE xxxxx], error=[ERR DUMP payload version or checksum are wrong]\n\t\t\tstack.go:1"},
		{"redacts command arguments holding ] and newlines",
			"cmd=[SET k a], b\nc] d], error=[ERR x]", "cmd=[SET xxxxx], error=[ERR x]"},
		{"redacts a BUSYKEY command up to the stack trace",
			"received BUSYKEY reply. cmd=[RESTORE k 0 v]\n\t\t\twriter.go:1", "received BUSYKEY reply. cmd=[RESTORE xxxxx]\n\t\t\twriter.go:1"},
		// endpoint.Redact then reads the reply as AUTH's password: too much
		// is redacted, never too little (redis-shake's writer, the only
		// one to log commands, never sends AUTH).
		{"redacts an AUTH command, and its reply too", "cmd=[AUTH default hunter2], error=[WRONGPASS]", "cmd=[AUTH xxxxx], xxxxx"},
		{"leaves a command without arguments alone", "cmd=[PING], error=[x]", "cmd=[PING], error=[x]"},
		{"leaves ordinary lines alone",
			"read_count=[1], read_ops=[2.00], write_count=[1], write_ops=[2.00], syncing rdb, size=[3.2 MiB/30 MiB]",
			"read_count=[1], read_ops=[2.00], write_count=[1], write_ops=[2.00], syncing rdb, size=[3.2 MiB/30 MiB]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Sanitize(tt.in)
			assert.Equal(t, tt.want, got)
			assertClean(t, got)
		})
	}
}

func TestSanitizeKnownSecrets(t *testing.T) {
	s := NewSanitizer("hunter22!", "p w\tx", "abc", "xxxx", "")
	tests := []struct{ name, in, want string }{
		{"masks a known password anywhere", "wrong pass hunter22! given", "wrong pass xxxxx given"},
		{"masks it inside a word and twice", "ahunter22!b hunter22!", "axxxxxb xxxxx"},
		{"masks a password with a space and a tab", "got p w\tx here", "got xxxxx here"},
		{"ignores passwords shorter than 4 bytes", "abc def", "abc def"},
		{"ignores a password that the mask itself contains", "xxxxx", "xxxxx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, s.Sanitize(tt.in))
		})
	}
}

func TestSanitizeCutsLongRecords(t *testing.T) {
	t.Run("cuts to MaxRecordLen with a note", func(t *testing.T) {
		got := Sanitize(strings.Repeat("word ", 2000))
		assert.LessOrEqual(t, len(got), MaxRecordLen)
		assert.True(t, strings.HasSuffix(got, "(10000 bytes cut)"), got[len(got)-40:])
	})
	t.Run("drops the token the cut falls in", func(t *testing.T) {
		in := strings.Repeat("a", MaxRecordLen-40) + " tokenABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghij" + strings.Repeat(" z", 50)
		got := Sanitize(in)
		assert.NotContains(t, got, "tokenABC")
		assert.LessOrEqual(t, len(got), MaxRecordLen)
	})
	t.Run("cuts a record of one long token to the note alone", func(t *testing.T) {
		got := Sanitize(strings.Repeat("€", MaxRecordLen))
		assert.True(t, strings.HasPrefix(got, "\n… ("), got)
		assertClean(t, got)
	})
}

// TestSanitizeHostileInputs: whatever surrounds them, credentials never
// come out.
func TestSanitizeHostileInputs(t *testing.T) {
	const secret = "S3cr3tPw"
	san := NewSanitizer(secret)
	hostile := []string{
		"\x1b[31mredis://u:" + secret + "@h\x1b[0m",
		"pass\x1b[0mword = \"" + secret + "\"",
		"redis://u:" + secret + "@h\r\n\x00" + secret,
		strings.Repeat("x", MaxRecordLen-5) + secret,
		strings.Repeat(" ", MaxRecordLen-10) + "redis://u:" + secret + "@host",
		"cmd=[AUTH default " + secret + "]",
		"cmd=[HELLO 3 AUTH default " + secret + "], error=[x]",
		"\u202e" + secret + "\u202c",
		"{\"password\":\"" + secret + "\\\"tail\"}",
		"S3cr\x1b[0m3tPw", // colours inside the secret
		"ok\r" + secret,
		string([]byte{0xff}) + secret + string([]byte{0xfe}),
		"--password=" + secret + " -a " + secret,
		"requirepass " + secret,
	}
	for _, in := range hostile {
		t.Run(strings.ToValidUTF8(in[:min(len(in), 30)], "?"), func(t *testing.T) {
			once := san.Sanitize(in)
			assert.NotContains(t, once, secret)
			assertClean(t, once)
			twice := san.Sanitize(once)
			assert.NotContains(t, twice, secret)
			assertClean(t, twice)
		})
	}
}

// TestSanitizeConfigFile: the configuration kvmigrate writes, printed by
// anything, loses its passwords, with or without knowing them.
func TestSanitizeConfigFile(t *testing.T) {
	src, err := endpoint.Parse("redis://alice:Src-P%40ss%22w0rd@10.0.0.1:6379?cluster=false")
	require.NoError(t, err)
	dst, err := endpoint.Parse("valkeys://bob:dst${HOME}secret@10.0.0.2:6380?cluster=true")
	require.NoError(t, err)
	conf, err := Config{Mode: ModeSync, Source: src, Target: dst, Dir: "/data"}.TOML()
	require.NoError(t, err)
	for _, san := range []*Sanitizer{nil, NewSanitizer(src.Password(), dst.Password())} {
		got := san.Sanitize(string(conf))
		assert.NotContains(t, got, "Src-P@ss")
		assert.NotContains(t, got, "w0rd")
		assert.NotContains(t, got, "secret")
		assert.Contains(t, got, `username = "alice"`, "only secrets go")
	}
}

// assertClean checks the Sanitizer's output contract.
func assertClean(t *testing.T, s string) {
	t.Helper()
	assert.True(t, utf8.ValidString(s), "valid UTF-8")
	assert.LessOrEqual(t, len(s), MaxRecordLen)
	for _, r := range s {
		if needsEscape(r) {
			assert.Failf(t, "control character left", "%U in %q", r, s)
			return
		}
	}
	assert.NotContains(t, s, "\x1b")
}
