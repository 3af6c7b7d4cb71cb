// Command api is the api Lambda function: the HTTP API (API Gateway HTTP API
// v2 events), EventBridge "MigrationRequested" events and Step Functions
// execution status changes. Wiring only; the work is in internal/.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/kvmigrate/kvmigrate/internal/phase"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	lambda.Start(func(ctx context.Context, raw json.RawMessage) (any, error) {
		var probe struct {
			RouteKey   string `json:"routeKey"`
			DetailType string `json:"detail-type"`
		}
		if err := json.Unmarshal(raw, &probe); err != nil {
			return nil, &phase.InvalidInputError{Err: err}
		}
		// TODO(issue 5, next slice): serve internal/api through
		// aws-lambda-go-api-proxy and handle both EventBridge events.
		if probe.RouteKey != "" {
			log.InfoContext(ctx, "http", "route", probe.RouteKey)
			return events.APIGatewayV2HTTPResponse{
				StatusCode: http.StatusNotImplemented,
				Headers:    map[string]string{"Content-Type": "application/json"},
				Body:       `{"error":"not implemented yet"}`,
			}, nil
		}
		log.InfoContext(ctx, "event", "detailType", probe.DetailType)
		return nil, &phase.UnsupportedError{Err: errors.New("api: events are not handled yet")}
	})
}
