// Command execute-chunk is the execute-chunk Lambda function (phase 2,
// command mode): a phase.PlanInput returns the job's shards, a
// phase.ChunkInput copies one chunk of one shard until the invocation's
// deadline minus a safety margin (lambdafn.Execute). Wiring only.
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/kvmigrate/kvmigrate/functions/internal/setup"
	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
)

func main() {
	log := setup.Logger()
	cfg := setup.Must(setup.Load(setup.Getenv, false))
	deps := setup.Must(setup.Deps(setup.Must(setup.AWS(context.Background())), cfg, log))
	lambda.Start(lambdafn.Execute(deps))
}
