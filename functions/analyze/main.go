// Command analyze is the analyze Lambda function (phase 1): it takes a
// phase.AnalyzeInput from the state machine and returns a
// phase.AnalyzeOutput. Wiring only; the work is in internal/.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/kvmigrate/kvmigrate/internal/phase"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))
	lambda.Start(func(ctx context.Context, raw json.RawMessage) (*phase.AnalyzeOutput, error) {
		var in phase.AnalyzeInput
		if err := phase.Decode(raw, &in); err != nil {
			return nil, err
		}
		log.InfoContext(ctx, "analyze", "jobId", in.JobID, "mode", in.Options.Mode)
		// TODO(issue 5, next slice): load the config once, resolve the
		// endpoint secrets, run internal/analysis, store the report, mark
		// the job, and return its summary.
		return nil, &phase.UnsupportedError{Err: errors.New("analyze: not implemented yet")}
	})
}
