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
	_, err := Load(env(map[string]string{EnvRetentionDays: "zero", EnvStateMachineARN: "machine", EnvECSCluster: "not a cluster"}), true)
	require.Error(t, err)
	for _, want := range []string{EnvTable, EnvSecretPrefix, EnvRetentionDays, EnvStateMachineARN + `="machine" is not an ARN`, EnvECSCluster + `: cluster "not a cluster"`} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestLoadReadsTheTemplatesVariables(t *testing.T) {
	c, err := Load(env(map[string]string{
		EnvTable: "jobs", EnvSecretPrefix: "kvmigrate/", EnvRetentionDays: "7",
		EnvStateMachineARN: "arn:aws:states:us-east-1:123456789012:stateMachine:m", EnvEventBus: "default",
		EnvStuckTimeoutSecs: "3600", EnvECSCluster: "kvmigrate-ShakeCluster-AbC123",
	}), true)
	require.NoError(t, err)
	assert.Equal(t, Config{
		TableName: "jobs", SecretPrefix: "kvmigrate/", Retention: 7 * 24 * time.Hour, SafetyMargin: lambdafn.DefaultSafetyMargin,
		StuckTimeout:    time.Hour,
		StateMachineARN: "arn:aws:states:us-east-1:123456789012:stateMachine:m", EventBusName: "default",
		ECSCluster: "kvmigrate-ShakeCluster-AbC123",
	}, c)

	c, err = Load(env(map[string]string{EnvTable: "jobs", EnvSecretPrefix: "p/"}), false)
	require.NoError(t, err, "the phase functions need no state machine")
	assert.Empty(t, c.ECSCluster, "nor a cluster")
	assert.Equal(t, job.Retention, c.Retention)
	assert.Equal(t, api.DefaultStuckTimeout, c.StuckTimeout, "the template's default")
}

func TestLoadTakesNoClusterForAStackWithoutShakeTasks(t *testing.T) {
	// template.yaml: ECS_CLUSTER is "" without ShakeImageUri.
	c, err := Load(env(map[string]string{
		EnvTable: "jobs", EnvSecretPrefix: "p/", EnvStateMachineARN: "arn:aws:states:us-east-1:123456789012:stateMachine:m", EnvECSCluster: "",
	}), true)
	require.NoError(t, err)
	assert.Empty(t, c.ECSCluster)

	c, err = Load(env(map[string]string{
		EnvTable: "jobs", EnvSecretPrefix: "p/", EnvStateMachineARN: "arn:aws:states:us-east-1:123456789012:stateMachine:m",
		EnvECSCluster: "arn:aws:ecs:us-east-1:123456789012:cluster/kv",
	}), true)
	require.NoError(t, err, "an ARN does too")
	assert.Equal(t, "arn:aws:ecs:us-east-1:123456789012:cluster/kv", c.ECSCluster)
}
