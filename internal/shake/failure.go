package shake

import (
	"errors"
	"regexp"
	"strings"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
)

// FailureKind classifies why redis-shake failed.
type FailureKind string

const (
	FailureAuth        FailureKind = "auth"            // wrong username or password (endpoint.ErrAuth)
	FailurePermission  FailureKind = "permission"      // NOPERM: the ACL user may not run a command (endpoint.ErrNoPermission)
	FailureUnreachable FailureKind = "unreachable"     // no connection (endpoint.ErrUnreachable)
	FailureTLS         FailureKind = "tls"             // TLS handshake (endpoint.ErrTLS)
	FailureConnLost    FailureKind = "connection_lost" // an established connection broke (ErrConnectionLost)
	FailureRDBVersion  FailureKind = "rdb_version"     // the target refused a DUMP payload (ErrRDBVersion)
	FailureKeyExists   FailureKind = "key_exists"      // BUSYKEY with on-existing=fail (ErrKeyExists)
	FailureClusterDB   FailureKind = "cluster_db"      // SELECT n on a cluster target (endpoint.ErrClusterDB)
	FailureTargetOOM   FailureKind = "target_oom"      // the target hit maxmemory (ErrTargetOOM)
	FailureConfig      FailureKind = "config"          // redis-shake refused its configuration (ErrInvalidConfig)
	FailureCrash       FailureKind = "crash"           // a Go panic on stderr (ErrCrashed)
	FailureExit        FailureKind = "exit"            // a non-zero exit without an error in the log
	FailureOther       FailureKind = "error"           // any other error record
)

// Errors of a failed run, besides the endpoint classes. Every failure
// also wraps ErrFailed.
var (
	ErrFailed         = errors.New("redis-shake failed")
	ErrRDBVersion     = errors.New("target refused the source's RDB version")
	ErrKeyExists      = errors.New("key already exists on the target")
	ErrTargetOOM      = errors.New("target out of memory")
	ErrConnectionLost = errors.New("connection lost")
	ErrCrashed        = errors.New("redis-shake crashed")
)

var kindErrors = map[FailureKind]error{
	FailureAuth:        endpoint.ErrAuth,
	FailurePermission:  endpoint.ErrNoPermission,
	FailureUnreachable: endpoint.ErrUnreachable,
	FailureTLS:         endpoint.ErrTLS,
	FailureConnLost:    ErrConnectionLost,
	FailureRDBVersion:  ErrRDBVersion,
	FailureKeyExists:   ErrKeyExists,
	FailureClusterDB:   endpoint.ErrClusterDB,
	FailureTargetOOM:   ErrTargetOOM,
	FailureConfig:      ErrInvalidConfig,
	FailureCrash:       ErrCrashed,
}

// Side is the endpoint a failure concerns.
type Side string

const (
	SideSource Side = "source"
	SideTarget Side = "target"
)

// Failure is the first error redis-shake reported, classified. Its text is
// sanitized. It is an error: errors.Is matches ErrFailed and the kind's
// class (endpoint.ErrAuth, ErrRDBVersion, ...).
type Failure struct {
	Kind FailureKind `json:"kind"`
	Side Side        `json:"side,omitempty"`
	// Reason says what happened and what to do, for people.
	Reason string `json:"reason"`
	// Message is redis-shake's own first line of the error.
	Message string    `json:"message"`
	Time    time.Time `json:"time,omitzero"`
}

func (f *Failure) Error() string { return f.Reason }

// Unwrap returns ErrFailed and the kind's class.
func (f *Failure) Unwrap() []error {
	if k := kindErrors[f.Kind]; k != nil {
		return []error{ErrFailed, k}
	}
	return []error{ErrFailed}
}

var (
	addrFieldRE  = regexp.MustCompile(`address=\[([^\]\s]*)\]`)
	errFieldRE   = regexp.MustCompile(`.*\b(?:err|error)=\[(.*)\]`) // the last one
	cmdNameRE    = regexp.MustCompile(`cmd=\[([A-Za-z][A-Za-z0-9_.-]*)`)
	nameSideRE   = regexp.MustCompile(`^\[(reader|writer)_`)
	frameSideRE  = regexp.MustCompile(`/(reader|writer)/|New\w*(Reader|Writer)\(`)
	maxReasonLen = 400
)

