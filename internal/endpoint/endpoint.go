// Package endpoint parses source and target URLs for Redis and Valkey,
// keeps their credentials out of logs and errors, and connects to them with
// errors that say what went wrong (authentication, reachability, TLS,
// permissions) and what to do about it.
//
// Accepted URLs:
//
//	redis://[[user]:password@]host[:port][/db][?options]
//	rediss://...   (TLS)
//	valkey://...   (same as redis://)
//	valkeys://...  (TLS)
//
// Options: cluster=true|false (absent: detected on connect), tls_ca=PATH,
// tls_cert=PATH and tls_key=PATH (together), tls_server_name=NAME,
// tls_insecure=true. The password is percent-decoded; a password that
// contains '%' must write it as %25. Everything before the last '@' is the
// user information, so '@' in a query value must be written %40.
package endpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidURL is wrapped by every error Parse returns.
var ErrInvalidURL = errors.New("invalid endpoint URL")

// DefaultPort is used when the URL names no port.
const DefaultPort = 6379

// maxDB bounds the database number; Redis and Valkey allow up to INT_MAX
// databases through the databases setting, 16 by default.
const maxDB = 1<<31 - 1

// redacted replaces a password wherever one would be shown.
const redacted = "xxxxx"

// ClusterMode says whether an endpoint is a cluster.
type ClusterMode int

const (
	// ClusterAuto asks the server when connecting (INFO cluster).
	ClusterAuto ClusterMode = iota
	// ClusterOn is set by cluster=true.
	ClusterOn
	// ClusterOff is set by cluster=false: talk to the one node named.
	ClusterOff
)

// String returns "auto", "on" or "off".
func (m ClusterMode) String() string {
	switch m {
	case ClusterAuto:
		return "auto"
	case ClusterOn:
		return "on"
	case ClusterOff:
		return "off"
	}
	return "ClusterMode(" + strconv.Itoa(int(m)) + ")"
}

// TLSOptions are the TLS settings of an endpoint. Enabled is set by the
// rediss:// and valkeys:// schemes; the other fields by query options.
type TLSOptions struct {
	Enabled            bool
	CAFile             string // tls_ca: PEM bundle to verify the server with, instead of the system roots
	CertFile           string // tls_cert: client certificate (mutual TLS), with KeyFile
	KeyFile            string // tls_key
	ServerName         string // tls_server_name: name to verify the server certificate against
	InsecureSkipVerify bool   // tls_insecure: do not verify the server certificate
}

// Endpoint is a parsed source or target URL. The password is kept
// unexported: String, GoString, MarshalJSON and LogValue all redact it, so
// an Endpoint can be printed, logged and stored safely.
type Endpoint struct {
	Scheme   string // "redis", "rediss", "valkey" or "valkeys"
	Host     string // hostname (lower case) or IP address, without brackets
	Port     int
	Username string // empty: the default user
	DB       int
	// DBSet: the URL names its database (/N, /0 included). A URL that
	// names one (or a DB other than 0) selects that database alone; see
	// OneDB.
	DBSet   bool
	Cluster ClusterMode
	TLS     TLSOptions

	password string
}

var schemes = []string{"redis", "rediss", "valkey", "valkeys"}

