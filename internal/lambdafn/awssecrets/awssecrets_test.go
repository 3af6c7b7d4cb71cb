package awssecrets_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/awstest"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn/awssecrets"
	"github.com/kvmigrate/kvmigrate/internal/phase"
)

func TestResolverReadsSecretsManager(t *testing.T) {
	ctx := context.Background()
	sm := secretsmanager.NewFromConfig(awstest.Config(awstest.StartMoto(t)))
	create := func(name, value string) string {
		out, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)})
		require.NoError(t, err)
		return aws.ToString(out.ARN)
	}
	good := create("kvmigrate/target", `{"username":"app","password":"s3cret-Pw"}`)
	noUser := create("kvmigrate/source", `{"password":"only-Pw"}`)
	notJSON := create("kvmigrate/plain", `s3cret-plain`)
	outside := create("other/target", `{"username":"app","password":"s3cret-Pw"}`)
	binOut, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("kvmigrate/binary"), SecretBinary: []byte{1, 2}})
	require.NoError(t, err)

	r, err := awssecrets.New(sm, "kvmigrate/")
	require.NoError(t, err)

	t.Run("applies the secret's credentials to the URL", func(t *testing.T) {
		e, err := r.Resolve(ctx, phase.Endpoint{URL: "valkeys://10.0.0.9:6380?cluster=true", SecretARN: good})
		require.NoError(t, err)
		assert.Equal(t, "app", e.Username)
		assert.Equal(t, "s3cret-Pw", e.Password())
		assert.Equal(t, "valkeys://app:xxxxx@10.0.0.9:6380?cluster=true", e.String())
	})
	t.Run("keeps the URL's user when the secret has none", func(t *testing.T) {
		e, err := r.Resolve(ctx, phase.Endpoint{URL: "redis://ops@10.0.0.1", SecretARN: noUser})
		require.NoError(t, err)
		assert.Equal(t, "ops", e.Username)
		assert.Equal(t, "only-Pw", e.Password())
	})
	t.Run("needs no secret for a server without a password", func(t *testing.T) {
		e, err := r.Resolve(ctx, phase.Endpoint{URL: "redis://10.0.0.1"})
		require.NoError(t, err)
		assert.Empty(t, e.Password())
	})
	t.Run("keeps what it read for a while", func(t *testing.T) {
		_, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(good), SecretString: aws.String(`{"password":"rotated"}`)})
		require.NoError(t, err)
		e, err := r.Resolve(ctx, phase.Endpoint{URL: "redis://10.0.0.1", SecretARN: good})
		require.NoError(t, err)
		assert.Equal(t, "s3cret-Pw", e.Password())
		fresh, err := awssecrets.New(sm, "kvmigrate/")
		require.NoError(t, err)
		e, err = fresh.Resolve(ctx, phase.Endpoint{URL: "redis://10.0.0.1", SecretARN: good})
		require.NoError(t, err)
		assert.Equal(t, "rotated", e.Password())
	})
	for _, tc := range []struct {
		name string
		e    phase.Endpoint
		want any
	}{
		{"refuses a secret that does not exist", phase.Endpoint{URL: "redis://h", SecretARN: good[:len(good)-6] + "zzzzzz"}, &phase.InvalidInputError{}},
		{"refuses a secret outside the allowed prefix", phase.Endpoint{URL: "redis://h", SecretARN: outside}, &phase.InvalidInputError{}},
		{"refuses a secret that is not JSON, without quoting it", phase.Endpoint{URL: "redis://h", SecretARN: notJSON}, &phase.InvalidInputError{}},
		{"refuses a binary secret", phase.Endpoint{URL: "redis://h", SecretARN: aws.ToString(binOut.ARN)}, &phase.InvalidInputError{}},
		{"refuses a URL with a password", phase.Endpoint{URL: "redis://u:s3cret-inline@h"}, &phase.InvalidInputError{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Resolve(ctx, tc.e)
			require.Error(t, err)
			assert.IsType(t, tc.want, phase.Classify(err))
			assert.NotContains(t, err.Error(), "s3cret")
		})
	}
	t.Run("says a secret store that does not answer is transient", func(t *testing.T) {
		down := secretsmanager.NewFromConfig(awstest.Config("http://127.0.0.1:1"), func(o *secretsmanager.Options) { o.RetryMaxAttempts = 1 })
		r, err := awssecrets.New(down, "kvmigrate/")
		require.NoError(t, err)
		_, err = r.Resolve(ctx, phase.Endpoint{URL: "redis://h", SecretARN: good})
		assert.IsType(t, &phase.TransientError{}, phase.Classify(err))
	})
}
