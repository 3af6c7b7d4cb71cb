package statemachine

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/kvmigrate/kvmigrate/internal/job/dynamo"
	"github.com/kvmigrate/kvmigrate/internal/sam"
)

// The template's shape. cfn-lint and `sam validate --lint` check it
// against CloudFormation (scripts/aws-lint.sh); these tests check the
// project's own rules, offline.

func loadTemplate(t *testing.T) *sam.Template {
	t.Helper()
	tmpl, err := sam.Load(templatePath)
	require.NoError(t, err)
	return tmpl
}

func scalarAt(n *yaml.Node, keys ...string) string {
	v := sam.Get(n, keys...)
	if v == nil {
		return ""
	}
	return v.Value
}

func globalsFunction(t *testing.T, tmpl *sam.Template, keys ...string) *yaml.Node {
	t.Helper()
	n := sam.Get(tmpl.Globals, append([]string{"Function"}, keys...)...)
	require.NotNil(t, n, "Globals.Function.%s", strings.Join(keys, "."))
	return n
}

func TestFunctionsAreGoOnGraviton(t *testing.T) {
	tmpl := loadTemplate(t)
	assert.Equal(t, "provided.al2023", globalsFunction(t, tmpl, "Runtime").Value)
	assert.Equal(t, "bootstrap", globalsFunction(t, tmpl, "Handler").Value)
	arch := globalsFunction(t, tmpl, "Architectures")
	require.Len(t, arch.Content, 1)
	assert.Equal(t, "arm64", arch.Content[0].Value)
	assert.Equal(t, "JSON", globalsFunction(t, tmpl, "LoggingConfig", "LogFormat").Value)
	assert.Equal(t, "SubnetIds", globalsFunction(t, tmpl, "VpcConfig", "SubnetIds").Value)
	assert.Equal(t, "SecurityGroupIds", globalsFunction(t, tmpl, "VpcConfig", "SecurityGroupIds").Value)

	fns := tmpl.ResourcesOfType("AWS::Serverless::Function")
	assert.ElementsMatch(t, []string{"ApiFunction", "AnalyzeFunction", "ExecuteChunkFunction", "ValidateFunction"}, fns)
	logGroups := map[string]string{}
	for _, id := range fns {
		t.Run(id, func(t *testing.T) {
			r := tmpl.Resources[id]
			assert.Equal(t, "go1.x", scalarAt(r.Metadata, "BuildMethod"))
			dir := scalarAt(r.Properties, "CodeUri")
			require.True(t, strings.HasPrefix(dir, "functions/"), "CodeUri %q", dir)
			src, err := os.ReadFile(filepath.Join("..", dir, "main.go"))
			require.NoError(t, err, "sam build compiles %s/main.go", dir)
			assert.Contains(t, string(src), "package main")

			lg := sam.Get(r.Properties, "LoggingConfig", "LogGroup")
			require.NotNil(t, lg, "an explicit log group")
			fn, arg := sam.Intrinsic(lg)
			require.Equal(t, "Ref", fn)
			group, ok := tmpl.Resources[arg.Value]
			require.True(t, ok, "log group %s", arg.Value)
			assert.Equal(t, "AWS::Logs::LogGroup", group.Type)
			assert.Equal(t, "LogRetentionDays", scalarAt(group.Properties, "RetentionInDays"))
			assert.NotContains(t, logGroups, arg.Value, "log group shared with %s", logGroups[arg.Value])
			logGroups[arg.Value] = id
		})
	}
}

func TestParametersAreBounded(t *testing.T) {
	tmpl := loadTemplate(t)
	for name, p := range tmpl.Parameters {
		switch {
		case strings.HasPrefix(p.Type, "List<AWS::"):
			// CloudFormation checks the ids exist in the account.
		case p.Type == "Number":
			assert.True(t, len(p.AllowedValues) > 0 || p.MinValue != "" && p.MaxValue != "", "%s: a Number needs AllowedValues or MinValue and MaxValue", name)
		case p.Type == "String":
			assert.True(t, len(p.AllowedValues) > 0 || p.AllowedPattern != "", "%s: a String needs AllowedValues or AllowedPattern", name)
		default:
			t.Errorf("%s: unexpected parameter type %s", name, p.Type)
		}
	}
	for _, name := range []string{
		"SubnetIds", "SecurityGroupIds", "FunctionTimeoutSeconds", "MapMaxConcurrency", "StuckJobTimeoutSeconds",
		"JobRetentionDays", "LogRetentionDays", "SecretNamePrefix", "ShakeImageUri",
	} {
		assert.Contains(t, tmpl.Parameters, name)
	}
	assert.Equal(t, "7200", tmpl.Parameters["StuckJobTimeoutSeconds"].Default, "stuck jobs: 2 h by default")
}

