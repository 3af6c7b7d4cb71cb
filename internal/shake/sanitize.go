package shake

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
)

// MaxRecordLen bounds the length in bytes of a sanitized record.
const MaxRecordLen = 2048

// redacted replaces secrets and command arguments, as endpoint.Redact does.
const redacted = "xxxxx"

// minSecretLen: known secrets shorter than this are not masked verbatim
// (masking "ab" would mangle ordinary words); endpoint does the same.
const minSecretLen = 4

// Sanitizer makes text printed by redis-shake safe to leave the process
// (job store, API, logs, CloudWatch). Everything from redis-shake's output
// that kvmigrate keeps or forwards goes through it.
//
// In order, it
//   - replaces invalid UTF-8 with U+FFFD and strips ANSI escape sequences;
//   - escapes control characters other than tab and newline, C1 controls,
//     line/paragraph separators and bidirectional overrides (\x00, \u202e);
//   - masks the known secrets verbatim (the endpoints' passwords);
//   - replaces the arguments of logged commands (cmd=[RESTORE key ttl
//     payload]) by "xxxxx", keeping the command name: they hold values;
//   - redacts credentials with endpoint.Redact (URL passwords, password =
//     "…" pairs, AUTH arguments, requirepass, …);
//   - cuts the result to MaxRecordLen bytes, dropping the whole token the
//     cut falls in.
//
// The result is valid UTF-8 of at most MaxRecordLen bytes, without control
// characters other than \t and \n. A nil *Sanitizer masks no known
// secrets and does everything else.
type Sanitizer struct {
	secrets []string // escaped as the text will be
}

// NewSanitizer returns a Sanitizer that also masks the given secrets
// wherever they appear verbatim. Secrets shorter than 4 bytes are ignored.
func NewSanitizer(secrets ...string) *Sanitizer {
	s := &Sanitizer{}
	for _, sec := range secrets {
		if len(sec) >= minSecretLen && !strings.Contains(redacted, sec) {
			s.secrets = append(s.secrets, escapeControls(strings.ToValidUTF8(sec, "\uFFFD")))
		}
	}
	return s
}

// Sanitize sanitizes text with no known secrets.
func Sanitize(text string) string { return (*Sanitizer)(nil).Sanitize(text) }

// Sanitize returns text made safe to store, serve and log.
func (s *Sanitizer) Sanitize(text string) string {
	text = strings.ToValidUTF8(text, "\uFFFD")
	text = ansiRE.ReplaceAllString(text, "")
	text = escapeControls(text)
	if s != nil {
		for _, sec := range s.secrets {
			text = strings.ReplaceAll(text, sec, redacted)
		}
	}
	text = redactCommands(text)
	text = endpoint.Redact(text)
	return cutToken(text, MaxRecordLen)
}

// ansiRE matches ANSI escape sequences: CSI (colours, cursor), OSC
// (titles, hyperlinks) and two-byte escapes.
var ansiRE = regexp.MustCompile("\x1b\\[[0-9;:?<=>]*[ -/]*[@-~]|\x1b\\][^\x07\x1b]*(?:\x07|\x1b\\\\)?|\x1b[@-Z\\\\-_]")

// escapeControls writes control characters as \xNN or \uNNNN, except tab
// and newline.
func escapeControls(s string) string {
	if strings.IndexFunc(s, needsEscape) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case !needsEscape(r):
			b.WriteRune(r)
		case r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

func needsEscape(r rune) bool {
	switch {
	case r == '\t' || r == '\n':
		return false
	case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
		return true
	case r == 0x061c || r == 0x200e || r == 0x200f || r == 0x2028 || r == 0x2029:
		return true
	case (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
		return true
	}
	return false
}

// cmdRE finds a logged command: redis-shake prints cmd=[NAME arg arg...]
// (a failed write, BUSYKEY, debug logs).
var cmdRE = regexp.MustCompile(`cmd=\[([A-Za-z][A-Za-z0-9_.-]*)`)

// redactCommands replaces the arguments of each cmd=[NAME ...] with xxxxx.
// The arguments hold keys and values, possibly binary and possibly with
// ']' or newlines in them, so the end is taken as late as the record's
// shape allows: the last "], error=[" that follows (redis-shake's
// "cmd=[%s], error=[%v]"), else the last ']' before the stack trace.
func redactCommands(text string) string {
	var b strings.Builder
	for {
		loc := cmdRE.FindStringSubmatchIndex(text)
		if loc == nil {
			b.WriteString(text)
			return b.String()
		}
		argsStart := loc[3] // end of the command name
		rest := text[argsStart:]
		end := strings.LastIndex(rest, "], error=[")
		if end < 0 {
			body := rest
			if i := strings.Index(body, "\n\t"); i >= 0 {
				body = body[:i]
			}
			end = strings.LastIndex(body, "]")
			if end < 0 {
				end = len(body)
			}
		}
		b.WriteString(text[:argsStart])
		if args := rest[:end]; strings.TrimSpace(args) != "" {
			b.WriteString(" " + redacted)
		} else {
			b.WriteString(args)
		}
		text = rest[end:]
	}
}

// cutToken cuts s to at most max bytes. When it cuts, it drops the token
// the cut falls in (back to the last space, tab or newline: a URL or a bare
// password is one token) and appends a note on a line of its own.
func cutToken(s string, max int) string {
	if len(s) <= max {
		return s
	}
	note := fmt.Sprintf("\n… (%d bytes cut)", len(s))
	return dropPartialToken(s, max-len(note)) + note
}

// dropPartialToken returns the longest prefix of s of at most n bytes that
// ends at a space, tab or newline (or s itself when it is short enough).
func dropPartialToken(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if i := strings.LastIndexAny(s[:max(n, 0)], " \t\n"); i >= 0 {
		return s[:i+1]
	}
	return ""
}
