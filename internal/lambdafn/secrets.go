package lambdafn

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/phase"
)

// SecretResolver turns a payload endpoint (a URL without a password, and
// the secret that holds the credentials, if any) into an endpoint to
// connect with.
//
// Errors never carry the secret's content. They are, or wrap, a phase
// error type where the cause is known (*phase.InvalidInputError: no such
// secret, a malformed one, a secret outside the allowed prefix;
// *phase.AuthError: the secret may not be read; *phase.TransientError:
// the secret store did not answer), so that phase.Classify names them.
// Production: lambdafn/awssecrets (Secrets Manager); tests and `kvmigrate
// serve --secrets`: StaticSecrets.
type SecretResolver interface {
	Resolve(ctx context.Context, e phase.Endpoint) (endpoint.Endpoint, error)
}

// Credentials are what an endpoint's secret holds: Secrets Manager JSON
// {"username": "...", "password": "..."}. They print and log redacted.
type Credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// String shows the username only.
func (c Credentials) String() string {
	return fmt.Sprintf("{username:%q password:xxxxx}", c.Username)
}

// GoString redacts %#v too.
func (c Credentials) GoString() string { return "lambdafn.Credentials" + c.String() }

// LogValue makes slog write the username only.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// ParseCredentials decodes a secret's string. The error says what is wrong
// without quoting the secret.
func ParseCredentials(name, secret string) (Credentials, error) {
	var c Credentials
	dec := json.NewDecoder(strings.NewReader(secret))
	if err := dec.Decode(&c); err != nil || dec.More() {
		return Credentials{}, &phase.InvalidInputError{Err: fmt.Errorf(
			`secret %s is not a JSON object {"username": ..., "password": ...}: %w`, name, job.ErrInvalid)}
	}
	if c.Password == "" {
		return Credentials{}, &phase.InvalidInputError{Err: fmt.Errorf(
			`secret %s has no "password": %w`, name, job.ErrInvalid)}
	}
	return c, nil
}

// WithCredentials parses e.URL and returns it with the credentials of its
// secret: the secret's username when it has one, else the URL's.
func WithCredentials(e phase.Endpoint, c Credentials) (endpoint.Endpoint, error) {
	ep, err := Parse(e)
	if err != nil {
		return ep, err
	}
	user := ep.Username
	if c.Username != "" {
		user = c.Username
	}
	return ep.WithCredentials(user, c.Password), nil
}

// Parse parses e.URL, refusing a URL that carries a password (credentials
// come from secrets only).
func Parse(e phase.Endpoint) (endpoint.Endpoint, error) {
	if err := e.Check(); err != nil {
		return endpoint.Endpoint{}, phase.Classify(err)
	}
	return endpoint.Parse(e.URL)
}

// CheckSecretPrefix refuses a secret ARN whose secret name does not begin
// with prefix (the template's SecretNamePrefix: the functions may read
// those secrets only). An empty prefix allows any name.
func CheckSecretPrefix(arn, prefix string) error {
	if prefix == "" || arn == "" {
		return nil
	}
	_, name, ok := strings.Cut(arn, ":secret:")
	if !ok || !strings.HasPrefix(name, prefix) {
		return fmt.Errorf("secretArn %s: the secret's name must begin with %q (the secrets kvmigrate may read): %w", arn, prefix, job.ErrInvalid)
	}
	return nil
}

// StaticSecrets is a SecretResolver over credentials held in memory,
// keyed by secret ARN: for tests and local runs (kvmigrate serve
// --secrets FILE).
type StaticSecrets map[string]Credentials

// LoadStaticSecrets reads a JSON file {"<secret ARN>": {"username": ...,
// "password": ...}, ...}.
func LoadStaticSecrets(path string) (StaticSecrets, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets file: %w", err)
	}
	var s StaticSecrets
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		// The decoder's message quotes no values, only offsets and names.
		return nil, fmt.Errorf(`secrets file %s: want {"<secret ARN>": {"username": "...", "password": "..."}}: %w`, path, err)
	}
	return s, nil
}

// Resolve returns e with the credentials of its secret.
func (s StaticSecrets) Resolve(_ context.Context, e phase.Endpoint) (endpoint.Endpoint, error) {
	if e.SecretARN == "" {
		return Parse(e)
	}
	c, ok := s[e.SecretARN]
	if !ok {
		return endpoint.Endpoint{}, &phase.InvalidInputError{Err: fmt.Errorf("secret %s does not exist: %w", e.SecretARN, job.ErrInvalid)}
	}
	return WithCredentials(e, c)
}