// Parse parses a redis://, rediss://, valkey:// or valkeys:// URL. Every
// error wraps ErrInvalidURL and never contains the password.
func Parse(raw string) (Endpoint, error) {
	for i, r := range raw {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(raw[i:]); size == 1 {
				return Endpoint{}, invalid("the URL is not valid UTF-8 (byte %d)", i)
			}
		}
		if unicode.IsControl(r) {
			return Endpoint{}, invalid("the URL contains a control character (%U at byte %d); remove it", r, i)
		}
	}
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return Endpoint{}, invalid("the URL is empty: expected redis://host:port")
	}

	sep := strings.Index(raw, "://")
	if sep < 0 {
		if hp := withoutUserinfo(raw); looksLikeHostPort(hp) {
			return Endpoint{}, invalid("%q has no scheme: write redis://%s (or rediss:// for TLS)", hp, hp)
		}
		return Endpoint{}, invalid("the URL has no scheme: write redis://host:port (or rediss:// for TLS)")
	}
	scheme := strings.ToLower(raw[:sep])
	if !validScheme(scheme) {
		return Endpoint{}, invalid("the URL does not start with a scheme: use one of %s", schemeList())
	}
	if !slices.Contains(schemes, scheme) {
		return Endpoint{}, invalid("unsupported scheme %q: use one of %s", scheme, schemeList())
	}

	e := Endpoint{Scheme: scheme, Port: DefaultPort}
	e.TLS.Enabled = scheme == "rediss" || scheme == "valkeys"

	rest := raw[sep+3:]
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if err := e.parseUserinfo(rest[:at]); err != nil {
			return Endpoint{}, err
		}
		rest = rest[at+1:]
	}
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		return Endpoint{}, invalid("URL fragments (#...) are not supported; write '#' in a password as %%23")
	}
	var query string
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, query = rest[:i], rest[i+1:]
	}
	var path string
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest, path = rest[:i], rest[i:]
	}
	if err := e.parseHostPort(rest); err != nil {
		return Endpoint{}, err
	}
	if err := e.parseDB(path); err != nil {
		return Endpoint{}, err
	}
	if err := e.parseQuery(query); err != nil {
		return Endpoint{}, err
	}
	return e, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalidURL)
}

func validScheme(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func schemeList() string {
	names := make([]string, len(schemes))
	for i, s := range schemes {
		names[i] = s + "://"
	}
	return strings.Join(names, ", ")
}

// withoutUserinfo drops anything up to the last '@', so that a suggestion
// built from a scheme-less URL cannot echo a password.
func withoutUserinfo(s string) string {
	if at := strings.LastIndex(s, "@"); at >= 0 {
		return s[at+1:]
	}
	return s
}

// looksLikeHostPort reports whether s is host[:port]; only then is it
// safe to echo s in an error (it could otherwise be a misplaced password).
func looksLikeHostPort(s string) bool {
	host, port, hasPort := strings.Cut(s, ":")
	if host == "" || !validHostname(host) {
		return false
	}
	if hasPort {
		return allDigits(port)
	}
	return host == "localhost" || strings.Contains(host, ".")
}

func (e *Endpoint) parseUserinfo(info string) error {
	user, pass, hasPass := strings.Cut(info, ":")
	u, err := url.PathUnescape(user)
	if err != nil {
		return invalid("the username contains an invalid %%-escape: write '%%' as %%25")
	}
	for _, r := range u {
		if unicode.IsControl(r) {
			return invalid("the username contains a control character")
		}
	}
	e.Username = u
	if hasPass {
		p, err := url.PathUnescape(pass)
		if err != nil {
			return invalid("the password contains an invalid %%-escape: write '%%' in a password as %%25")
		}
		e.password = p
	}
	return nil
}

func (e *Endpoint) parseHostPort(hp string) error {
	var host, port string
	var hasPort bool
	switch {
	case strings.HasPrefix(hp, "["):
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return invalid("IPv6 address %q has no closing ']'", hp)
		}
		host = hp[1:end]
		after := hp[end+1:]
		if after != "" {
			if !strings.HasPrefix(after, ":") {
				return invalid("unexpected %q after IPv6 address [%s]: expected :port", after, host)
			}
			port, hasPort = after[1:], true
		}
		h, err := url.PathUnescape(host) // zones are written %25eth0
		if err != nil {
			return invalid("IPv6 address [%s] contains an invalid %%-escape", host)
		}
		addr, err := netip.ParseAddr(h)
		if err != nil || !addr.Is6() {
			return invalid("[%s] is not an IPv6 address", host)
		}
		host = h
	case strings.Count(hp, ":") > 1:
		return invalid("%q looks like an IPv6 address: put it in brackets, e.g. redis://[::1]:6379", hp)
	default:
		host, port, hasPort = strings.Cut(hp, ":")
		if host == "" {
			return invalid("the host is empty: expected redis://host:port")
		}
		if !validHostname(host) {
			return invalid("invalid host %q: use a hostname, an IPv4 address or [IPv6]", host)
		}
		host = strings.ToLower(host)
	}
	e.Host = host
	if hasPort {
		p, err := parsePort(port)
		if err != nil {
			return err
		}
		e.Port = p
	}
	return nil
}

