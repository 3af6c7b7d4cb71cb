package phase

import (
	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
)

// Job returns the record of the job that an execution of in runs, as the
// API (or the analyze function, for an execution started without one)
// creates it: status pending; an analysis job when Options.AnalysisOnly,
// a migration job otherwise; the endpoints in their canonical, redacted
// form (they carry no password: Check refuses one) with the secret ARNs as
// secret refs; the options that the later steps, which get only the job
// id, need. in must pass Check.
func (in AnalyzeInput) Job() (job.Job, error) {
	src, err := endpoint.Parse(in.Source.URL)
	if err != nil {
		return job.Job{}, inField("source", &FieldError{Field: "url", Err: err})
	}
	dst, err := endpoint.Parse(in.Target.URL)
	if err != nil {
		return job.Job{}, inField("target", &FieldError{Field: "url", Err: err})
	}
	j := job.Job{
		ID:              in.JobID,
		Kind:            job.KindMigration,
		Mode:            in.Options.Mode,
		Source:          src.String(),
		Target:          dst.String(),
		SourceSecretRef: in.Source.SecretARN,
		TargetSecretRef: in.Target.SecretARN,
		Options:         in.Options.JobOptions(),
	}
	if in.Options.AnalysisOnly {
		j.Kind, j.Mode = job.KindAnalysis, ""
	}
	return j, nil
}

// JobOptions returns the job record's form of o (Mode and AnalysisOnly are
// the job's Mode and Kind instead).
func (o Options) JobOptions() job.Options {
	return job.Options{
		Strategy:    o.Strategy,
		OnConflict:  o.OnConflict,
		Match:       o.Match,
		Type:        o.Type,
		MaxOps:      o.MaxOps,
		Concurrency: o.Concurrency,
		Force:       o.Force,
		ChunkKeys:   o.ChunkKeys,
		SampleSize:  o.SampleSize,
	}
}

// JobEndpoints returns the payload form of a job record's endpoints: its
// stored URLs with its secret refs.
func JobEndpoints(j job.Job) (src, dst Endpoint) {
	return Endpoint{URL: j.Source, SecretARN: j.SourceSecretRef}, Endpoint{URL: j.Target, SecretARN: j.TargetSecretRef}
}
