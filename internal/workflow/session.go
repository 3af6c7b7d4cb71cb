package workflow

import (
	"context"
	"log/slog"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/topology"
	"github.com/kvmigrate/kvmigrate/internal/transfer"
	"github.com/kvmigrate/kvmigrate/internal/validation"
)

// Session is a connected source and target with the copier of one job, as
// the local workflow builds it for a run: the Lambda steps (plan, chunk,
// validate) open one per invocation, so that they copy and compare exactly
// as a local run does. Close it when done.
type Session struct{ s *session }

// Open connects to req.Source and req.Target, discovers both, and builds
// the copier of job id with req.Options. Errors say which side failed.
func Open(ctx context.Context, id string, req Request, log *slog.Logger) (*Session, error) {
	s, err := (&Local{Log: log}).open(ctx, id, req)
	if err != nil {
		return nil, err
	}
	return &Session{s: s}, nil
}

// Copier copies the job's chunks (see CopyChunk).
func (s *Session) Copier() *transfer.Copier { return s.s.copier }

// Source and Target are the connections.
func (s *Session) Source() *endpoint.Conn { return s.s.src }
func (s *Session) Target() *endpoint.Conn { return s.s.dst }

// SourceInfo and TargetInfo are what discovery found.
func (s *Session) SourceInfo() topology.Info { return s.s.sinfo }
func (s *Session) TargetInfo() topology.Info { return s.s.dinfo }

// Plan returns the job's shards, each from cursor "0" (see transfer.Plan).
func (s *Session) Plan() ([]transfer.Chunk, error) {
	return transfer.Plan(s.s.sinfo, s.s.dinfo, s.s.dbs)
}

// ValidationOptions returns o with the databases, the database mapping
// and the copy filters (Match, Type) of the job set, as the local run's
// validation step sets them.
func (s *Session) ValidationOptions(o validation.Options) validation.Options {
	return s.s.validationOptions(o)
}

// validationOptions returns o with the job's databases, database mapping
// and copy filters set: the validation checks what the copy copied.
func (s *session) validationOptions(o validation.Options) validation.Options {
	o.DBs, o.TargetDB = s.dbs, s.targetDB
	o.Match, o.Type = s.match, s.typ
	return o
}

// Close closes both connections.
func (s *Session) Close() { s.s.close() }