func validHostname(h string) bool {
	for _, c := range []byte(h) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}

func parsePort(s string) (int, error) {
	if s == "" {
		return 0, invalid("the port is empty: drop the ':' to use %d or write a number from 1 to 65535", DefaultPort)
	}
	if !allDigits(s) {
		if len(s) > 6 {
			// Too long for a port, and perhaps a password: redis://user:password without @host.
			return 0, invalid("invalid port (%d characters, not a number): write host:port, and put an @ between a password and the host", len(s))
		}
		return 0, invalid("invalid port %q: must be a number from 1 to 65535", s)
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, invalid("invalid port %s: must be a number from 1 to 65535", s)
	}
	return p, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (e *Endpoint) parseDB(path string) error {
	if path == "" || path == "/" {
		return nil
	}
	s := path[1:]
	if strings.HasPrefix(s, "-") && allDigits(s[1:]) {
		return invalid("invalid database %q: must not be negative", s)
	}
	if !allDigits(s) {
		return invalid("invalid database %q: the path must be a database number, e.g. /0", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > maxDB {
		return invalid("invalid database %s: too large", s)
	}
	e.DB, e.DBSet = n, true
	return nil
}

// OneDB reports whether the endpoint selects a single database: its URL
// names one (/0 included), or DB is not 0. Otherwise a standalone source is
// copied database by database, each to the same number.
func (e Endpoint) OneDB() bool { return e.DBSet || e.DB != 0 }

// query option names, in the order String writes them.
const (
	optCluster    = "cluster"
	optCA         = "tls_ca"
	optCert       = "tls_cert"
	optKey        = "tls_key"
	optServerName = "tls_server_name"
	optInsecure   = "tls_insecure"
)

var options = []string{optCluster, optCA, optCert, optKey, optServerName, optInsecure}

func (e *Endpoint) parseQuery(q string) error {
	seen := map[string]bool{}
	var unknown []string
	for part := range strings.SplitSeq(q, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return invalid("a query parameter name contains an invalid %%-escape")
		}
		if !slices.Contains(options, key) {
			unknown = append(unknown, key)
			continue
		}
		if seen[key] {
			return invalid("query parameter %q is given twice", key)
		}
		seen[key] = true
		val, err := url.QueryUnescape(v)
		if err != nil {
			return invalid("the value of %s contains an invalid %%-escape: write '%%' as %%25", key)
		}
		if err := e.setOption(key, val); err != nil {
			return err
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		unknown = slices.Compact(unknown)
		quoted := make([]string, len(unknown))
		for i, u := range unknown {
			quoted[i] = strconv.Quote(u)
		}
		hint := ""
		for _, u := range unknown {
			if k := strings.ToLower(u); k == "password" || k == "pass" || k == "auth" || k == "user" || k == "username" {
				hint = "; credentials go before the host: redis://user:password@host:port"
			}
		}
		noun := "parameter"
		if len(unknown) > 1 {
			noun = "parameters"
		}
		return invalid("unknown query %s %s: accepted are %s%s",
			noun, strings.Join(quoted, ", "), strings.Join(options, ", "), hint)
	}

	t := e.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		return invalid("tls_cert and tls_key must be given together")
	}
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.ServerName != "" || t.InsecureSkipVerify) {
		return invalid("TLS options need a TLS scheme: use %ss:// instead of %s://", e.Scheme, e.Scheme)
	}
	return nil
}

func (e *Endpoint) setOption(key, val string) error {
	switch key {
	case optCluster:
		switch strings.ToLower(val) {
		case "true", "1", "yes", "on":
			e.Cluster = ClusterOn
		case "false", "0", "no", "off":
			e.Cluster = ClusterOff
		case "auto":
			e.Cluster = ClusterAuto
		default:
			return invalid("invalid cluster=%q: use cluster=true or cluster=false, or leave it out to detect", val)
		}
	case optInsecure:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return invalid("invalid tls_insecure=%q: use tls_insecure=true", val)
		}
		e.TLS.InsecureSkipVerify = b
	default:
		if val == "" {
			return invalid("%s is empty", key)
		}
		switch key {
		case optCA:
			e.TLS.CAFile = val
		case optCert:
			e.TLS.CertFile = val
		case optKey:
			e.TLS.KeyFile = val
		case optServerName:
			e.TLS.ServerName = val
		}
	}
	return nil
}

