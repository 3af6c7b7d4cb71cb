// Package awssecrets resolves endpoint credentials from AWS Secrets
// Manager: the production lambdafn.SecretResolver. A secret holds JSON
// {"username": "...", "password": "..."}; its name must begin with the
// allowed prefix (the template's SecretNamePrefix).
package awssecrets

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
	"github.com/kvmigrate/kvmigrate/internal/phase"
)

// Client is what the Resolver needs of a *secretsmanager.Client.
type Client interface {
	GetSecretValue(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

var _ Client = (*secretsmanager.Client)(nil)

// CacheTTL is how long a warm function keeps credentials it has read.
const CacheTTL = 5 * time.Minute

// Resolver is a lambdafn.SecretResolver over Secrets Manager. It keeps the
// credentials it read for CacheTTL (failures are not kept). Safe for
// concurrent use.
type Resolver struct {
	client Client
	prefix string
	now    func() time.Time

	mu    sync.Mutex
	cache map[string]entry
}

type entry struct {
	creds lambdafn.Credentials
	at    time.Time
}

var _ lambdafn.SecretResolver = (*Resolver)(nil)

// New returns a Resolver that reads secrets whose names begin with prefix
// ("" allows any).
func New(client Client, prefix string) (*Resolver, error) {
	if client == nil {
		return nil, errors.New("awssecrets: no Secrets Manager client")
	}
	return &Resolver{client: client, prefix: prefix, now: time.Now, cache: map[string]entry{}}, nil
}

// Resolve returns e with the credentials of its secret (e itself, parsed,
// when it names none).
func (r *Resolver) Resolve(ctx context.Context, e phase.Endpoint) (endpoint.Endpoint, error) {
	if e.SecretARN == "" {
		return lambdafn.Parse(e)
	}
	if err := lambdafn.CheckSecretPrefix(e.SecretARN, r.prefix); err != nil {
		return endpoint.Endpoint{}, &phase.InvalidInputError{Err: err}
	}
	c, err := r.credentials(ctx, e.SecretARN)
	if err != nil {
		return endpoint.Endpoint{}, err
	}
	return lambdafn.WithCredentials(e, c)
}

func (r *Resolver) credentials(ctx context.Context, arn string) (lambdafn.Credentials, error) {
	r.mu.Lock()
	c, ok := r.cache[arn]
	r.mu.Unlock()
	if ok && r.now().Sub(c.at) < CacheTTL {
		return c.creds, nil
	}
	out, err := r.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return lambdafn.Credentials{}, classify(arn, err)
	}
	if out.SecretString == nil {
		return lambdafn.Credentials{}, &phase.InvalidInputError{Err: fmt.Errorf(
			"secret %s holds binary data: store JSON {\"username\": ..., \"password\": ...} as its string: %w", arn, job.ErrInvalid)}
	}
	creds, err := lambdafn.ParseCredentials(arn, *out.SecretString)
	if err != nil {
		return creds, err
	}
	r.mu.Lock()
	r.cache[arn] = entry{creds: creds, at: r.now()}
	r.mu.Unlock()
	return creds, nil
}

// classify names a Secrets Manager error for Step Functions. The SDK's
// messages quote no secret value.
func classify(arn string, err error) error {
	wrapped := fmt.Errorf("read secret %s: %w", arn, err)
	var notFound *types.ResourceNotFoundException
	var invalidReq *types.InvalidRequestException
	var invalidParam *types.InvalidParameterException
	var decrypt *types.DecryptionFailure
	var internal *types.InternalServiceError
	var apiErr smithy.APIError
	switch {
	case errors.As(err, &notFound):
		return &phase.InvalidInputError{Err: fmt.Errorf("secret %s does not exist: %w", arn, err)}
	case errors.As(err, &invalidReq), errors.As(err, &invalidParam):
		// Marked for deletion, say.
		return &phase.InvalidInputError{Err: wrapped}
	case errors.As(err, &decrypt):
		return &phase.AuthError{Err: fmt.Errorf("read secret %s: its KMS key may not be used to decrypt it: %w", arn, err)}
	case errors.As(err, &internal):
		return &phase.TransientError{Err: wrapped}
	case errors.As(err, &apiErr):
		switch apiErr.ErrorCode() {
		case "AccessDeniedException", "AccessDenied", "UnrecognizedClientException", "ExpiredTokenException":
			return &phase.AuthError{Err: fmt.Errorf("read secret %s: access denied (the function may read the secrets under the allowed prefix only): %w", arn, err)}
		case "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded", "ServiceUnavailable":
			return &phase.TransientError{Err: wrapped}
		}
		if apiErr.ErrorFault() == smithy.FaultServer {
			return &phase.TransientError{Err: wrapped}
		}
		return wrapped
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return wrapped
	}
	// No answer from the service (network, DNS, retries exhausted).
	return &phase.TransientError{Err: wrapped}
}
