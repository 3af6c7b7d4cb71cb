package main

// The AWS side of shake-task, and the only file that imports the AWS SDK:
// the clients, and the task token calls to Step Functions.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/kvmigrate/kvmigrate/internal/job/dynamo"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn/awssecrets"
)

// newDeps builds the clients of the task role: the DynamoDB job store,
// Secrets Manager for the endpoints' credentials, Step Functions for the
// task token.
func newDeps(ctx context.Context, cfg config, log *slog.Logger) (deps, error) {
	ac, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return deps{}, fmt.Errorf("load the AWS configuration: %w", err)
	}
	store, err := dynamo.New(dynamodb.NewFromConfig(ac), cfg.Table, dynamo.WithLogger(log))
	if err != nil {
		return deps{}, err
	}
	secrets, err := awssecrets.New(secretsmanager.NewFromConfig(ac), cfg.SecretPrefix)
	if err != nil {
		return deps{}, err
	}
	d := deps{store: store, secrets: secrets, tokens: sfnTokens{sfn.NewFromConfig(ac)}, log: log}
	if d.taskARN, err = taskARN(ctx, os.Getenv("ECS_CONTAINER_METADATA_URI_V4")); err != nil {
		log.Warn("this task's ARN is unknown (ECS task metadata)", "error", err.Error())
	}
	return d, nil
}

// taskARN reads this task's ARN from the ECS task metadata endpoint (v4)
// that ECS gives every container; "" outside ECS.
func taskARN(ctx context.Context, metadataURI string) (string, error) {
	if metadataURI == "" {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metadataURI+"/task", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("task metadata: %s", resp.Status)
	}
	var meta struct {
		TaskARN string `json:"TaskARN"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&meta); err != nil {
		return "", fmt.Errorf("task metadata: %w", err)
	}
	return meta.TaskARN, nil
}

// sfnAPI is what sfnTokens needs of a *sfn.Client.
type sfnAPI interface {
	SendTaskHeartbeat(context.Context, *sfn.SendTaskHeartbeatInput, ...func(*sfn.Options)) (*sfn.SendTaskHeartbeatOutput, error)
	SendTaskSuccess(context.Context, *sfn.SendTaskSuccessInput, ...func(*sfn.Options)) (*sfn.SendTaskSuccessOutput, error)
	SendTaskFailure(context.Context, *sfn.SendTaskFailureInput, ...func(*sfn.Options)) (*sfn.SendTaskFailureOutput, error)
}

// sfnTokens is taskTokens over Step Functions.
type sfnTokens struct{ c sfnAPI }

func (s sfnTokens) Heartbeat(ctx context.Context, token string) error {
	_, err := s.c.SendTaskHeartbeat(ctx, &sfn.SendTaskHeartbeatInput{TaskToken: aws.String(token)})
	return tokenError("heartbeat", err)
}

func (s sfnTokens) Succeed(ctx context.Context, token, output string) error {
	_, err := s.c.SendTaskSuccess(ctx, &sfn.SendTaskSuccessInput{TaskToken: aws.String(token), Output: aws.String(output)})
	return tokenError("success", err)
}

func (s sfnTokens) Fail(ctx context.Context, token, name, cause string) error {
	_, err := s.c.SendTaskFailure(ctx, &sfn.SendTaskFailureInput{
		TaskToken: aws.String(token), Error: aws.String(cut(name, 256)), Cause: aws.String(cut(cause, 32768)),
	})
	return tokenError("failure", err)
}

// tokenError wraps errTokenGone around the errors that say the execution
// no longer waits for the token.
func tokenError(call string, err error) error {
	if err == nil {
		return nil
	}
	var (
		timedOut *sfntypes.TaskTimedOut
		missing  *sfntypes.TaskDoesNotExist
		invalid  *sfntypes.InvalidToken
	)
	if errors.As(err, &timedOut) || errors.As(err, &missing) || errors.As(err, &invalid) {
		return fmt.Errorf("send task %s: %w: %w", call, errTokenGone, err)
	}
	return fmt.Errorf("send task %s: %w", call, err)
}
