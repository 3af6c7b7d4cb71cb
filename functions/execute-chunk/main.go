// Command execute-chunk is the execute-chunk Lambda function (phase 2,
// command mode): a phase.PlanInput returns the job's shards
// (phase.PlanOutput); a phase.ChunkInput copies one chunk of one shard and
// returns a phase.ChunkOutput. Wiring only; the work is in internal/.
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
	lambda.Start(func(ctx context.Context, raw json.RawMessage) (any, error) {
		in, err := phase.DecodeExecute(raw)
		if err != nil {
			return nil, err
		}
		switch in := in.(type) {
		case *phase.PlanInput:
			log.InfoContext(ctx, "plan", "jobId", in.JobID)
			// TODO(issue 5, next slice): plan the shards from the job's
			// checkpoints (transfer.Plan for a new job).
		case *phase.ChunkInput:
			log.InfoContext(ctx, "chunk", "jobId", in.JobID, "node", in.Node, "db", in.DB, "cursor", in.Cursor)
			// TODO(issue 5, next slice): copy from the cursor until the
			// invocation deadline minus a safety margin, checkpoint, return.
		}
		return nil, &phase.UnsupportedError{Err: errors.New("execute-chunk: not implemented yet")}
	})
}
