package endpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// secret is the password of the redaction tests: no output may contain it.
const secret = "s3cr3t!"

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want Endpoint
		pass string
	}{
		{
			name: "accepts a bare redis host with the default port",
			raw:  "redis://localhost",
			want: Endpoint{Scheme: "redis", Host: "localhost", Port: 6379},
		},
		{
			name: "accepts rediss as TLS",
			raw:  "rediss://cache.example.com:6380",
			want: Endpoint{Scheme: "rediss", Host: "cache.example.com", Port: 6380, TLS: TLSOptions{Enabled: true}},
		},
		{
			name: "accepts valkey as plain text",
			raw:  "valkey://10.0.0.1:7000",
			want: Endpoint{Scheme: "valkey", Host: "10.0.0.1", Port: 7000},
		},
		{
			name: "accepts valkeys as TLS",
			raw:  "valkeys://10.0.0.1",
			want: Endpoint{Scheme: "valkeys", Host: "10.0.0.1", Port: 6379, TLS: TLSOptions{Enabled: true}},
		},
		{
			name: "lower-cases the scheme and the host name",
			raw:  "REDIS://Cache.Example.COM:7001",
			want: Endpoint{Scheme: "redis", Host: "cache.example.com", Port: 7001},
		},
		{
			name: "reads a user and a password",
			raw:  "redis://alice:" + secret + "@h:6379",
			want: Endpoint{Scheme: "redis", Host: "h", Port: 6379, Username: "alice"},
			pass: secret,
		},
		{
			name: "reads a password without a user as the default user's",
			raw:  "redis://:" + secret + "@h",
			want: Endpoint{Scheme: "redis", Host: "h", Port: 6379},
			pass: secret,
		},
		{
			name: "reads a user without a password",
			raw:  "redis://alice@h",
			want: Endpoint{Scheme: "redis", Host: "h", Port: 6379, Username: "alice"},
		},
		{
			name: "accepts an empty user information",
			raw:  "redis://@h",
			want: Endpoint{Scheme: "redis", Host: "h", Port: 6379},
		},
		{
			name: "percent-decodes the user and the password",
			raw:  "redis://al%20ice:p%40ss%3Aw%2Fd%25@h",
			want: Endpoint{Scheme: "redis", Host: "h", Port: 6379, Username: "al ice"},
			pass: "p@ss:w/d%",
		},
		{
			name: "takes a password with unencoded @, / and ? up to the last @",
			raw:  "redis://u:p@ss/w?rd#1@h:7000/2",
			want: Endpoint{Scheme: "redis", Host: "h", Port: 7000, Username: "u", DB: 2, DBSet: true},
			pass: "p@ss/w?rd#1",
		},
		{
			name: "keeps a unicode password",
			raw:  "redis://u:пароль✓@h",
			want: Endpoint{Scheme: "redis", Host: "h", Port: 6379, Username: "u"},
			pass: "пароль✓",
		},
		{
			name: "accepts a bracketed IPv6 address with a port",
			raw:  "redis://[::1]:7000",
			want: Endpoint{Scheme: "redis", Host: "::1", Port: 7000},
		},
		{
			name: "accepts a bracketed IPv6 address without a port",
			raw:  "redis://[2001:db8::1]",
			want: Endpoint{Scheme: "redis", Host: "2001:db8::1", Port: 6379},
		},
		{
			name: "accepts an IPv6 address with a zone",
			raw:  "redis://[fe80::1%25eth0]:7000",
			want: Endpoint{Scheme: "redis", Host: "fe80::1%eth0", Port: 7000},
		},
		{
			name: "accepts the lowest and highest ports",
			raw:  "redis://h:1",
			want: Endpoint{Scheme: "redis", Host: "h", Port: 1},
		},
		{
			name: "accepts port 65535",
			raw:  "redis://h:65535",
			want: Endpoint{Scheme: "redis", Host: "h", Port: 65535},
		},
		{
			name: "reads the database number from the path",
			raw:  "redis://h/15",
			want: Endpoint{Scheme: "redis", Host: "h", Port: 6379, DB: 15, DBSet: true},
		},
		{
			name: "reads /0 as database 0 named: that one alone",
			raw:  "redis://h/0",
			want: Endpoint{Scheme: "redis", Host: "h", Port: 6379, DBSet: true},
		},
		{
			name: "reads a lone slash as database 0",
			raw:  "redis://h:6379/",
			want: Endpoint{Scheme: "redis", Host: "h", Port: 6379},
		},
		{
			name: "accepts a database above 15 for servers with more databases",
			raw:  "redis://h/99",
			want: Endpoint{Scheme: "redis", Host: "h", Port: 6379, DB: 99, DBSet: true},
		},
		{
			name: "reads cluster=true",
			raw:  "redis://h:7000?cluster=true",
			want: Endpoint{Scheme: "redis", Host: "h", Port: 7000, Cluster: ClusterOn},
		},
		{
			name: "reads cluster=false",
			raw:  "redis://h:7000/3?cluster=false",
			want: Endpoint{Scheme: "redis", Host: "h", Port: 7000, DB: 3, DBSet: true, Cluster: ClusterOff},
		},
		{
			name: "reads every TLS option",
			raw: "rediss://h:6380?tls_ca=/etc/ssl/ca.pem&tls_cert=/c/client.pem&tls_key=/c/client%20key.pem" +
				"&tls_server_name=cache.internal&tls_insecure=true",
			want: Endpoint{Scheme: "rediss", Host: "h", Port: 6380, TLS: TLSOptions{
				Enabled: true, CAFile: "/etc/ssl/ca.pem", CertFile: "/c/client.pem", KeyFile: "/c/client key.pem",
				ServerName: "cache.internal", InsecureSkipVerify: true,
			}},
		},
		{
			name: "accepts tls_insecure=false",
			raw:  "valkeys://h?tls_insecure=false",
			want: Endpoint{Scheme: "valkeys", Host: "h", Port: 6379, TLS: TLSOptions{Enabled: true}},
		},
		{
			name: "ignores empty query parts",
			raw:  "redis://h?&cluster=true&",
			want: Endpoint{Scheme: "redis", Host: "h", Port: 6379, Cluster: ClusterOn},
		},
		{
			name: "trims surrounding spaces",
			raw:  "  redis://h:7000  ",
			want: Endpoint{Scheme: "redis", Host: "h", Port: 7000},
		},
		{
			name: "accepts underscores in host names, as container names have",
			raw:  "redis://redis_source:6379",
			want: Endpoint{Scheme: "redis", Host: "redis_source", Port: 6379},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.raw)
			require.NoError(t, err)
			assert.Equal(t, tt.pass, got.Password())
			assert.Equal(t, tt.want, got.WithCredentials(got.Username, ""))
		})
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name     string
		raw      string
		mentions []string // what the message must name, so the user can act
	}{
		{"rejects an empty URL", "", []string{"empty"}},
		{"rejects an unknown scheme, naming it and the accepted ones", "http://u:" + secret + "@h:6379",
			[]string{`"http"`, "redis://", "rediss://", "valkey://", "valkeys://"}},
		{"rejects a scheme with a typo", "rediss+tls://h", []string{`"rediss+tls"`, "rediss://"}},
		{"rejects host:port without a scheme, suggesting redis://", "localhost:6379",
			[]string{"redis://localhost:6379"}},
		{"rejects a scheme-less URL with credentials without echoing them", "alice:" + secret + "@cache.local:6379",
			[]string{"redis://cache.local:6379"}},
		{"rejects a lone word without echoing it, as it may be a password", secret, []string{"redis://host:port"}},
		{"rejects a non-numeric port, naming it", "redis://u:" + secret + "@h:abc", []string{`"abc"`}},
		{"rejects port 0", "redis://u:" + secret + "@h:0", []string{"port 0"}},
		{"rejects a port above 65535", "redis://u:" + secret + "@h:65536", []string{"port 65536"}},
		{"rejects a port too large for an int", "redis://h:99999999999999999999999", []string{"99999999999999999999999"}},
		{"rejects a signed port", "redis://h:+80", []string{`"+80"`}},
		{"rejects a password where the port should be without echoing it", "redis://alice:" + secret,
			[]string{"invalid port", "@"}},
		{"rejects an empty port after a colon", "redis://h:", []string{"port is empty"}},
		{"rejects a non-numeric database, naming it", "redis://u:" + secret + "@h/abc", []string{`"abc"`}},
		{"rejects a negative database", "redis://u:" + secret + "@h/-1", []string{`"-1"`, "negative"}},
		{"rejects a nested path", "redis://h/1/2", []string{`"1/2"`}},
		{"rejects a database too large", "redis://h/99999999999", []string{"99999999999"}},
		{"rejects unknown query parameters, naming each", "redis://u:" + secret + "@h?foo=1&bar=2&foo=3",
			[]string{`"bar"`, `"foo"`, "cluster", "tls_ca"}},
		{"rejects a password in the query without echoing it", "redis://h?password=" + escapeBang(secret),
			[]string{`"password"`, "redis://user:password@host"}},
		{"rejects a cluster value that is not true or false", "redis://h?cluster=maybe", []string{`"maybe"`}},
		{"rejects an option given twice", "redis://h?cluster=true&cluster=false", []string{`"cluster"`, "twice"}},
		{"rejects tls_cert without tls_key", "rediss://h?tls_cert=/c.pem", []string{"tls_cert", "tls_key"}},
		{"rejects tls_key without tls_cert", "rediss://h?tls_key=/k.pem", []string{"tls_cert", "tls_key"}},
		{"rejects TLS options on a plain-text scheme, suggesting the TLS one", "redis://h?tls_ca=/ca.pem",
			[]string{"rediss://"}},
		{"rejects TLS options on valkey://, suggesting valkeys://", "valkey://h?tls_insecure=true",
			[]string{"valkeys://"}},
		{"rejects an empty tls_ca", "rediss://h?tls_ca=", []string{"tls_ca"}},
		{"rejects a tls_insecure value that is not a boolean", "rediss://h?tls_insecure=please", []string{`"please"`}},
		{"rejects a newline at the end", "redis://u:" + secret + "@h\n", []string{"control character"}},
		{"rejects a NUL byte in the password", "redis://u:s3c\x00r3t!@h", []string{"control character"}},
		{"rejects a tab in the host", "redis://h\tx:6379", []string{"control character"}},
		{"rejects an escape sequence", "redis://h\x1b[31m", []string{"control character"}},
		{"rejects a DEL character", "redis://h\x7f", []string{"control character"}},
		{"rejects a unicode control character", "redis://h\u0085", []string{"control character"}},
		{"rejects invalid UTF-8", "redis://u:" + secret + "\xff@h", []string{"UTF-8"}},
		{"rejects an empty host", "redis://u:" + secret + "@:6379", []string{"host is empty"}},
		{"rejects a URL with nothing after the scheme", "redis://", []string{"host is empty"}},
		{"rejects a path without a host", "redis:///0", []string{"host is empty"}},
		{"rejects an unbracketed IPv6 address, suggesting brackets", "redis://::1:6379", []string{"[::1]"}},
		{"rejects an unclosed IPv6 bracket", "redis://[::1:6379", []string{"closing"}},
		{"rejects an IPv4 address in brackets", "redis://[10.0.0.1]:6379", []string{"[10.0.0.1]", "IPv6"}},
		{"rejects text after an IPv6 address", "redis://[::1]x", []string{`"x"`}},
		{"rejects a host with invalid characters", "redis://u:" + secret + "@ho$t:6379", []string{`"ho$t"`}},
		{"rejects a fragment", "redis://h:6379#frag", []string{"fragment"}},
		{"rejects a bad %-escape in the password without echoing it", "redis://u:" + secret + "%zz@h",
			[]string{"password", "%25"}},
		{"rejects a bad %-escape in the user", "redis://a%zz:" + secret + "@h", []string{"username"}},
		{"rejects a control character encoded in the user", "redis://a%0Ab:" + secret + "@h", []string{"control character"}},
		{"rejects a bad %-escape in a query value", "rediss://h?tls_ca=%zz", []string{"tls_ca"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.raw)
			require.ErrorIs(t, err, ErrInvalidURL)
			msg := err.Error()
			for _, m := range tt.mentions {
				assert.Contains(t, msg, m)
			}
			assert.NotContains(t, msg, "s3cr3t", "the error must not contain the password")
			assert.NotContains(t, msg, "s3c\x00r3t")
		})
	}
}

