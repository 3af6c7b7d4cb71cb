package api

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/kvmigrate/kvmigrate/internal/lambdafn"
	"github.com/kvmigrate/kvmigrate/internal/phase"
)

// EndpointRequest is a source or target in a request.
type EndpointRequest struct {
	// URL: redis://, rediss://, valkey:// or valkeys://, with a user if the
	// server needs one, never a password.
	URL string `json:"url"`
	// SecretARN names the Secrets Manager secret with the credentials
	// (JSON {"username", "password"}), if the server needs any.
	SecretARN string `json:"secretArn,omitempty"`
	// Password is refused: it is here to say so clearly.
	Password json.RawMessage `json:"password,omitempty"`
}

// MigrationOptions are the options of a migration request.
type MigrationOptions struct {
	Strategy    string `json:"strategy,omitempty"`    // auto (default), dump, commands
	OnConflict  string `json:"onConflict,omitempty"`  // replace (default), skip
	Match       string `json:"match,omitempty"`       // SCAN MATCH glob
	Type        string `json:"type,omitempty"`        // SCAN TYPE filter
	MaxOps      int    `json:"maxOps,omitempty"`      // source commands per second, 0: no limit
	Concurrency int    `json:"concurrency,omitempty"` // keys in flight per shard, 0: default
	SampleSize  int    `json:"sampleSize,omitempty"`  // keys the analysis samples, 0: default
	ChunkKeys   int    `json:"chunkKeys,omitempty"`   // keys per chunk at most, 0: until the chunk's deadline
}

// MigrationRequest is the body of POST /migrations and the detail of a
// MigrationRequested event.
type MigrationRequest struct {
	Source  EndpointRequest  `json:"source"`
	Target  EndpointRequest  `json:"target"`
	Mode    string           `json:"mode,omitempty"` // command (the default), redis_shake or redis_shake_sync
	Force   bool             `json:"force,omitempty"`
	Options MigrationOptions `json:"options"`
}

// AnalysisOptions are the options of an analysis request. Match and Type
// are a migration's filters: the analysis describes the keys such a
// migration would copy.
type AnalysisOptions struct {
	SampleSize int    `json:"sampleSize,omitempty"`
	MaxOps     int    `json:"maxOps,omitempty"`
	Match      string `json:"match,omitempty"` // SCAN MATCH glob
	Type       string `json:"type,omitempty"`  // SCAN TYPE filter
}

// AnalysisRequest is the body of POST /analyses.
type AnalysisRequest struct {
	Source  EndpointRequest `json:"source"`
	Target  EndpointRequest `json:"target"`
	Options AnalysisOptions `json:"options"`
}

// input checks a migration request and returns the execution input of
// job id.
func (req MigrationRequest) input(id, secretPrefix string) (phase.AnalyzeInput, error) {
	o := req.Options
	if req.Mode == "" {
		req.Mode = phase.ModeCommand // as the CLI's --mode
	}
	in := phase.AnalyzeInput{
		JobID: id,
		Options: phase.Options{
			Mode: req.Mode, Force: req.Force,
			Strategy: o.Strategy, OnConflict: o.OnConflict, Match: o.Match, Type: o.Type,
			MaxOps: o.MaxOps, Concurrency: o.Concurrency, SampleSize: o.SampleSize, ChunkKeys: o.ChunkKeys,
		},
	}
	return in, endpoints(&in, req.Source, req.Target, secretPrefix, map[string]string{"options.mode": "mode"})
}

// input checks an analysis request and returns the execution input of
// job id.
func (req AnalysisRequest) input(id, secretPrefix string) (phase.AnalyzeInput, error) {
	o := req.Options
	in := phase.AnalyzeInput{
		JobID:   id,
		Options: phase.Options{AnalysisOnly: true, SampleSize: o.SampleSize, MaxOps: o.MaxOps, Match: o.Match, Type: o.Type},
	}
	return in, endpoints(&in, req.Source, req.Target, secretPrefix, nil)
}

// endpoints sets in's endpoints and checks in: no password, valid URLs and
// options (rename maps the payload's field paths to the request's where
// they differ), secrets under the allowed prefix.
func endpoints(in *phase.AnalyzeInput, src, dst EndpointRequest, secretPrefix string, rename map[string]string) error {
	sides := []struct {
		name string
		req  EndpointRequest
		to   *phase.Endpoint
	}{{"source", src, &in.Source}, {"target", dst, &in.Target}}
	for _, e := range sides {
		if len(e.req.Password) > 0 {
			return badRequest(e.name+".password", "%s.password: passwords are not accepted in requests: store the credentials in a Secrets Manager secret as JSON {\"username\": ..., \"password\": ...} and pass its ARN as %s.secretArn", e.name, e.name)
		}
		*e.to = phase.Endpoint{URL: strings.TrimSpace(e.req.URL), SecretARN: strings.TrimSpace(e.req.SecretARN)}
	}
	if err := check(*in, rename); err != nil {
		return err
	}
	for _, e := range sides {
		if err := lambdafn.CheckSecretPrefix(e.to.SecretARN, secretPrefix); err != nil {
			return badRequest(e.name+".secretArn", "%s.%v", e.name, err)
		}
	}
	return nil
}

// check runs the payload checks, renaming the payload's field paths to
// the request's where they differ.
func check(in phase.AnalyzeInput, rename map[string]string) error {
	err := in.Check()
	if err == nil {
		return nil
	}
	if fe, ok := errors.AsType[*phase.FieldError](err); ok {
		field := fe.Field
		if to, ok := rename[field]; ok {
			field = to
		}
		return badRequest(field, "%s", strings.Replace(fe.Error(), fe.Field, field, 1))
	}
	return &httpError{status: 400, err: err}
}
