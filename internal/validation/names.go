package validation

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// maxNameLen bounds a name shown in a report (longer ones are cut, with
// their length).
const maxNameLen = 120

// name is how a key, field or member name appears in the report: see
// DisplayName, or RedactName when keys are redacted.
func (v *run) name(s string) string {
	if v.o.RedactKeys {
		return RedactName(s)
	}
	return DisplayName(s)
}

// RedactName is "sha256:" and the first 16 bytes, in hex, of the SHA-256
// of the name: stable, so an operator can look a key up by hashing the
// names they suspect, without the report carrying the name.
func RedactName(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:16])
}

// DisplayName shows a name as is when it is printable UTF-8, otherwise
// Go-quoted (in double quotes, with \x escapes for the bytes that are not
// printable); names longer than 120 bytes are cut and marked with their
// length.
func DisplayName(s string) string {
	cut := ""
	if len(s) > maxNameLen {
		cut = "…(" + strconv.Itoa(len(s)) + " bytes)"
		s = s[:maxNameLen]
		for len(s) > 0 && !utf8.ValidString(s) && len(s) > maxNameLen-4 {
			s = s[:len(s)-1] // do not cut a character in two
		}
	}
	if printable(s) {
		return s + cut
	}
	return strconv.Quote(s) + cut
}

func printable(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	if s[0] == '"' && s[len(s)-1] == '"' && len(s) > 1 {
		return false // would read as a quoted name
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