// escapeBang percent-encodes the "!" of s for a query value.
func escapeBang(s string) string {
	return strings.NewReplacer("!", "%21").Replace(s)
}

func TestEndpointString(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want string
	}{
		{"shows the password as xxxxx", "redis://alice:" + secret + "@Host:6379/2?cluster=true",
			"redis://alice:xxxxx@host:6379/2?cluster=true"},
		{"shows a default-user password as :xxxxx", "valkey://:" + secret + "@h", "valkey://:xxxxx@h:6379"},
		{"shows a user without a password and no placeholder", "redis://alice@h", "redis://alice@h:6379"},
		{"shows no user information when there is none", "redis://h", "redis://h:6379"},
		{"writes the default port and leaves out a database the URL does not name", "redis://h", "redis://h:6379"},
		{"keeps a database 0 the URL names: it selects that database alone", "redis://h/0", "redis://h:6379/0"},
		{"brackets an IPv6 host", "redis://[::1]:7000/1", "redis://[::1]:7000/1"},
		{"escapes the zone of an IPv6 host", "redis://[fe80::1%25eth0]", "redis://[fe80::1%25eth0]:6379"},
		{"escapes a user that needs it", "redis://a%40b%3Ac:" + secret + "@h", "redis://a%40b%3Ac:xxxxx@h:6379"},
		{"writes cluster=false", "redis://h?cluster=false", "redis://h:6379?cluster=false"},
		{"writes TLS options in a fixed order, paths readable", "rediss://h?tls_insecure=true&tls_server_name=n&tls_key=/k&tls_cert=/c&tls_ca=/a%20b/ca.pem",
			"rediss://h:6379?tls_ca=/a+b/ca.pem&tls_cert=/c&tls_key=/k&tls_server_name=n&tls_insecure=true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Parse(tt.raw)
			require.NoError(t, err)
			assert.Equal(t, tt.want, e.String())
		})
	}
}

