package endpoint

import (
	"strings"
	"testing"
)

// FuzzParse checks, for every URL Parse accepts, that String never shows
// the password and that Parse(String()) gives the same endpoint back (the
// password reading "xxxxx"). For URLs it rejects, the error must not carry
// the part of the input that can hold the password.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"redis://localhost",
		"rediss://alice:" + secret + "@cache.example.com:6380/2?cluster=true",
		"valkey://:pw@10.0.0.1:7000?cluster=false",
		"valkeys://u:p%40ss@[::1]:6379/15?tls_ca=/ca.pem&tls_cert=/c.pem&tls_key=/k.pem&tls_server_name=n&tls_insecure=true",
		"redis://u:p@ss/w?rd#1@h:7000/2",
		"redis://[fe80::1%25eth0]:7000",
		"redis://a%40b%3Ac:x@h",
		"redis://u:пароль@h",
		"localhost:6379",
		"http://u:pw@h",
		"redis://h:0",
		"redis://h/-1",
		"redis://h?foo=bar",
		"redis://u:xxxxx@h",
		"redis://xxxxx:xxxxx@h",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		e, err := Parse(raw)
		if err != nil {
			assertErrorHidesUserinfo(t, raw, err)
			return
		}
		s := e.String()
		pw := e.Password()
		if pw != "" {
			// The output must not depend on the password at all...
			other := e.WithCredentials(e.Username, pw+"-other").String()
			if s != other {
				t.Fatalf("String depends on the password: %q vs %q", s, other)
			}
			// ...so it contains the password only where the password is a
			// substring of everything else (e.g. a password "6379").
			if strings.Contains(s, pw) && !strings.Contains(e.WithCredentials(e.Username, "\x00").String(), pw) {
				t.Fatalf("String %q contains the password %q", s, pw)
			}
		}
		back, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q) (from %q): %v", s, raw, err)
		}
		if pw != "" {
			if back.Password() != redacted {
				t.Fatalf("Parse(%q).Password() = %q, want the placeholder", s, back.Password())
			}
			back = back.WithCredentials(back.Username, pw)
		}
		if back != e {
			t.Fatalf("round trip of %q through %q:\n got %#v %+v\nwant %+v", raw, s, back, back.TLS, e.TLS)
		}
	})
}

// assertErrorHidesUserinfo checks that a parse error does not echo the
// password part of raw: the text between the first ':' after "://" and the
// last '@'.
func assertErrorHidesUserinfo(t *testing.T, raw string, err error) {
	t.Helper()
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return
	}
	_, pw, ok := strings.Cut(rest[:at], ":")
	if !ok || len(pw) < 6 {
		return // too short to tell apart from the rest of a message
	}
	if strings.Contains(err.Error(), pw) {
		t.Fatalf("Parse(%q) error %q contains the password %q", raw, err, pw)
	}
}
