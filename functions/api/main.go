// Command api is the api Lambda function: the HTTP API (API Gateway HTTP API
// v2 events, served by internal/api through aws-lambda-go-api-proxy), the
// EventBridge "MigrationRequested" events and the Step Functions execution
// status changes (api.HandleEvent); it stops the redis-shake jobs' ECS
// tasks on a cutover or a stop (api/ecstasks). Wiring only.
package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/kvmigrate/kvmigrate/functions/internal/setup"
	"github.com/kvmigrate/kvmigrate/internal/api"
	"github.com/kvmigrate/kvmigrate/internal/api/ecstasks"
	"github.com/kvmigrate/kvmigrate/internal/api/sfnexec"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
	"github.com/kvmigrate/kvmigrate/internal/phase"
)

func main() {
	log := setup.Logger()
	cfg := setup.Must(setup.Load(setup.Getenv, true))
	awsCfg := setup.Must(setup.AWS(context.Background()))
	deps := setup.Must(setup.Deps(awsCfg, cfg, log))
	executions := setup.Must(sfnexec.New(sfn.NewFromConfig(awsCfg), cfg.StateMachineARN))
	// The redis-shake jobs' tasks: stopped on a cutover or a stop.
	tasks := setup.Must(ecstasks.New(ecs.NewFromConfig(awsCfg), cfg.ECSCluster))
	a := setup.Must(api.New(api.Config{
		Store:           deps.Store,
		Executions:      executions,
		Revalidate:      lambdafn.Revalidate(deps),
		SecretPrefix:    cfg.SecretPrefix,
		StateMachineARN: cfg.StateMachineARN,
		Retention:       cfg.Retention,
		StuckTimeout:    cfg.StuckTimeout,
		Tasks:           tasks,
		Log:             log,
	}))
	lambda.Start(handler(a))
}

// handler routes the function's events: an HTTP API request (it has a
// routeKey) to the HTTP handler, an EventBridge event (it has a
// detail-type) to api.HandleEvent.
func handler(a *api.API) func(context.Context, json.RawMessage) (any, error) {
	proxy := httpadapter.NewV2(a)
	return func(ctx context.Context, raw json.RawMessage) (any, error) {
		var probe struct {
			RouteKey   string `json:"routeKey"`
			DetailType string `json:"detail-type"`
		}
		if err := json.Unmarshal(raw, &probe); err != nil {
			return nil, &phase.InvalidInputError{Err: fmt.Errorf("the event is not a JSON object: %w", err)}
		}
		switch {
		case probe.RouteKey != "":
			var req events.APIGatewayV2HTTPRequest
			if err := json.Unmarshal(raw, &req); err != nil {
				return nil, &phase.InvalidInputError{Err: fmt.Errorf("decode the HTTP API event: %w", err)}
			}
			return proxy.ProxyWithContext(ctx, req)
		case probe.DetailType != "":
			var ev events.CloudWatchEvent
			if err := json.Unmarshal(raw, &ev); err != nil {
				return nil, &phase.InvalidInputError{Err: fmt.Errorf("decode the EventBridge event: %w", err)}
			}
			return nil, phase.Classify(a.HandleEvent(ctx, ev))
		}
		return nil, &phase.InvalidInputError{Err: fmt.Errorf("neither an HTTP API request (routeKey) nor an EventBridge event (detail-type)")}
	}
}
