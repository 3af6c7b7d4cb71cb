// Command validate is the validate Lambda function (phase 3): it takes a
// phase.ValidateInput from the state machine and returns a
// phase.ValidateOutput. Wiring only; the work is in internal/.
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
	lambda.Start(func(ctx context.Context, raw json.RawMessage) (*phase.ValidateOutput, error) {
		var in phase.ValidateInput
		if err := phase.Decode(raw, &in); err != nil {
			return nil, err
		}
		log.InfoContext(ctx, "validate", "jobId", in.JobID)
		// TODO(issue 5, next slice): run internal/validation against the
		// job's endpoints, store the report, return its summary.
		return nil, &phase.UnsupportedError{Err: errors.New("validate: not implemented yet")}
	})
}
