package shake

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/BurntSushi/toml"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
)

const fuzzSecret = "S3cretPw"

func clean(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "invalid UTF-8"
	case len(s) > MaxRecordLen:
		return "too long"
	case strings.Contains(s, fuzzSecret):
		return "the known secret"
	}
	for _, r := range s {
		if needsEscape(r) {
			return "a control character"
		}
	}
	return ""
}

func seedFixtures(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "fixtures", "*.log*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data[:min(len(data), 1500)])) // small seeds fuzz faster
	}
}

func FuzzSanitize(f *testing.F) {
	seedFixtures(f)
	for _, s := range []string{
		"", "\x1b[31mred\x1b[0m", "cmd=[RESTORE k 0 \x00\xff], error=[ERR x]", "cmd=[",
		"password = \"" + fuzzSecret + "\"", "redis://u:" + fuzzSecret + "@h", "\u202e\r\x00",
		strings.Repeat("é", MaxRecordLen), "S3cr\x1b[0m3tPw",
	} {
		f.Add(s)
	}
	san := NewSanitizer(fuzzSecret)
	f.Fuzz(func(t *testing.T, s string) {
		// The known secret, and a URL password the sanitizer does not
		// know, planted in whatever the fuzzer made.
		in := s + " " + fuzzSecret + " redis://user:Url0nlyPw@host " + s
		once := san.Sanitize(in)
		if why := clean(once); why != "" {
			t.Fatalf("output has %s: %q", why, once)
		}
		if strings.Contains(once, "Url0nlyPw") {
			t.Fatalf("URL password left in %q", once)
		}
		twice := san.Sanitize(once)
		if why := clean(twice); why != "" {
			t.Fatalf("second pass has %s: %q", why, twice)
		}
		if raw := san.Sanitize(s); clean(raw) != "" {
			t.Fatalf("output of the raw input has %s: %q", clean(raw), raw)
		}
	})
}

func FuzzParser(f *testing.F) {
	seedFixtures(f)
	for _, s := range []string{
		"2026-11-26 14:00:00 INF read_count=[1], read_ops=[NaN], write_count=[-5], write_ops=[+Inf], src-9999999999999999999, syncing rdb, size=[1e400 EiB/-1 B]",
		"2026-11-26 14:00:00 ERR dial failed. address=[" + fuzzSecret + "], err=[x]\n\t\t\tRedisShake/internal/reader/x.go:1",
		"!panic: " + fuzzSecret,
		`{"level":"error","time":"x","message":"auth ` + fuzzSecret + `\n\tRedisShake/internal/writer/w.go"}`,
		"2026-11-26 14:00:00 INF read_count=[1], read_ops=[1], write_count=[1], write_ops=[1], src-1, syncing aof, diff=[0]\n" +
			"2026-11-26 14:00:00 INF read_count=[1], read_ops=[1], write_count=[1], write_ops=[1], src-0, syncing aof, diff=[0]\n" +
			"2026-11-26 14:00:00 INF read_count=[1], read_ops=[1], write_count=[1], write_ops=[1], src-1, syncing aof, diff=[0]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		mode := ModeScan
		if len(data)%2 == 0 {
			mode = ModeSync
		}
		p := NewParser(ParserOptions{Mode: mode, Sanitizer: NewSanitizer(fuzzSecret)})
		var recs []Record
		for _, line := range strings.Split(data, "\n") {
			if rest, ok := strings.CutPrefix(line, "!"); ok {
				p.Stderr(rest)
				continue
			}
			got, _ := p.Line(line)
			recs = append(recs, got...)
		}
		if r := p.Flush(); r != nil {
			recs = append(recs, *r)
		}
		for _, r := range recs {
			if why := clean(r.Message); why != "" {
				t.Fatalf("record has %s: %q", why, r.Message)
			}
		}
		st := p.Status()
		switch st.Stage {
		case StageInitialSync, StageReplicating, StageDone, StageFailed:
		default:
			t.Fatalf("unknown stage %q", st.Stage)
		}
		if st.ReadyForCutover && (mode != ModeSync || st.Stage != StageReplicating) {
			t.Fatalf("ready for cutover in stage %s, mode %s", st.Stage, mode)
		}
		for _, e := range st.LastErrors {
			if why := clean(e); why != "" {
				t.Fatalf("last error has %s: %q", why, e)
			}
		}
		if len(st.LastErrors) > maxLastErrors {
			t.Fatalf("%d last errors", len(st.LastErrors))
		}
		if fl := st.Failure; fl != nil {
			for _, s := range []string{fl.Reason, fl.Message} {
				if why := clean(s); why != "" {
					t.Fatalf("failure has %s: %q", why, s)
				}
			}
			if st.Stage != StageFailed {
				t.Fatalf("a failure in stage %s", st.Stage)
			}
		}
		pr := st.Progress
		for _, v := range []float64{pr.ReadOPS, pr.WriteOPS, pr.ScanPercent} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("non-finite progress %+v", pr)
			}
		}
		if pr.RDBBytesDone < 0 || pr.RDBBytesTotal < 0 || pr.AOFDiff < 0 || pr.Sources < 0 {
			t.Fatalf("negative progress %+v", pr)
		}
	})
}

