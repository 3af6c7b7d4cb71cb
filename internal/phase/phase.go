// Package phase defines the JSON contract between the Step Functions state
// machine (statemachine/migration.asl.json) and the Lambda functions: the
// execution's state document, each function's input and output payload, the
// events the state machine emits, and the error types whose Go type names
// become Step Functions error names.
//
// Every field has an explicit camelCase json tag, and the ASL's JSONPaths
// refer only to those tags (statemachine's tests hold the two together).
// Payloads stay small (Step Functions caps state at 256 KB): reports and
// per-shard progress go to the job store, the state carries ids, cursors and
// short summaries.
//
// The package imports no AWS code.
package phase

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/kvmigrate/kvmigrate/internal/topology"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/transfer"
)

// Execution is the state document of one state machine execution (JSONPath
// "$" at the top level; the execution name is the job id). The API starts an
// execution with the embedded AnalyzeInput only; the state machine adds the
// other fields with ResultPath as it goes.
type Execution struct {
	AnalyzeInput
	// Analysis keeps blocking, findings and estimatedKeys of the analyze
	// output (the shards are planned again by PlanInput).
	Analysis *AnalyzeOutput `json:"analysis,omitempty"`
	// Plan is the execute-chunk plan: the Map state iterates over its shards.
	Plan *PlanOutput `json:"plan,omitempty"`
	// Validation keeps passed, issues and keyCountDiscrepancyPct.
	Validation *ValidateOutput `json:"validation,omitempty"`
	// Error is what a Catch caught (or what a Pass state set for a refusal
	// that is not a task error); the failure path records it.
	Error *StateError `json:"error,omitempty"`
}

// StateError is the error output of a Step Functions Catch.
type StateError struct {
	Error string `json:"Error"`
	Cause string `json:"Cause"`
}

// Endpoint is a source or target in a payload: a URL without a password,
// and the Secrets Manager secret that holds the credentials (JSON with
// "username" and "password"), if the server needs any.
type Endpoint struct {
	// URL is a redis://, rediss://, valkey:// or valkeys:// URL; it may name
	// a user, never a password.
	URL       string `json:"url"`
	SecretARN string `json:"secretArn,omitempty"`
}

// Execution modes (Options.Mode).
const (
	ModeCommand        = job.ModeCommand
	ModeRedisShake     = job.ModeRedisShake
	ModeRedisShakeSync = job.ModeRedisShakeSync
)

// Bounds of Options. Zero means "the default" for every bounded setting.
const (
	// MaxKeyConcurrency bounds Options.Concurrency (keys in flight per shard).
	MaxKeyConcurrency = 512
	// MaxOpsLimit bounds Options.MaxOps (commands per second on the source).
	MaxOpsLimit = 1_000_000
	// MinSampleSize and MaxSampleSize bound Options.SampleSize (analysis).
	MinSampleSize = 1_000
	MaxSampleSize = 50_000
	// MaxChunkKeys bounds Options.ChunkKeys (keys one chunk invocation copies
	// at most before it checkpoints and returns).
	MaxChunkKeys = 10_000_000
)

// Options are the caller's choices for a job. In AWS the number of shards
// copied at once is the stack's MapMaxConcurrency, not a job option.
type Options struct {
	// Mode is ModeCommand, ModeRedisShake or ModeRedisShakeSync; it may be
	// empty for an analysis-only job.
	Mode string `json:"mode"`
	// AnalysisOnly ends the execution after Analyze.
	AnalysisOnly bool `json:"analysisOnly"`
	// Force runs a migration despite blocking findings.
	Force bool `json:"force"`

	Strategy   string `json:"strategy,omitempty"`   // auto (default), dump, commands
	OnConflict string `json:"onConflict,omitempty"` // replace (default), skip
	Match      string `json:"match,omitempty"`      // SCAN MATCH glob
	Type       string `json:"type,omitempty"`       // SCAN TYPE filter
	// MaxOps: source commands per second, 0 = no limit; ≤ MaxOpsLimit.
	MaxOps int `json:"maxOps,omitempty"`
	// Concurrency: keys in flight per shard, 0 = default; ≤ MaxKeyConcurrency.
	Concurrency int `json:"concurrency,omitempty"`
	// SampleSize: keys the analysis samples, 0 = default; MinSampleSize..MaxSampleSize.
	SampleSize int `json:"sampleSize,omitempty"`
	// ChunkKeys: keys per chunk invocation at most, 0 = until the deadline; ≤ MaxChunkKeys.
	ChunkKeys int `json:"chunkKeys,omitempty"`
}

