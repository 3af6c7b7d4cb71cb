package awstest

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/kvtest"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStartMoto(t *testing.T) {
	var url string
	t.Run("serves the DynamoDB API on loopback with dummy credentials", func(t *testing.T) {
		url = StartMoto(t)
		assert.Regexp(t, `^http://127\.0\.0\.1:\d+$`, url)

		ctx := context.Background()
		db := dynamodb.NewFromConfig(Config(url))
		_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName:            aws.String("awstest"),
			BillingMode:          types.BillingModePayPerRequest,
			AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("PK"), AttributeType: types.ScalarAttributeTypeS}},
			KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("PK"), KeyType: types.KeyTypeHash}},
		})
		require.NoError(t, err)
		out, err := db.ListTables(ctx, &dynamodb.ListTablesInput{})
		require.NoError(t, err)
		assert.Equal(t, []string{"awstest"}, out.TableNames)
	})
	if url == "" {
		return // skipped: moto is not installed
	}
	t.Run("stops the server when the test ends", func(t *testing.T) {
		client := &http.Client{Timeout: time.Second}
		_, err := client.Get(url + "/moto-api/")
		assert.Error(t, err, "nothing listens on %s any more", url)
	})
	t.Run("applies concurrent updates of one item one at a time, as DynamoDB does", func(t *testing.T) {
		ctx := context.Background()
		db := dynamodb.NewFromConfig(Config(StartMoto(t)))
		_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName:            aws.String("counters"),
			BillingMode:          types.BillingModePayPerRequest,
			AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("PK"), AttributeType: types.ScalarAttributeTypeS}},
			KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("PK"), KeyType: types.KeyTypeHash}},
		})
		require.NoError(t, err)
		k := map[string]types.AttributeValue{"PK": &types.AttributeValueMemberS{Value: "c"}}
		const n = 200
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				_, err := db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
					TableName:                 aws.String("counters"),
					Key:                       k,
					UpdateExpression:          aws.String("ADD a :one, b :one, c :one"),
					ExpressionAttributeValues: map[string]types.AttributeValue{":one": &types.AttributeValueMemberN{Value: "1"}},
				})
				assert.NoError(t, err)
			})
		}
		wg.Wait()
		out, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("counters"), Key: k, ConsistentRead: aws.Bool(true)})
		require.NoError(t, err)
		for _, name := range []string{"a", "b", "c"} {
			assert.Equal(t, &types.AttributeValueMemberN{Value: strconv.Itoa(n)}, out.Item[name], "no ADD lost on %s", name)
		}
	})
	t.Run("starts an empty server each time", func(t *testing.T) {
		out, err := dynamodb.NewFromConfig(Config(StartMoto(t))).ListTables(context.Background(), &dynamodb.ListTablesInput{})
		require.NoError(t, err)
		assert.Empty(t, out.TableNames)
	})
}

func TestStartMotoWithoutMoto(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-python")
	t.Run("skips outside CI with the command that installs moto", func(t *testing.T) {
		t.Setenv(PythonEnv, missing)
		t.Setenv("CI", "")
		r := kvtest.RunTB(func(tb testing.TB) { StartMoto(tb) })
		assert.Contains(t, r.SkipMsg, InstallHint)
		assert.Empty(t, r.FatalMsg)
	})
	t.Run("fails in CI", func(t *testing.T) {
		t.Setenv(PythonEnv, missing)
		t.Setenv("CI", "true")
		r := kvtest.RunTB(func(tb testing.TB) { StartMoto(tb) })
		assert.Contains(t, r.FatalMsg, InstallHint)
		assert.Empty(t, r.SkipMsg)
	})
}

func TestConfigReachesOnlyTheEndpoint(t *testing.T) {
	cfg := Config("http://127.0.0.1:1")
	require.NotNil(t, cfg.BaseEndpoint)
	assert.Equal(t, "http://127.0.0.1:1", *cfg.BaseEndpoint)
	creds, err := cfg.Credentials.Retrieve(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "AKIAIOSFODNN7EXAMPLE", creds.AccessKeyID, "static dummy credentials, never the environment's")
}

func TestMakeTestInstallsThePinnedMoto(t *testing.T) {
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, dir, parent, "no go.mod above the package")
		dir = parent
	}
	script, err := os.ReadFile(filepath.Join(dir, "Makefile"))
	require.NoError(t, err)
	assert.Contains(t, string(script), "'moto[server]=="+MotoVersion+"'", "make test installs the version the tests are pinned to")
}