func TestEndpointAddr(t *testing.T) {
	for raw, want := range map[string]string{
		"redis://h":             "h:6379",
		"redis://10.1.2.3:7000": "10.1.2.3:7000",
		"redis://[::1]:7000":    "[::1]:7000",
	} {
		e, err := Parse(raw)
		require.NoError(t, err)
		assert.Equal(t, want, e.Addr(), raw)
	}
}

func TestWithCredentials(t *testing.T) {
	t.Run("sets the user and password from a secret store without touching the original", func(t *testing.T) {
		e, err := Parse("rediss://h:6380/1")
		require.NoError(t, err)
		withCreds := e.WithCredentials("svc", secret)
		assert.Equal(t, "svc", withCreds.Username)
		assert.Equal(t, secret, withCreds.Password())
		assert.Equal(t, "rediss://svc:xxxxx@h:6380/1", withCreds.String())
		assert.Empty(t, e.Password())
		assert.Empty(t, e.Username)
	})
}

func TestEndpointNeverShowsThePassword(t *testing.T) {
	e, err := Parse("redis://alice:" + secret + "@h:6379/2?cluster=true")
	require.NoError(t, err)
	require.Equal(t, secret, e.Password())

	type job struct {
		Source  Endpoint  `json:"source"`
		Target  *Endpoint `json:"target"`
		Sources []Endpoint
	}
	var textLog, jsonLog bytes.Buffer
	slog.New(slog.NewTextHandler(&textLog, nil)).Info("dial", "endpoint", e, "ptr", &e)
	slog.New(slog.NewJSONHandler(&jsonLog, nil)).Info("dial", "endpoint", e, "job", job{Source: e, Target: &e})
	jobJSON, err := json.Marshal(job{Source: e, Target: &e, Sources: []Endpoint{e}})
	require.NoError(t, err)

	outputs := map[string]string{
		"String":         e.String(),
		"fmt %v":         fmt.Sprintf("%v", e),
		"fmt %+v":        fmt.Sprintf("%+v", e),
		"fmt %s":         fmt.Sprintf("%s", e),
		"fmt %#v":        fmt.Sprintf("%#v", e),
		"fmt %v pointer": fmt.Sprintf("%v", &e),
		"fmt %+v struct": fmt.Sprintf("%+v", job{Source: e, Target: &e}),
		"json":           string(jobJSON),
		"slog text":      textLog.String(),
		"slog json":      jsonLog.String(),
		"slog LogValue":  e.LogValue().String(),
	}
	for name, out := range outputs {
		t.Run(name+" redacts the password", func(t *testing.T) {
			assert.NotContains(t, out, "s3cr3t")
			assert.Contains(t, out, "alice:xxxxx@h:6379")
		})
	}
}

