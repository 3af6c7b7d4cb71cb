package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/analysis"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/validation"
)

// EndpointView is an endpoint as the API shows it: the URL (which never
// holds a password) and the secret's ARN.
type EndpointView struct {
	URL       string `json:"url"`
	SecretARN string `json:"secretArn,omitempty"`
}

// JobView is a job as GET /migrations lists it.
type JobView struct {
	ID           string       `json:"id"`
	Kind         job.Kind     `json:"kind"`
	Status       job.Status   `json:"status"`
	Stage        string       `json:"stage,omitempty"`
	Mode         string       `json:"mode,omitempty"`
	Source       EndpointView `json:"source"`
	Target       EndpointView `json:"target"`
	Options      job.Options  `json:"options"`
	Counters     job.Counters `json:"counters"`
	Error        string       `json:"error,omitempty"`
	CreatedAt    time.Time    `json:"createdAt"`
	UpdatedAt    time.Time    `json:"updatedAt"`
	StartedAt    time.Time    `json:"startedAt,omitzero"`
	FinishedAt   time.Time    `json:"finishedAt,omitzero"`
	ExpireAt     time.Time    `json:"expireAt,omitzero"`
	ExecutionARN string       `json:"executionArn,omitempty"`
	// Request is a request the job's process has yet to act on (cutover,
	// stop; redis-shake modes).
	Request string `json:"request,omitempty"`
	// Shake is redis-shake's progress (redis-shake modes only): phase,
	// keys, ops/s, scan %, RDB bytes, replication diff, ready for cutover.
	Shake *job.Progress `json:"shake,omitempty"`
}

func view(j job.Job) JobView {
	v := JobView{
		ID: j.ID, Kind: j.Kind, Status: j.Status, Stage: j.Stage, Mode: j.Mode,
		Source:  EndpointView{URL: j.Source, SecretARN: j.SourceSecretRef},
		Target:  EndpointView{URL: j.Target, SecretARN: j.TargetSecretRef},
		Options: j.Options, Counters: j.Counters, Error: j.Error,
		CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt, StartedAt: j.StartedAt, FinishedAt: j.FinishedAt, ExpireAt: j.ExpireAt,
		ExecutionARN: j.ExecutionARN, Request: j.Request,
	}
	if j.Mode == job.ModeRedisShake || j.Mode == job.ModeRedisShakeSync {
		p := j.Progress
		v.Shake = &p
	}
	return v
}

// MigrationView is the answer of GET /migrations/{id}.
type MigrationView struct {
	JobView
	// Progress sums up the shards (absent before they are planned).
	Progress *Progress `json:"progress,omitempty"`
	// Shards are the per-shard checkpoints: cursor, done, counters, and the
	// shard's key count from the analysis.
	Shards []ShardView `json:"shards"`
	// Analysis is the analysis's verdict and its findings, with their data
	// (absent until it has run).
	Analysis *AnalysisSummary `json:"analysis,omitempty"`
	// Validation is the validation's verdict (absent until it has run).
	Validation *ValidationSummary `json:"validation,omitempty"`
}

// Progress sums up a migration's shards.
type Progress struct {
	Shards     int `json:"shards"`
	ShardsDone int `json:"shardsDone"`
	// EstimatedKeys is the analysis's count of keys to copy; KeysDone the
	// keys copied, skipped, failed or expired so far.
	EstimatedKeys int64 `json:"estimatedKeys"`
	KeysDone      int64 `json:"keysDone"`
}

// ShardView is one shard's checkpoint.
type ShardView struct {
	Node   string `json:"node"`
	DB     int    `json:"db"`
	Cursor string `json:"cursor"`
	Done   bool   `json:"done"`
	// Keys is the shard's key count when analyzed (0 when unknown).
	Keys      int64        `json:"keys"`
	Counters  job.Counters `json:"counters"`
	UpdatedAt time.Time    `json:"updatedAt,omitzero"`
}

// AnalysisSummary is the analysis's verdict in a migration's view.
type AnalysisSummary struct {
	Blocking      bool               `json:"blocking"`
	EstimatedKeys int64              `json:"estimatedKeys"`
	Findings      []analysis.Finding `json:"findings"`
}

