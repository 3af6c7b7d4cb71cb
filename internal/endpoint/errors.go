package endpoint

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/valkey-io/valkey-go"
)

// Error classes of Dial and Conn. Every error wraps one of them (test with
// errors.Is), names the endpoint with its password redacted and says what
// to check.
var (
	// ErrAuth: the server refused the username or password, or wants one.
	ErrAuth = errors.New("authentication failed")
	// ErrUnreachable: no connection (refused, DNS, timeout, no route), or
	// what answers is not a Redis/Valkey server.
	ErrUnreachable = errors.New("server unreachable")
	// ErrTLS: the TLS handshake failed, including TLS spoken to a plain
	// server and plain text to a TLS server.
	ErrTLS = errors.New("TLS failure")
	// ErrClusterDB: a database other than 0 asked of a cluster.
	ErrClusterDB = errors.New("cluster mode has only database 0")
	// ErrClusterMode: cluster=true given for a server that is not a cluster.
	ErrClusterMode = errors.New("cluster mode mismatch")
	// ErrNoPermission: the user may not run a command the connection needs.
	ErrNoPermission = errors.New("permission denied")
	// ErrClosed: the Conn was closed.
	ErrClosed = errors.New("connection closed")
)

// connError carries an actionable, redacted message, its class and its
// cause. errors.Is matches both the class and the cause (for example
// context.DeadlineExceeded or a *valkey.ValkeyError).
type connError struct {
	msg   string
	class error
	cause error
}

func (e *connError) Error() string { return e.msg }
func (e *connError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.class}
	}
	return []error{e.class, e.cause}
}

// newError builds a connError whose message ends with the cause's text in
// parentheses. The message names endpoints through String, which redacts;
// the cause's text is run through Redact and the endpoint's password is
// masked in it, so no server or library text can carry the password out.
// Callers never format a password into the message itself.
func newError(class error, e Endpoint, cause error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if cause != nil {
		msg += " (" + scrub(strings.TrimSpace(cause.Error()), e) + ")"
	}
	return &connError{msg: msg, class: class, cause: cause}
}

// newErrorQuiet is newError without the cause's text, for causes that
// would only repeat the message.
func newErrorQuiet(class error, e Endpoint, cause error, format string, args ...any) error {
	return &connError{msg: fmt.Sprintf(format, args...), class: class, cause: cause}
}

// scrub redacts credentials in s, and the endpoint's password wherever it
// appears verbatim (when it is long enough not to mangle ordinary words).
func scrub(s string, e Endpoint) string {
	s = Redact(s)
	if p := e.password; len(p) >= 4 {
		s = strings.ReplaceAll(s, p, redacted)
	}
	return s
}

// classify turns an error from connecting or from a command run while
// connecting into one of the error classes.
func classify(e Endpoint, err error) error {
	if err == nil {
		return nil
	}
	var ce *connError
	if errors.As(err, &ce) {
		return err
	}
	if verr, ok := valkey.IsValkeyErr(err); ok {
		return classifyReply(e, verr)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("connect to %s: %w", e, err)
	}
	if terr := classifyTLS(e, err); terr != nil {
		return terr
	}
	return classifyNet(e, err)
}

// classifyReply classifies an error reply of the server.
func classifyReply(e Endpoint, verr *valkey.ValkeyError) error {
	msg := verr.Error()
	word, _, _ := strings.Cut(msg, " ")
	lower := strings.ToLower(msg)
	switch {
	case word == "WRONGPASS" || strings.Contains(lower, "invalid password") ||
		strings.Contains(lower, "invalid username-password"):
		return newError(ErrAuth, e, verr, "authentication failed for %s: check the username and password", e)
	case word == "NOAUTH":
		return newErrorQuiet(ErrAuth, e, verr,
			"authentication required by %s: put the password in the URL (%s://user:PASSWORD@host:port) or supply it with WithCredentials", e, e.Scheme)
	case strings.Contains(lower, "without any password configured"):
		return newError(ErrAuth, e, verr,
			"authentication failed for %s: the server has no password set but one was given; remove it from the URL", e)
	case word == "NOPERM":
		who := "the default user"
		if e.Username != "" {
			who = "user " + e.Username
		}
		return newError(ErrNoPermission, e, verr, "permission denied on %s: %s lacks an ACL permission kvmigrate needs", e, who)
	case word == "LOADING":
		return newError(ErrUnreachable, e, verr, "%s is loading its data set into memory: retry when it has finished", e)
	case word == "DENIED":
		return newError(ErrUnreachable, e, verr, "%s refused the connection (protected mode): set a password or bind address on the server", e)
	}
	return newErrorQuiet(verr, e, nil, "connect to %s: the server replied: %s", e, scrub(msg, e))
}