func TestEndpointJSON(t *testing.T) {
	t.Run("writes the redacted URL as a string", func(t *testing.T) {
		e, err := Parse("rediss://alice:" + secret + "@h:6380/1?tls_insecure=true")
		require.NoError(t, err)
		b, err := json.Marshal(e)
		require.NoError(t, err)
		assert.JSONEq(t, `"rediss://alice:xxxxx@h:6380/1?tls_insecure=true"`, string(b))
	})
	t.Run("reads back a redacted URL without taking the placeholder for a password", func(t *testing.T) {
		var e Endpoint
		require.NoError(t, json.Unmarshal([]byte(`"redis://alice:xxxxx@h:6380/1"`), &e))
		assert.Equal(t, "alice", e.Username)
		assert.Empty(t, e.Password())
		assert.Equal(t, 1, e.DB)
	})
	t.Run("reads a real password from hand-written JSON", func(t *testing.T) {
		var e Endpoint
		require.NoError(t, json.Unmarshal([]byte(`"redis://:pw@h"`), &e))
		assert.Equal(t, "pw", e.Password())
	})
	t.Run("rejects an invalid URL without echoing the password", func(t *testing.T) {
		var e Endpoint
		err := json.Unmarshal([]byte(`"redis://u:`+secret+`@h:0"`), &e)
		require.ErrorIs(t, err, ErrInvalidURL)
		assert.NotContains(t, err.Error(), "s3cr3t")
	})
	t.Run("rejects a JSON value that is not a string", func(t *testing.T) {
		var e Endpoint
		assert.ErrorIs(t, json.Unmarshal([]byte(`{"host":"h"}`), &e), ErrInvalidURL)
	})
}

func TestClusterModeString(t *testing.T) {
	assert.Equal(t, "auto", ClusterAuto.String())
	assert.Equal(t, "on", ClusterOn.String())
	assert.Equal(t, "off", ClusterOff.String())
	assert.Equal(t, "ClusterMode(7)", ClusterMode(7).String())
}

func TestOneDBIsANamedDatabase(t *testing.T) {
	for raw, want := range map[string]bool{
		"redis://h": false, "redis://h/": false, "redis://h/0": true, "redis://h/3": true, "valkey://h:7000/0?cluster=true": true,
	} {
		e, err := Parse(raw)
		if assert.NoError(t, err, raw) {
			assert.Equal(t, want, e.OneDB(), raw)
			again, err := Parse(e.String())
			assert.NoError(t, err)
			assert.Equal(t, want, again.OneDB(), "%s survives its string form", raw)
		}
	}
	assert.True(t, Endpoint{Host: "h", DB: 4}.OneDB(), "a DB set in code")
}
