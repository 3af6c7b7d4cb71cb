package statemachine

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/kvmigrate/kvmigrate/internal/phase"
	"github.com/kvmigrate/kvmigrate/internal/sam"
)

// The redis-shake modes run shake-task on ECS Fargate: these tests hold the
// two ecs:runTask states, the task definition and shake-task's environment
// (shake-task/main.go: JOB_ID, MODE, TASK_TOKEN, HEARTBEAT_SECONDS)
// together.

const (
	resourceRunTaskSync     = "arn:aws:states:::ecs:runTask.sync"
	resourceRunTaskCallback = "arn:aws:states:::ecs:runTask.waitForTaskToken"
)

func TestTheShakeModesRunShakeTaskOnFargate(t *testing.T) {
	f := load(t)
	sts := f.def["States"].(map[string]any)
	td := f.tmpl.Resources["ShakeTaskDefinition"]
	require.NotNil(t, td, "the template has the shake-task task definition")
	containers := sam.Get(td.Properties, "ContainerDefinitions")
	require.NotNil(t, containers)
	require.Len(t, containers.Content, 1)
	container := containers.Content[0]

	// The task heartbeats its token every HEARTBEAT_SECONDS (the task
	// definition's environment, from Mappings.ShakeTask).
	var heartbeat string
	for _, e := range sam.Get(container, "Environment").Content {
		if scalarAt(e, "Name") == "HEARTBEAT_SECONDS" {
			v, err := f.tmpl.Resolve(sam.Get(e, "Value"))
			require.NoError(t, err)
			heartbeat = v
		}
	}
	require.NotEmpty(t, heartbeat, "the task definition sets HEARTBEAT_SECONDS")

	for _, tc := range []struct {
		state, resource, mode string
	}{
		{"RunShake", resourceRunTaskSync, phase.ModeRedisShake},
		{"RunShakeSync", resourceRunTaskCallback, phase.ModeRedisShakeSync},
	} {
		t.Run(tc.state+" runs mode "+tc.mode, func(t *testing.T) {
			s, ok := sts[tc.state].(map[string]any)
			require.True(t, ok)
			assert.Equal(t, tc.resource, s["Resource"])
			assert.Equal(t, "Validate", s["Next"], "the copy is validated")
			assert.Nil(t, s["ResultPath"], "the task's result stays out of the state")
			assert.Equal(t, f.values["ShakeTaskTimeoutSeconds"], fmt.Sprint(s["TimeoutSeconds"]))

			p := s["Parameters"].(map[string]any)
			assert.Equal(t, "FARGATE", p["LaunchType"])
			assert.Equal(t, f.values["ShakeClusterArn"], p["Cluster"])
			assert.Regexp(t, `^arn:aws:ecs:.*:cluster/ShakeCluster$`, p["Cluster"])
			assert.Equal(t, f.values["ShakeTaskDefinitionArn"], p["TaskDefinition"])
			vpc := p["NetworkConfiguration"].(map[string]any)["AwsvpcConfiguration"].(map[string]any)
			assert.Equal(t, []any{"subnet-0123456789abcdef0", "subnet-0fedcba9876543210"}, vpc["Subnets"], "every subnet of SubnetIds")
			assert.Equal(t, []any{"sg-0123456789abcdef0"}, vpc["SecurityGroups"])
			assert.Equal(t, "DISABLED", vpc["AssignPublicIp"], "private subnets")

			overrides := list(p["Overrides"].(map[string]any)["ContainerOverrides"])
			require.Len(t, overrides, 1)
			o := overrides[0].(map[string]any)
			assert.Equal(t, scalarAt(container, "Name"), o["Name"], "the override names the task definition's container")
			env := map[string]any{}
			for _, e := range list(o["Environment"]) {
				e := e.(map[string]any)
				if v, ok := e["Value.$"]; ok {
					env[e["Name"].(string)+".$"] = v
				} else {
					env[e["Name"].(string)] = e["Value"]
				}
			}
			want := map[string]any{"JOB_ID.$": "$.jobId", "MODE": tc.mode}
			if tc.resource == resourceRunTaskCallback {
				want["TASK_TOKEN.$"] = "$$.Task.Token"
			}
			assert.Equal(t, want, env, "shake-task's environment (shake-task/main.go)")

			if tc.resource == resourceRunTaskCallback {
				hb := number(s["HeartbeatSeconds"])
				assert.Equal(t, f.values["ShakeHeartbeatSeconds"], fmt.Sprint(s["HeartbeatSeconds"]))
				assert.Less(t, hb, number(s["TimeoutSeconds"]))
				param := f.tmpl.Parameters["ShakeHeartbeatSeconds"]
				assert.GreaterOrEqual(t, atoi(t, param.MinValue), 2*atoi(t, heartbeat),
					"HeartbeatSeconds allows at least one missed heartbeat of the task's %ss", heartbeat)
				assert.NotEmpty(t, param.MaxValue)
			} else {
				assert.NotContains(t, s, "HeartbeatSeconds", "nothing heartbeats a .sync task")
			}
		})
	}

	// $$.Task.Token exists in waitForTaskToken states only.
	for _, s := range states(f.def) {
		if s.body["Resource"] == resourceRunTaskCallback {
			continue
		}
		walkJSON(s.body["Parameters"], s.where, func(path, key string, v any) {
			if str, ok := v.(string); ok {
				assert.NotContains(t, str, "$$.Task.Token", "%s: a task token outside a waitForTaskToken task", path)
			}
		})
	}
}