// classifyTLS recognises certificate and handshake failures; nil if err is
// none of those.
func classifyTLS(e Endpoint, err error) error {
	var (
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
		verify    *tls.CertificateVerificationError
	)
	alert, isAlert := tlsAlert(err)
	switch {
	case errors.As(err, &unknownCA):
		return newError(ErrTLS, e, err,
			"TLS: the certificate of %s is signed by an unknown authority: pass its CA with ?tls_ca=/path/to/ca.pem (tls_insecure=true skips verification, for tests only)", e)
	case errors.As(err, &hostErr):
		return newError(ErrTLS, e, err,
			"TLS: the certificate of %s is not valid for %q: set ?tls_server_name= to a name the certificate holds", e, hostErr.Host)
	case errors.As(err, &invalid):
		return newError(ErrTLS, e, err, "TLS: the certificate of %s is not valid", e)
	case isAlert:
		switch {
		case e.TLS.CertFile != "" && (strings.Contains(alert, "unknown certificate authority") || strings.Contains(alert, "bad certificate")):
			return newError(ErrTLS, e, err,
				"TLS: %s does not accept the client certificate in tls_cert: is it signed by a CA the server trusts (its tls-ca-cert-file)?", e)
		case strings.Contains(alert, "certificate required") || strings.Contains(alert, "bad certificate") ||
			// TLS 1.2 servers answer a missing client certificate with a
			// plain handshake failure.
			e.TLS.CertFile == "" && strings.Contains(alert, "handshake failure"):
			return newError(ErrTLS, e, err,
				"TLS: %s requires a client certificate it accepts: set ?tls_cert=/path/cert.pem&tls_key=/path/key.pem", e)
		}
		return newError(ErrTLS, e, err, "TLS handshake with %s failed: the server sent an alert", e)
	case errors.As(err, &record):
		return newError(ErrTLS, e, err,
			"TLS: %s did not answer with TLS: if it is a plain-text server use %s:// instead of %s://", e, plainScheme(e.Scheme), e.Scheme)
	case errors.As(err, &verify):
		return newError(ErrTLS, e, err, "TLS: the certificate of %s could not be verified", e)
	}
	return nil
}

// tlsAlert returns the text of the TLS alert err carries, if any. Over TCP
// crypto/tls reports an alert from the server as a *net.OpError with Op
// "remote error" around an unexported type; tls.AlertError only wraps
// alerts on QUIC connections, and ones this side sent.
func tlsAlert(err error) (string, bool) {
	var alert tls.AlertError
	if errors.As(err, &alert) {
		return alert.Error(), true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		return op.Err.Error(), true
	}
	return "", false
}

// classifyNet classifies a network error.
func classifyNet(e Endpoint, err error) error {
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return newError(ErrUnreachable, e, err, "cannot reach %s: DNS lookup of %q failed: no such host; check the host name", e, e.Host)
		}
		return newError(ErrUnreachable, e, err, "cannot reach %s: DNS lookup of %q failed; check the host name and the resolver", e, e.Host)
	case errors.Is(err, syscall.ECONNREFUSED):
		return newErrorQuiet(ErrUnreachable, e, err, "cannot reach %s: connection refused: is a server listening on %s?", e, e.Addr())
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return newError(ErrUnreachable, e, err, "cannot reach %s: no route to host; check the address, VPC routing and security groups", e)
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		return newError(ErrUnreachable, e, err, "cannot reach %s: timed out; check the host, port, firewall and security groups", e)
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF):
		return newError(ErrUnreachable, e, err, "%s closed the connection: is this a Redis or Valkey port, and does it need TLS (%s://)?", e, tlsScheme(e.Scheme))
	case errors.Is(err, valkey.ErrClosing):
		return newError(ErrUnreachable, e, err, "cannot reach %s", e)
	}
	return newError(ErrUnreachable, e, err, "cannot connect to %s", e)
}

// plainScheme and tlsScheme map a scheme to its plain-text and TLS twin.
func plainScheme(s string) string {
	switch s {
	case "rediss":
		return "redis"
	case "valkeys":
		return "valkey"
	}
	return s
}

func tlsScheme(s string) string {
	switch s {
	case "redis":
		return "rediss"
	case "valkey":
		return "valkeys"
	}
	return s
}