var knownSections = map[string]bool{"scan_reader": true, "sync_reader": true, "redis_writer": true, "filter": true, "advanced": true}

func FuzzConfigTOML(f *testing.F) {
	f.Add("alice", "pw", "user:", "/data", "h", false)
	f.Add("", "a\"b\\c\nd\re\tf", "${HOME}", "/d/$x", "10.0.0.1", true)
	f.Add("u\x00", "\x7f", "\x1b[31m", "/\x0b", "h\x0c", true)
	f.Add("]\n[advanced]\nlog_level = \"debug\"", "\"\npassword = \"x", "'''", "/d\"\n[x]", "h", false)
	f.Fuzz(func(t *testing.T, user, password, prefix, dir, host string, sync bool) {
		mode := ModeScan
		if sync {
			mode = ModeSync
		}
		// «» mark the password: error messages must never contain it.
		pw := "«" + password + "»"
		src := endpoint.Endpoint{Scheme: "redis", Host: host, Port: 6379, Cluster: endpoint.ClusterOff}.WithCredentials(user, pw)
		dst := endpoint.Endpoint{Scheme: "redis", Host: "h", Port: 6380, Cluster: endpoint.ClusterOn}.WithCredentials("w", pw)
		cfg := Config{Mode: mode, Source: src, Target: dst, Dir: "/" + dir,
			Filter: Filter{AllowKeyPrefix: []string{prefix}}}
		out, err := cfg.TOML()
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error does not wrap ErrInvalidConfig: %v", err)
			}
			if strings.Contains(err.Error(), "«") {
				t.Fatalf("the password is in the error: %v", err)
			}
			for _, s := range []string{user, pw, prefix, dir, host} {
				if strings.IndexFunc(s, isTOMLControl) >= 0 && !strings.Contains(err.Error(), "control character") && utf8.ValidString(s) {
					t.Fatalf("a control character is refused without saying so: %v", err)
				}
			}
			return
		}
		for _, s := range []string{user, pw, prefix, dir, host} {
			if strings.IndexFunc(s, isTOMLControl) >= 0 || !utf8.ValidString(s) {
				t.Fatalf("accepted %q", s)
			}
		}
		text := string(out)
		if strings.Contains(text, "$") {
			t.Fatal("a raw $ reached the file")
		}
		if strings.ContainsFunc(text, func(r rune) bool { return isTOMLControl(r) || r == '\r' }) {
			t.Fatalf("a control character reached the file: %q", text)
		}
		// What redis-shake parses: after its ${NAME} substitution.
		var back tomlFile
		if _, err := toml.Decode(envSubst(text), &back); err != nil {
			t.Fatalf("does not parse: %v\n%s", err, text)
		}
		var sections map[string]any
		if _, err := toml.Decode(text, &sections); err != nil {
			t.Fatal(err)
		}
		for s := range sections {
			if !knownSections[s] {
				t.Fatalf("injected section %q:\n%s", s, text)
			}
		}
		readerPW, readerUser := "", ""
		if sync {
			readerPW, readerUser = back.SyncReader.Password, back.SyncReader.Username
		} else {
			readerPW, readerUser = back.ScanReader.Password, back.ScanReader.Username
		}
		if readerPW != pw || readerUser != user || back.RedisWriter.Password != pw ||
			back.Filter == nil || back.Filter.AllowKeyPrefix[0] != prefix || back.Advanced.Dir != "/"+dir ||
			back.Advanced.LogLevel != "info" || back.Advanced.StatusPort != 0 {
			t.Fatalf("does not read back as written:\n%s", text)
		}
	})
}