// Password returns the password, or "" when there is none.
func (e Endpoint) Password() string { return e.password }

// WithCredentials returns a copy of e with the username and password
// replaced, for credentials fetched from a secret store.
func (e Endpoint) WithCredentials(user, pass string) Endpoint {
	e.Username = user
	e.password = pass
	return e
}

// Addr returns host:port, with an IPv6 host in brackets.
func (e Endpoint) Addr() string {
	return net.JoinHostPort(e.Host, strconv.Itoa(e.Port))
}

// String returns the canonical URL with the password shown as "xxxxx":
// redis://alice:xxxxx@host:6379/2?cluster=true. Database 0 and absent
// options are left out. Parse(e.String()) gives back e, except that the
// password reads "xxxxx".
func (e Endpoint) String() string {
	var b strings.Builder
	b.WriteString(e.Scheme)
	b.WriteString("://")
	switch {
	case e.password != "":
		b.WriteString(url.UserPassword(e.Username, redacted).String())
		b.WriteByte('@')
	case e.Username != "":
		b.WriteString(url.User(e.Username).String())
		b.WriteByte('@')
	}
	host := e.Host
	if strings.Contains(host, ":") {
		host = "[" + strings.ReplaceAll(host, "%", "%25") + "]"
	}
	b.WriteString(host)
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(e.Port))
	if e.OneDB() {
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(e.DB))
	}
	var q []string
	switch e.Cluster {
	case ClusterOn:
		q = append(q, "cluster=true")
	case ClusterOff:
		q = append(q, "cluster=false")
	}
	for _, kv := range [][2]string{
		{optCA, e.TLS.CAFile},
		{optCert, e.TLS.CertFile},
		{optKey, e.TLS.KeyFile},
		{optServerName, e.TLS.ServerName},
	} {
		if kv[1] != "" {
			q = append(q, kv[0]+"="+escapeValue(kv[1]))
		}
	}
	if e.TLS.InsecureSkipVerify {
		q = append(q, optInsecure+"=true")
	}
	if len(q) > 0 {
		b.WriteByte('?')
		b.WriteString(strings.Join(q, "&"))
	}
	return b.String()
}

// escapeValue query-escapes v but keeps '/' and ':' readable in paths.
func escapeValue(v string) string {
	s := url.QueryEscape(v)
	return strings.NewReplacer("%2F", "/", "%3A", ":").Replace(s)
}

// GoString redacts the password in %#v output too.
func (e Endpoint) GoString() string { return "endpoint.Endpoint(" + strconv.Quote(e.String()) + ")" }

// LogValue makes slog write the redacted URL.
func (e Endpoint) LogValue() slog.Value { return slog.StringValue(e.String()) }

// MarshalJSON writes the redacted URL as a JSON string.
func (e Endpoint) MarshalJSON() ([]byte, error) { return json.Marshal(e.String()) }

// UnmarshalJSON parses a URL from a JSON string. A password that reads
// "xxxxx" is the redaction placeholder written by MarshalJSON and is
// dropped: supply the real one with WithCredentials.
func (e *Endpoint) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("endpoint must be a JSON string: %w", ErrInvalidURL)
	}
	p, err := Parse(s)
	if err != nil {
		return err
	}
	if p.password == redacted {
		p.password = ""
	}
	*e = p
	return nil
}