// AnalyzeInput is the analyze function's payload, and the execution input.
type AnalyzeInput struct {
	JobID   string   `json:"jobId"`
	Source  Endpoint `json:"source"`
	Target  Endpoint `json:"target"`
	Options Options  `json:"options"`
}

// Finding is a finding of the analysis in short form. The full report
// (with the data behind each finding) is in the job store.
type Finding struct {
	Category string `json:"category"`
	Severity string `json:"severity"` // SeverityBlocking, SeverityWarning, SeverityInfo
	Message  string `json:"message"`
}

// Finding severities.
const (
	SeverityBlocking = "blocking"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// Size bounds of AnalyzeOutput.Findings, which the state carries.
const (
	MaxFindings       = 20
	MaxFindingMessage = 500
)

// Shard is one source master and database.
type Shard struct {
	Node string `json:"node"`
	DB   int    `json:"db"`
}

// AnalyzeOutput is the analyze function's result. The function stores the
// full report in the job store and moves the job to analyzed, except for a
// migration that the gate will stop (Blocking and not Options.Force): that
// one it leaves analyzing, and the state machine records it blocked.
type AnalyzeOutput struct {
	JobID string `json:"jobId"`
	// Blocking: at least one blocking finding (the gate refuses the
	// migration unless Options.Force).
	Blocking bool `json:"blocking"`
	// Findings: blocking ones first, at most MaxFindings.
	Findings      []Finding `json:"findings"`
	Shards        []Shard   `json:"shards,omitempty"`
	EstimatedKeys int64     `json:"estimatedKeys"`
}

// ActionPlan is PlanInput.Action.
const ActionPlan = "plan"

// PlanInput asks the execute-chunk function for the job's shards with their
// checkpointed cursors ("0" for a shard not started); finished shards are
// left out. Planning moves the job from analyzed to running (a resumed job
// is running already).
type PlanInput struct {
	JobID  string `json:"jobId"`
	Action string `json:"action"`
}

// PlanOutput is the plan: one ChunkInput per shard still to copy.
type PlanOutput struct {
	Shards []ChunkInput `json:"shards"`
}

// ChunkInput asks the execute-chunk function to copy one chunk of a shard
// from a SCAN cursor.
type ChunkInput struct {
	JobID  string `json:"jobId"`
	Node   string `json:"node"`
	DB     int    `json:"db"`
	Cursor string `json:"cursor"`
}

// ChunkOutput is one chunk's result; its ChunkInput part is the next chunk's
// input. A chunk copies until its invocation deadline minus a safety margin,
// checkpoints the cursor in the job store and returns: running out of time
// is not an error. Counters are this chunk's (the job store has the totals).
type ChunkOutput struct {
	ChunkInput
	Done    bool  `json:"done"`
	Copied  int64 `json:"copied"`
	Skipped int64 `json:"skipped"`
	Failed  int64 `json:"failed"`
}

// ValidateInput asks the validate function to check the job's target. It
// moves the job from running to validating; the state machine records the
// end (succeeded, or failed when validation did not pass).
type ValidateInput struct {
	JobID string `json:"jobId"`
}

// ValidateOutput is the validation summary; the issues themselves are in
// the validation report in the job store.
type ValidateOutput struct {
	JobID                  string  `json:"jobId"`
	Passed                 bool    `json:"passed"`
	Issues                 int     `json:"issues"`
	KeyCountDiscrepancyPct float64 `json:"keyCountDiscrepancyPct"`
}

// EventSource is the source of the events the state machine emits, and
// the detail types it uses; EventMigrationRequested is the detail type the
// api function accepts to start a migration.
const (
	EventSource             = "kvmigrate"
	EventMigrationSucceeded = "Migration Succeeded"
	EventMigrationFailed    = "Migration Failed"
	EventMigrationBlocked   = "Migration Blocked"
	EventMigrationRequested = "MigrationRequested"
)

// Event is the detail of an event the state machine emits.
type Event struct {
	JobID      string          `json:"jobId"`
	Status     job.Status      `json:"status"`
	Error      *StateError     `json:"error,omitempty"`
	Findings   []Finding       `json:"findings,omitempty"`
	Validation *ValidateOutput `json:"validation,omitempty"`
}

// Decode decodes a payload strictly (unknown fields are refused: they mean
// the ASL and this package have drifted apart) and checks it. Errors are
// *InvalidInputError.
func Decode(data []byte, v interface{ Check() error }) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &InvalidInputError{Err: fmt.Errorf("decode %T: %w", v, err)}
	}
	if dec.More() {
		return &InvalidInputError{Err: fmt.Errorf("decode %T: data after the JSON value", v)}
	}
	if err := v.Check(); err != nil {
		return Classify(err)
	}
	return nil
}

