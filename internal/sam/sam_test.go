package sam

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const tmpl = `
Transform: AWS::Serverless-2016-10-31
Parameters:
  Timeout: {Type: Number, Default: 300, AllowedValues: [60, 300]}
  Bus: {Type: String, Default: default, AllowedPattern: "^[a-z]+$"}
  Subnets: {Type: "List<AWS::EC2::Subnet::Id>"}
Mappings:
  TaskTimeouts:
    "60": {Seconds: 120}
    "300": {Seconds: 360}
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: functions/fn}
  Table:
    Type: AWS::DynamoDB::Table
  Machine:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionSubstitutions:
        FnArn: !GetAtt Fn.Arn
        FnArnLong: {"Fn::GetAtt": [Fn, Arn]}
        TableName: !Ref Table
        Bus: {Ref: Bus}
        TaskTimeout: !FindInMap [TaskTimeouts, !Ref Timeout, Seconds]
        Literal: hello
        Subnets: !Join ['","', !Ref Subnets]
        Conditional: !If [HasIt, !GetAtt Table.Arn, none]
        Where: !Sub "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${Bus} for ${Fn.Arn}"
  Broken:
    Type: AWS::Serverless::StateMachine
    Properties:
      DefinitionSubstitutions:
        NoDefault: !Ref Subnets
        NoResource: !GetAtt Nope.Arn
        NoAttribute: !GetAtt Table.StreamArn
        NoKey: !FindInMap [TaskTimeouts, "900", Seconds]
Outputs:
  TableName: {Value: !Ref Table}
`

func TestResolveEvaluatesIntrinsicsWithSampleValues(t *testing.T) {
	tp, err := Parse([]byte(tmpl))
	require.NoError(t, err)
	assert.Equal(t, []string{"60", "300"}, tp.Parameters["Timeout"].AllowedValues)
	assert.Equal(t, "^[a-z]+$", tp.Parameters["Bus"].AllowedPattern)
	assert.False(t, tp.Parameters["Subnets"].HasDefault)
	assert.Equal(t, []string{"Broken", "Machine"}, tp.ResourcesOfType("AWS::Serverless::StateMachine"))
	assert.Contains(t, tp.Outputs, "TableName")

	got, err := tp.ResolveSubstitutions("Machine", map[string]string{"Literal": "overridden"})
	require.NoError(t, err)
	fn := "arn:aws:lambda:us-east-1:123456789012:function:Fn"
	assert.Equal(t, map[string]string{
		"FnArn":       fn,
		"FnArnLong":   fn,
		"TableName":   "Table",
		"Bus":         "default",
		"TaskTimeout": "360",
		"Literal":     "overridden",
		"Subnets":     `subnet-0123456789abcdef0","subnet-0fedcba9876543210`,
		"Conditional": "arn:aws:dynamodb:us-east-1:123456789012:table/Table",
		"Where":       "arn:aws:events:us-east-1:123456789012:event-bus/default for " + fn,
	}, got)

	_, err = tp.ResolveSubstitutions("Broken", nil)
	require.Error(t, err)
	for _, want := range []string{
		"NoDefault: parameter Subnets has no default",
		"NoResource: GetAtt Nope.Arn: no such resource",
		"NoAttribute: GetAtt Table.StreamArn",
		"NoKey:",
	} {
		assert.Contains(t, err.Error(), want)
	}
	_, err = tp.ResolveSubstitutions("Missing", nil)
	assert.Error(t, err)
}

func TestParseRefusesWhatIsNotATemplate(t *testing.T) {
	for _, bad := range []string{"", "- a\n- b\n", "a: [", "just text"} {
		_, err := Parse([]byte(bad))
		assert.Error(t, err, "%q", bad)
	}
}

func TestRenderSubstitutesLikeCloudFormation(t *testing.T) {
	def := []byte(`{"Resource": "${FnArn}", "MaxConcurrency": ${Max}, "Again": "${FnArn}", "Literal": "$.x"}`)
	assert.Equal(t, []string{"FnArn", "Max"}, Placeholders(def))

	out, err := Render(def, map[string]string{"FnArn": "arn:x", "Max": "8", "Unused": "u"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"Resource": "arn:x", "MaxConcurrency": 8, "Again": "arn:x", "Literal": "$.x"}`, string(out))

	_, err = Render(def, map[string]string{"FnArn": "arn:x"})
	assert.ErrorContains(t, err, "no value for Max")

	_, err = Render(def, map[string]string{"FnArn": "arn:x", "Max": "eight"})
	assert.ErrorContains(t, err, "not JSON")
}