// ValidationSummary is the validation's verdict in a migration's view.
type ValidationSummary struct {
	Passed                 bool    `json:"passed"`
	KeyCountDiscrepancyPct float64 `json:"keyCountDiscrepancyPct"`
	// Filter is the copy filter the validation honoured (the job's
	// match/type): the key counts are of the keys it selects. Absent:
	// every key.
	Filter *validation.Filter `json:"filter,omitempty"`
	// IssueCount counts every issue; Issues lists the first maxIssues.
	IssueCount int                `json:"issueCount"`
	Issues     []validation.Issue `json:"issues"`
	// CountOnly counts the big keys compared by type, TTL and length only.
	CountOnly   int       `json:"countOnly"`
	Sampled     int       `json:"sampled"`
	ValidatedAt time.Time `json:"validatedAt"`
}

const maxIssues = 50

// migration builds the view of migration j from its shards and reports.
func (a *API) migration(ctx context.Context, j job.Job) (MigrationView, error) {
	v := MigrationView{JobView: view(j), Shards: []ShardView{}}
	rep, err := report[analysis.Report](ctx, a.cfg.Store, j.ID, job.ReportAnalysis)
	if err != nil {
		return v, err
	}
	keys := map[string]int64{}
	if rep != nil {
		v.Analysis = &AnalysisSummary{Blocking: rep.Blocking, EstimatedKeys: rep.EstimatedKeys, Findings: rep.Findings}
		if v.Analysis.Findings == nil {
			v.Analysis.Findings = []analysis.Finding{}
		}
		for _, s := range rep.Shards {
			keys[shardKey(s.Node, s.DB)] = s.Keys
		}
	}
	shards, err := a.cfg.Store.Shards(ctx, j.ID)
	if err != nil {
		return v, err
	}
	if len(shards) > 0 {
		p := &Progress{Shards: len(shards)}
		if rep != nil {
			p.EstimatedKeys = rep.EstimatedKeys
		}
		for _, s := range shards {
			v.Shards = append(v.Shards, ShardView{Node: s.Node, DB: s.DB, Cursor: s.Cursor, Done: s.Done,
				Keys: keys[shardKey(s.Node, s.DB)], Counters: s.Counters, UpdatedAt: s.UpdatedAt})
			if s.Done {
				p.ShardsDone++
			}
			c := s.Counters
			p.KeysDone += c.Copied + c.Skipped + c.Failed + c.Expired
		}
		v.Progress = p
	}
	vrep, err := report[validation.Report](ctx, a.cfg.Store, j.ID, job.ReportValidation)
	if err != nil {
		return v, err
	}
	if vrep != nil {
		s := &ValidationSummary{
			Passed: vrep.Passed, KeyCountDiscrepancyPct: vrep.KeyCountDiscrepancyPct, Filter: vrep.Filter,
			IssueCount: len(vrep.Issues) + vrep.IssuesOmitted, Issues: vrep.Issues[:min(len(vrep.Issues), maxIssues)],
			CountOnly: len(vrep.CountOnly), Sampled: vrep.Sample.Sampled, ValidatedAt: vrep.StartedAt,
		}
		if s.Issues == nil {
			s.Issues = []validation.Issue{}
		}
		v.Validation = s
	}
	return v, nil
}

func shardKey(node string, db int) string { return fmt.Sprintf("%s/%d", node, db) }

// AnalysisView is the answer of GET /analyses/{id}: the job and, once it
// is analyzed, the full analysis report (README "Analysis report").
type AnalysisView struct {
	JobView
	Report json.RawMessage `json:"report,omitempty"`
}

func (a *API) analysis(ctx context.Context, j job.Job) AnalysisView {
	v := AnalysisView{JobView: view(j)}
	body, err := a.cfg.Store.Report(ctx, j.ID, job.ReportAnalysis)
	switch {
	case err == nil && json.Valid(body):
		v.Report = body
	case err != nil && !errors.Is(err, job.ErrNotFound):
		a.log.WarnContext(ctx, "read the analysis report", "jobId", j.ID, "error", err.Error())
	}
	return v
}

// report reads and decodes a stored report; nil when there is none.
func report[T any](ctx context.Context, store job.Store, id, name string) (*T, error) {
	body, err := store.Report(ctx, id, name)
	if errors.Is(err, job.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("job %s: decode its %s report: %w", id, name, err)
	}
	return &v, nil
}