// classify builds the Failure of an error record from its first line
// (redis-shake's message) and its stack trace.
func classify(r *record, san *Sanitizer) *Failure {
	// Classify the sanitized text: the arguments of a logged command (a
	// value) are gone from it, so they cannot be mistaken for a reply.
	msg := san.Sanitize(r.first)
	f := &Failure{Kind: FailureOther, Time: r.time, Side: side(r), Message: msg}
	cause := msg
	if m := errFieldRE.FindStringSubmatch(msg); m != nil {
		cause = m[1]
	}
	short := shorten(cause)
	where := "the " + string(f.Side)
	if f.Side == "" {
		where = "a server"
	}
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(msg, "WRONGPASS") || strings.Contains(msg, "NOAUTH") ||
		strings.Contains(lower, "invalid password") || strings.Contains(lower, "auth failed"):
		f.Kind = FailureAuth
		f.Reason = "redis-shake could not authenticate to " + where + " (" + short + "): check its username and password"
	case strings.Contains(msg, "NOPERM"):
		f.Kind = FailurePermission
		f.Reason = "the user redis-shake connects to " + where + " with lacks a permission (" + short + "): grant it the commands redis-shake runs"
	case strings.HasPrefix(msg, "dial failed") || strings.Contains(lower, "connection refused") ||
		strings.Contains(lower, "no such host") || strings.Contains(lower, "i/o timeout") ||
		strings.Contains(lower, "no route to host") || strings.Contains(lower, "network is unreachable"):
		f.Kind = FailureUnreachable
		addr := ""
		if m := addrFieldRE.FindStringSubmatch(msg); m != nil {
			addr = " at " + m[1]
		}
		if strings.Contains(lower, "tls: ") || strings.Contains(lower, "x509: ") {
			f.Kind = FailureTLS
			f.Reason = "redis-shake could not set up TLS with " + where + addr + " (" + short + "): check that the endpoint speaks TLS (rediss://) or not (redis://)"
			break
		}
		f.Reason = "redis-shake could not connect to " + where + addr + " (" + lastCause(short) + "): check the address, the port and that the network lets redis-shake's host reach it"
	case strings.Contains(lower, "tls: ") || strings.Contains(lower, "x509: ") ||
		strings.Contains(lower, "first record does not look like a tls handshake"):
		f.Kind = FailureTLS
		f.Reason = "TLS failed with " + where + " (" + short + "): check that the endpoint speaks TLS (rediss://) or not (redis://)"
	case strings.Contains(msg, "DUMP payload version or checksum are wrong") || strings.Contains(msg, "Bad data format"):
		f.Kind = FailureRDBVersion
		f.Reason = "the target refused a key written with RESTORE (" + short + "): the source's RDB version is newer than the target accepts (e.g. Valkey 8 or Redis 7.4+ into Redis 7.0); use redis_shake_sync mode, command mode, or have redis-shake rewrite keys as commands"
	case strings.Contains(msg, "BUSYKEY"):
		f.Kind = FailureKeyExists
		f.Side = SideTarget
		f.Reason = "a key already exists on the target and redis-shake was told to stop on existing keys (" + short + "): empty the target, or choose replace or skip"
	case strings.Contains(msg, "SELECT is not allowed in cluster mode"):
		f.Kind = FailureClusterDB
		f.Side = SideTarget
		f.Reason = "the source has data in a database other than 0 and the target is a cluster, which has only database 0 (" + short + "): copy only database 0 (filter allow_db)"
	case strings.Contains(msg, "OOM command not allowed"):
		f.Kind = FailureTargetOOM
		f.Side = SideTarget
		f.Reason = "the target ran out of memory (" + short + "): raise its maxmemory or use a bigger target"
	case strings.Contains(lower, "connection reset by peer") || strings.Contains(lower, "broken pipe") ||
		msg == "EOF" || strings.HasSuffix(msg, ": EOF") || strings.Contains(lower, "use of closed network connection"):
		f.Kind = FailureConnLost
		f.Reason = "redis-shake lost its connection to " + where + " (" + short + "): check the server's logs (timeout, client-output-buffer-limit, restart) and the network"
	case strings.Contains(lower, "failed to read config file") || strings.Contains(lower, "config file not found"):
		f.Kind = FailureConfig
		f.Reason = "redis-shake refused its configuration (" + short + ")"
	default:
		f.Reason = "redis-shake failed: " + shorten(f.Message)
	}
	if c := cmdNameRE.FindStringSubmatch(msg); c != nil && f.Kind != FailureOther {
		f.Reason = "on " + strings.ToUpper(c[1]) + ": " + f.Reason
	}
	return f
}

// side tells which endpoint an error concerns, from redis-shake's
// [reader_…]/[writer_…] prefix or from the first reader or writer frame
// of the stack trace.
func side(r *record) Side {
	if m := nameSideRE.FindStringSubmatch(r.first); m != nil {
		return sideOf(m[1])
	}
	for _, l := range r.more {
		if m := frameSideRE.FindStringSubmatch(l); m != nil {
			if m[1] != "" {
				return sideOf(m[1])
			}
			return sideOf(strings.ToLower(m[2]))
		}
	}
	return ""
}

func sideOf(s string) Side {
	if s == "reader" {
		return SideSource
	}
	return SideTarget
}

// lastCause keeps the end of a Go network error: "dial tcp 127.0.0.1:1:
// connect: connection refused" → "connection refused".
func lastCause(s string) string {
	if i := strings.LastIndex(s, ": "); i >= 0 && i+2 < len(s) {
		return s[i+2:]
	}
	return s
}

func shorten(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	s = strings.TrimSpace(s)
	if len(s) > maxReasonLen {
		s = dropPartialToken(s, maxReasonLen) + "…"
	}
	return s
}