// TestTheModeChoiceRunsEveryMode: each mode goes to its own first state.
func TestTheModeChoiceRunsEveryMode(t *testing.T) {
	f := load(t)
	choice := f.def["States"].(map[string]any)["Mode?"].(map[string]any)
	next := map[string]string{}
	for _, c := range list(choice["Choices"]) {
		c := c.(map[string]any)
		for _, r := range list(c["And"]) {
			if m, ok := r.(map[string]any)["StringEquals"].(string); ok {
				next[m] = c["Next"].(string)
			}
		}
	}
	assert.Equal(t, map[string]string{
		phase.ModeCommand:        "Plan",
		phase.ModeRedisShake:     "RunShake",
		phase.ModeRedisShakeSync: "RunShakeSync",
	}, next)
	assert.Equal(t, "UnknownMode", choice["Default"])
}

// TestTheStateMachineMayRunShakeTasks checks the state machine role's ECS
// permissions: ecs:RunTask of the shake-task family on the cluster,
// iam:PassRole of its two roles to ECS only, and the managed rule of
// ecs:runTask.sync; the task role may report its token.
func TestTheStateMachineMayRunShakeTasks(t *testing.T) {
	tmpl := loadTemplate(t)
	out, err := yaml.Marshal(sam.Get(tmpl.Resources[stateMachineID].Properties, "Policies"))
	require.NoError(t, err)
	policies := string(out)
	for _, want := range []string{
		"Action: ecs:RunTask",
		":task-definition/${AWS::StackName}-shake-task:*",
		"ecs:cluster: !GetAtt ShakeCluster.Arn",
		"Action: iam:PassRole",
		"!GetAtt ShakeExecutionRole.Arn",
		"!GetAtt ShakeTaskRole.Arn",
		"iam:PassedToService: ecs-tasks.amazonaws.com",
		"rule/StepFunctionsGetEventsForECSTaskRule",
	} {
		assert.Contains(t, policies, want)
	}
	assert.Equal(t, "${AWS::StackName}-shake-task", scalarAt(tmpl.Resources["ShakeTaskDefinition"].Properties, "Family"))
	assert.NotEmpty(t, scalarAt(tmpl.Resources["ShakeTaskDefinition"].Properties, "EphemeralStorage", "SizeInGiB"),
		"redis-shake's RDB needs room")

	role, err := yaml.Marshal(sam.Get(tmpl.Resources["ShakeTaskRole"].Properties, "Policies"))
	require.NoError(t, err)
	for _, action := range []string{"states:SendTaskHeartbeat", "states:SendTaskSuccess", "states:SendTaskFailure", "secretsmanager:GetSecretValue", "dynamodb:UpdateItem"} {
		assert.Contains(t, string(role), action)
	}
	assert.Contains(t, string(role), ":secret:${SecretNamePrefix}*")
	assert.False(t, strings.Contains(string(role), "states:*") || strings.Contains(string(role), "dynamodb:*"))
}