func TestTheTableIsTheDynamoStoresTable(t *testing.T) {
	tmpl := loadTemplate(t)
	tables := tmpl.ResourcesOfType("AWS::DynamoDB::Table")
	require.Equal(t, []string{"JobTable"}, tables)
	p := tmpl.Resources["JobTable"].Properties
	assert.Equal(t, "PAY_PER_REQUEST", scalarAt(p, "BillingMode"))
	assert.Equal(t, dynamo.TTLAttribute, scalarAt(p, "TimeToLiveSpecification", "AttributeName"))
	assert.Equal(t, "true", scalarAt(p, "TimeToLiveSpecification", "Enabled"))
	assert.Equal(t, "true", scalarAt(p, "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled"))
	assert.Equal(t, "true", scalarAt(p, "SSESpecification", "SSEEnabled"))

	keys := func(n *yaml.Node) []string {
		var out []string
		for _, k := range n.Content {
			out = append(out, scalarAt(k, "AttributeName")+"/"+scalarAt(k, "KeyType"))
		}
		return out
	}
	assert.Equal(t, []string{"PK/HASH", "SK/RANGE"}, keys(sam.Get(p, "KeySchema")))
	gsis := sam.Get(p, "GlobalSecondaryIndexes")
	require.Len(t, gsis.Content, 1)
	assert.Equal(t, dynamo.IndexName, scalarAt(gsis.Content[0], "IndexName"))
	assert.Equal(t, []string{"GSI1PK/HASH", "GSI1SK/RANGE"}, keys(sam.Get(gsis.Content[0], "KeySchema")))
	for _, d := range sam.Get(p, "AttributeDefinitions").Content {
		assert.Equal(t, "S", scalarAt(d, "AttributeType"), "key attributes are strings")
	}
}

// TestPoliciesAreScoped: no statement grants an action on every resource,
// except the few actions that have no resource-level permissions.
func TestPoliciesAreScoped(t *testing.T) {
	tmpl := loadTemplate(t)
	unscoped := []string{
		"logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
		"logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
		"xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets",
	}
	statements := 0
	var visit func(where string, n *yaml.Node)
	visit = func(where string, n *yaml.Node) {
		if n == nil {
			return
		}
		if fn, arg := sam.Intrinsic(n); fn == "If" {
			for _, branch := range arg.Content[1:] {
				visit(where, branch)
			}
			return
		}
		if n.Kind == yaml.SequenceNode {
			for _, c := range n.Content {
				visit(where, c)
			}
			return
		}
		if st := sam.Get(n, "Statement"); st != nil {
			visit(where, st)
			return
		}
		action := sam.Get(n, "Action")
		if action == nil {
			return
		}
		statements++
		var actions []string
		if action.Kind == yaml.SequenceNode {
			for _, a := range action.Content {
				actions = append(actions, a.Value)
			}
		} else {
			actions = []string{action.Value}
		}
		for _, a := range actions {
			assert.NotContains(t, a, "*", "%s: wildcard action %s", where, a)
		}
		if scalarAt(n, "Resource") == "*" {
			for _, a := range actions {
				assert.Contains(t, unscoped, a, "%s: %s on every resource", where, a)
			}
		}
	}
	for id, r := range tmpl.Resources {
		visit(id, sam.Get(r.Properties, "Policies"))
	}
	assert.Greater(t, statements, 10)

	// Every function reads secrets under the prefix only (the api for
	// POST /migrations/{id}/validations).
	for _, id := range []string{"ApiFunction", "AnalyzeFunction", "ExecuteChunkFunction", "ValidateFunction"} {
		out, err := yaml.Marshal(sam.Get(tmpl.Resources[id].Properties, "Policies"))
		require.NoError(t, err)
		assert.Contains(t, string(out), ":secret:${SecretNamePrefix}*", id)
		assert.Contains(t, string(out), "Action: secretsmanager:GetSecretValue", id)
		assert.NotContains(t, string(out), "secretsmanager:*", "%s: GetSecretValue only", id)
	}
}

func TestOutputs(t *testing.T) {
	tmpl := loadTemplate(t)
	var names []string
	for name := range tmpl.Outputs {
		names = append(names, name)
	}
	for _, want := range []string{"ApiUrl", "StateMachineArn", "TableName"} {
		assert.True(t, slices.Contains(names, want), "output %s", want)
	}
}
