package shake

import (
	"os"
	"strings"
	"testing"
)

// BenchmarkSanitize: redis-shake can print one warning per key.
func BenchmarkSanitize(b *testing.B) {
	line := "key=[x:30450] dump len=[250] too large, split it. This is not a good practice in Redis."
	data, err := os.ReadFile("testdata/fixtures/scan-full.stdout.log")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("warning line", func(b *testing.B) {
		s := NewSanitizer("src-Secret-1", "dst-Secret-2")
		for b.Loop() {
			s.Sanitize(line)
		}
	})
	b.Run("4KB log", func(b *testing.B) {
		in := string(data[:4096])
		for b.Loop() {
			Sanitize(in)
		}
	})
	b.Run("2KB one token", func(b *testing.B) {
		in := strings.Repeat("A", 2048)
		for b.Loop() {
			Sanitize(in)
		}
	})
}

func BenchmarkParseLine(b *testing.B) {
	line := "\x1b[90m2026-11-26 14:25:26\x1b[0m \x1b[32mINF\x1b[0m read_count=[151960], read_ops=[52668.10], write_count=[151959], write_ops=[52668.10], syncing rdb, size=[3.2 MiB/30 MiB]"
	p := NewParser(ParserOptions{Mode: ModeSync})
	for b.Loop() {
		p.Line(line)
	}
}

// BenchmarkParseWarningFlood: the per-line cost of a flood of per-key
// warnings (the valkey-to-redis-scan-forcerewrite capture logged 200,002).
func BenchmarkParseWarningFlood(b *testing.B) {
	line := "\x1b[90m2026-11-26 14:55:20\x1b[0m \x1b[31mWRN\x1b[0m key=[x:30450] dump len=[250] too large, split it. This is not a good practice in Redis."
	p := NewParser(ParserOptions{Mode: ModeScan, Sanitizer: NewSanitizer("src-Secret-1")})
	for b.Loop() {
		p.Line(line)
	}
}
