// Command analyze is the analyze Lambda function (phase 1): it takes a
// phase.AnalyzeInput from the state machine and returns a
// phase.AnalyzeOutput (lambdafn.Analyze). Wiring only.
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
	lambda.Start(lambdafn.Strict(lambdafn.Analyze(deps)))
}
