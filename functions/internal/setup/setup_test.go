package setup

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadReportsEveryProblemTogether(t *testing.T) {
	_, err := Load(env(map[string]string{EnvRetentionDays: "zero", EnvStateMachineARN: "machine"}), true)
	require.Error(t, err)
	for _, want := range []string{EnvTable, EnvSecretPrefix, EnvRetentionDays, EnvStateMachineARN + `="machine" is not an ARN`} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestLoadReadsTheTemplatesVariables(t *testing.T) {
	c, err := Load(env(map[string]string{
		EnvTable: "jobs", EnvSecretPrefix: "kvmigrate/", EnvRetentionDays: "7",
		EnvStateMachineARN: "arn:aws:states:us-east-1:123456789012:stateMachine:m", EnvEventBus: "default",
		EnvStuckTimeoutSecs: "3600",
	}), true)
	require.NoError(t, err)
	assert.Equal(t, Config{
		TableName: "jobs", SecretPrefix: "kvmigrate/", Retention: 7 * 24 * time.Hour, SafetyMargin: lambdafn.DefaultSafetyMargin,
		StuckTimeout:    time.Hour,
		StateMachineARN: "arn:aws:states:us-east-1:123456789012:stateMachine:m", EventBusName: "default",
	}, c)

	c, err = Load(env(map[string]string{EnvTable: "jobs", EnvSecretPrefix: "p/"}), false)
	require.NoError(t, err, "the phase functions need no state machine")
	assert.Equal(t, job.Retention, c.Retention)
	assert.Equal(t, api.DefaultStuckTimeout, c.StuckTimeout, "the template's default")
}