// DecodeExecute decodes the execute-chunk function's payload: a *PlanInput
// (action "plan") or a *ChunkInput (no action).
func DecodeExecute(data []byte) (any, error) {
	var probe struct {
		Action *string `json:"action"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, &InvalidInputError{Err: fmt.Errorf("decode execute-chunk payload: %w", err)}
	}
	if probe.Action != nil {
		var in PlanInput
		return &in, Decode(data, &in)
	}
	var in ChunkInput
	return &in, Decode(data, &in)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), job.ErrInvalid)
}

// FieldError names the payload field at fault, as a JSON path of the
// payload's tags ("options.mode", "source.secretArn"). The Check methods
// return one (wrapped in nothing else) for every refusal of a field's
// value; the HTTP API reports Field in its 400 answers. It wraps the
// refusal, so errors.Is(err, job.ErrInvalid) holds and Classify makes it
// an *InvalidInputError as before.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// invalidField is invalid for one field.
func invalidField(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: invalid(format, args...)}
}

// inField prefixes the message of err with prefix and, when err is a
// *FieldError, its field with prefix and a dot.
func inField(prefix string, err error) error {
	if fe, ok := errors.AsType[*FieldError](err); ok {
		return &FieldError{Field: prefix + "." + fe.Field, Err: fmt.Errorf("%s: %w", prefix, fe.Err)}
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// jobID is what a job id may be in a payload: a valid job.ID (and Step
// Functions execution name) that the copier also accepts in its temporary
// key names (no '_', at most 64 characters; see transfer.Options.JobID).
var jobID = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// ValidJobID reports whether id can name a job in the payloads (job.NewID
// ids and UUIDs can).
func ValidJobID(id string) bool { return jobID.MatchString(id) && job.ValidID(id) }

func checkJobID(id string) error {
	if !ValidJobID(id) {
		return invalidField("jobId", "jobId %q: want 1 to 64 characters of [A-Za-z0-9-]", id)
	}
	return nil
}

// secretARN matches a Secrets Manager secret ARN.
var secretARN = regexp.MustCompile(`^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$`)

// Check refuses a missing or invalid URL, a URL with a password and a
// malformed secret ARN.
func (e Endpoint) Check() error {
	if e.URL == "" {
		return invalidField("url", "url is required")
	}
	ep, err := endpoint.Parse(e.URL)
	if err != nil {
		return &FieldError{Field: "url", Err: fmt.Errorf("url: %w", err)}
	}
	if ep.Password() != "" {
		return invalidField("url", "url %s holds a password: store the credentials in a Secrets Manager secret and pass its secretArn", ep)
	}
	if e.SecretARN != "" && !secretARN.MatchString(e.SecretARN) {
		return invalidField("secretArn", "secretArn %q is not a Secrets Manager secret ARN", e.SecretARN)
	}
	return nil
}

// Check checks the mode and that every bounded setting is within bounds.
func (o Options) Check() error {
	switch o.Mode {
	case ModeCommand, ModeRedisShake, ModeRedisShakeSync:
	case "":
		if !o.AnalysisOnly {
			return invalidField("options.mode", "options.mode is required: %s, %s or %s", ModeCommand, ModeRedisShake, ModeRedisShakeSync)
		}
	default:
		return invalidField("options.mode", "options.mode %q: want %s, %s or %s", o.Mode, ModeCommand, ModeRedisShake, ModeRedisShakeSync)
	}
	if o.Strategy != "" && !slices.Contains([]transfer.Strategy{transfer.StrategyAuto, transfer.StrategyDump, transfer.StrategyCommands}, transfer.Strategy(o.Strategy)) {
		return invalidField("options.strategy", "options.strategy %q: want %s, %s or %s", o.Strategy, transfer.StrategyAuto, transfer.StrategyDump, transfer.StrategyCommands)
	}
	if o.OnConflict != "" && !slices.Contains([]transfer.Conflict{transfer.ConflictReplace, transfer.ConflictSkip}, transfer.Conflict(o.OnConflict)) {
		return invalidField("options.onConflict", "options.onConflict %q: want %s or %s", o.OnConflict, transfer.ConflictReplace, transfer.ConflictSkip)
	}
	if err := topology.CheckKeyType(o.Type); err != nil {
		return invalidField("options.type", "options.%s", err)
	}
	for _, b := range []struct {
		name     string
		v        int
		min, max int
	}{
		{"maxOps", o.MaxOps, 0, MaxOpsLimit},
		{"concurrency", o.Concurrency, 0, MaxKeyConcurrency},
		{"chunkKeys", o.ChunkKeys, 0, MaxChunkKeys},
	} {
		if b.v < b.min || b.v > b.max {
			return invalidField("options."+b.name, "options.%s %d: want %d to %d", b.name, b.v, b.min, b.max)
		}
	}
	if o.SampleSize != 0 && (o.SampleSize < MinSampleSize || o.SampleSize > MaxSampleSize) {
		return invalidField("options.sampleSize", "options.sampleSize %d: want 0 (default) or %d to %d", o.SampleSize, MinSampleSize, MaxSampleSize)
	}
	return nil
}

// Check checks every field.
func (in *AnalyzeInput) Check() error {
	if err := checkJobID(in.JobID); err != nil {
		return err
	}
	if err := in.Source.Check(); err != nil {
		return inField("source", err)
	}
	if err := in.Target.Check(); err != nil {
		return inField("target", err)
	}
	return in.Options.Check()
}

// Check checks the size bounds of what the state carries.
func (out *AnalyzeOutput) Check() error {
	if err := checkJobID(out.JobID); err != nil {
		return err
	}
	if len(out.Findings) > MaxFindings {
		return invalid("%d findings: at most %d go into the state", len(out.Findings), MaxFindings)
	}
	for i, f := range out.Findings {
		if len(f.Message) > MaxFindingMessage {
			return invalid("finding %d: message of %d bytes, at most %d", i, len(f.Message), MaxFindingMessage)
		}
		if !slices.Contains([]string{SeverityBlocking, SeverityWarning, SeverityInfo}, f.Severity) {
			return invalid("finding %d: severity %q", i, f.Severity)
		}
	}
	return nil
}

// Check checks the job id and the action.
func (in *PlanInput) Check() error {
	if err := checkJobID(in.JobID); err != nil {
		return err
	}
	if in.Action != ActionPlan {
		return invalidField("action", "action %q: want %q (or no action for a chunk)", in.Action, ActionPlan)
	}
	return nil
}

// Check checks every shard.
func (out *PlanOutput) Check() error {
	for i := range out.Shards {
		if err := out.Shards[i].Check(); err != nil {
			return fmt.Errorf("shard %d: %w", i, err)
		}
	}
	return nil
}

// Check checks the job id, node, database and cursor.
func (in *ChunkInput) Check() error {
	if err := checkJobID(in.JobID); err != nil {
		return err
	}
	if in.Node == "" {
		return invalidField("node", "node is required")
	}
	if in.DB < 0 {
		return invalidField("db", "db %d: want 0 or more", in.DB)
	}
	if in.Cursor == "" {
		return invalidField("cursor", "cursor is required (\"0\" to start)")
	}
	return nil
}

// Check checks the chunk part.
func (out *ChunkOutput) Check() error { return out.ChunkInput.Check() }

// Check checks the job id.
func (in *ValidateInput) Check() error { return checkJobID(in.JobID) }

// Check checks the job id.
func (out *ValidateOutput) Check() error { return checkJobID(out.JobID) }
