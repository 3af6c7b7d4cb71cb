// Package setup is the wiring the Lambda mains share: their configuration
// from the environment (read once, every problem reported together), the
// AWS clients, the job store and the secret resolver.
package setup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/api/ecstasks"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/job/dynamo"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn/awssecrets"
)

// Environment variables (template.yaml sets them).
const (
	EnvTable            = "TABLE_NAME"
	EnvSecretPrefix     = "SECRET_NAME_PREFIX"
	EnvRetentionDays    = "JOB_RETENTION_DAYS"
	EnvStateMachineARN  = "STATE_MACHINE_ARN"
	EnvEventBus         = "EVENT_BUS_NAME"
	EnvSafetyMarginSecs = "CHUNK_SAFETY_MARGIN_SECONDS"
	EnvStuckTimeoutSecs = "STUCK_JOB_TIMEOUT_SECONDS"
	EnvECSCluster       = "ECS_CLUSTER"
)

// Config is a function's configuration.
type Config struct {
	TableName    string
	SecretPrefix string
	// Retention is how long finished jobs are kept (JOB_RETENTION_DAYS,
	// default job.Retention).
	Retention time.Duration
	// SafetyMargin: see lambdafn.Deps (CHUNK_SAFETY_MARGIN_SECONDS, default
	// lambdafn.DefaultSafetyMargin).
	SafetyMargin time.Duration
	// StuckTimeout: see api.Config (STUCK_JOB_TIMEOUT_SECONDS, default
	// api.DefaultStuckTimeout).
	StuckTimeout time.Duration
	// The api function's: STATE_MACHINE_ARN (required), EVENT_BUS_NAME
	// and ECS_CLUSTER, the redis-shake tasks' cluster (a name or an ARN;
	// "" when the stack has none: no ShakeImageUri).
	StateMachineARN string
	EventBusName    string
	ECSCluster      string
}

// Load reads the configuration from getenv; forAPI says whether it is the api
// function's (which needs the state machine). Every problem is in the one
// error.
func Load(getenv func(string) string, forAPI bool) (Config, error) {
	var problems []string
	require := func(name string) string {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			problems = append(problems, name+" is not set")
		}
		return v
	}
	positive := func(name string, unit time.Duration, def time.Duration) time.Duration {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			problems = append(problems, fmt.Sprintf("%s=%q: want a whole number of at least 1", name, v))
			return def
		}
		return time.Duration(n) * unit
	}
	c := Config{
		TableName:    require(EnvTable),
		SecretPrefix: strings.TrimSpace(getenv(EnvSecretPrefix)),
		Retention:    positive(EnvRetentionDays, 24*time.Hour, job.Retention),
		SafetyMargin: positive(EnvSafetyMarginSecs, time.Second, lambdafn.DefaultSafetyMargin),
		StuckTimeout: positive(EnvStuckTimeoutSecs, time.Second, api.DefaultStuckTimeout),
		EventBusName: strings.TrimSpace(getenv(EnvEventBus)),
	}
	if c.SecretPrefix == "" {
		problems = append(problems, EnvSecretPrefix+" is not set (the secrets' name prefix the functions may read)")
	}
	if forAPI {
		c.StateMachineARN = require(EnvStateMachineARN)
		if c.StateMachineARN != "" && !strings.HasPrefix(c.StateMachineARN, "arn:") {
			problems = append(problems, fmt.Sprintf("%s=%q is not an ARN", EnvStateMachineARN, c.StateMachineARN))
		}
		c.ECSCluster = strings.TrimSpace(getenv(EnvECSCluster))
		if _, err := ecstasks.ClusterName(c.ECSCluster); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", EnvECSCluster, err))
		}
	}
	if len(problems) > 0 {
		return c, errors.New("configuration: " + strings.Join(problems, "; "))
	}
	return c, nil
}

// Getenv is os.Getenv, for Load.
func Getenv(name string) string { return os.Getenv(name) }

// Logger is the functions' JSON logger.
func Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stdout, nil))
}

// AWS loads the AWS configuration of the function's role.
func AWS(ctx context.Context) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return cfg, fmt.Errorf("load the AWS configuration: %w", err)
	}
	return cfg, nil
}

// Deps builds the phase functions' dependencies: the DynamoDB job store
// and the Secrets Manager resolver.
func Deps(aws aws.Config, c Config, log *slog.Logger) (lambdafn.Deps, error) {
	store, err := dynamo.New(dynamodb.NewFromConfig(aws), c.TableName, dynamo.WithLogger(log))
	if err != nil {
		return lambdafn.Deps{}, err
	}
	secrets, err := awssecrets.New(secretsmanager.NewFromConfig(aws), c.SecretPrefix)
	if err != nil {
		return lambdafn.Deps{}, err
	}
	return lambdafn.Deps{Store: store, Secrets: secrets, Log: log, Now: time.Now, SafetyMargin: c.SafetyMargin}, nil
}

// Must ends a main that cannot start, after logging why.
func Must[T any](v T, err error) T {
	if err != nil {
		Logger().Error("cannot start", "error", err.Error())
		os.Exit(1)
	}
	return v
}
