// Package api is kvmigrate's HTTP API, a net/http handler shared by the api
// Lambda function (served through aws-lambda-go-api-proxy) and `kvmigrate
// serve`, and the handler of the EventBridge events that function receives
// (see HandleEvent).
//
// Routes (JSON in and out; errors are {"error": "...", "field": "..."}):
//
//	POST /analyses                     start an analysis job              202
//	GET  /analyses/{id}                the job and its analysis report    200
//	POST /migrations                   start a migration job              202
//	GET  /migrations?limit&next&status migrations, newest first, paged    200
//	GET  /migrations/{id}              status, stage, shards, counters,
//	                                   findings, validation               200
//	POST /migrations/{id}/stop         stop it                            200
//	POST /migrations/{id}/cutover      redis_shake_sync: stop replicating,
//	                                   then validate                      202
//	POST /migrations/{id}/validations  validate its target again          200
//
// A job is started through Executions (the state machine, or the local
// workflow): the API creates the job record (pending) after taking one of
// the concurrency slots (MaxAnalyses, MaxExecutions: 409 when none is
// free), then starts the execution named after the job id. Endpoints carry
// a URL without a password and the ARN of the secret with the credentials;
// a password in a request is refused.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/phase"
)

// Executions starts and stops the executions that run jobs; the execution
// is named after the job id. Production: api/sfnexec (Step Functions);
// `kvmigrate serve`: LocalExecutions.
type Executions interface {
	// Start runs the job that input describes (input.JobID == jobID) and
	// returns the execution's ARN. The job record exists, pending.
	Start(ctx context.Context, jobID string, input phase.Execution) (executionARN string, err error)
	// Stop ends an execution; cause says why (shown in its history).
	Stop(ctx context.Context, executionARN, cause string) error
}

// Concurrency limits (../shared/DESIGN.md): jobs of each kind running at once.
const (
	MaxAnalyses   = 20
	MaxExecutions = 10
)

// maxBody bounds a request body.
const maxBody = 64 << 10

// Config is what the API needs.
type Config struct {
	Store      job.Store
	Executions Executions
	// Revalidate validates a finished migration again (lambdafn.Revalidate);
	// nil answers POST /migrations/{id}/validations with 501.
	Revalidate func(ctx context.Context, jobID string) (phase.ValidateOutput, error)
	// SecretPrefix: a secretArn must name a secret whose name begins with
	// it ("" allows any): the functions may read those secrets only.
	SecretPrefix string
	// StateMachineARN, when set, is the only state machine whose status
	// change events are handled.
	StateMachineARN string
	// Retention is how long a finished job is kept (job.Retention when 0):
	// the status-change handler sets expireAt from it.
	Retention time.Duration
	// StuckTimeout: a job in an active status with no progress for this
	// long is failed and its slot released when the API reads it (GET
	// /migrations, /migrations/{id}, /analyses/{id}), and its execution
	// stopped; see ReapStuck. 0 disables the check (`kvmigrate serve`: a
	// local job that a crash left running is resumed, not failed).
	StuckTimeout time.Duration
	// Tasks stops a redis-shake job's task on a cutover (redis_shake_sync)
	// and on a stop (either mode); nil: the task finds the request or the
	// cancelled status in the job record.
	Tasks Tasks
	// MaxAnalyses and MaxExecutions override the limits above (0: them).
	MaxAnalyses, MaxExecutions int
	Log                        *slog.Logger
	Now                        func() time.Time
}

// API serves the routes above. Build it with New.
type API struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
}

// New checks cfg and returns the API.
func New(cfg Config) (*API, error) {
	var missing []string
	if cfg.Store == nil {
		missing = append(missing, "Store")
	}
	if cfg.Executions == nil {
		missing = append(missing, "Executions")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("api: Config without %s", strings.Join(missing, ", "))
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Retention <= 0 {
		cfg.Retention = job.Retention
	}
	if cfg.MaxAnalyses <= 0 {
		cfg.MaxAnalyses = MaxAnalyses
	}
	if cfg.MaxExecutions <= 0 {
		cfg.MaxExecutions = MaxExecutions
	}
	a := &API{cfg: cfg, log: cfg.Log, mux: http.NewServeMux()}
	routes := []struct {
		method, path string
		h            func(http.ResponseWriter, *http.Request) error
	}{
		{http.MethodPost, "/analyses", a.createAnalysis},
		{http.MethodGet, "/analyses/{id}", a.getAnalysis},
		{http.MethodPost, "/migrations", a.createMigration},
		{http.MethodGet, "/migrations", a.listMigrations},
		{http.MethodGet, "/migrations/{id}", a.getMigration},
		{http.MethodPost, "/migrations/{id}/stop", a.stopMigration},
		{http.MethodPost, "/migrations/{id}/cutover", a.cutoverMigration},
		{http.MethodPost, "/migrations/{id}/validations", a.validateMigration},
	}
	// A known path with another method is a 405 with Allow; anything else
	// a 404, both in JSON.
	allowed := map[string][]string{}
	for _, rt := range routes {
		a.mux.Handle(rt.method+" "+rt.path, a.handler(rt.h))
		allowed[rt.path] = append(allowed[rt.path], rt.method)
	}
	paths := http.NewServeMux()
	for path, methods := range allowed {
		paths.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", strings.Join(methods, ", "))
			writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: fmt.Sprintf("%s is not allowed on %s: use %s", r.Method, path, strings.Join(methods, " or "))})
		})
	}
	paths.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path)})
	})
	a.mux.Handle("/", paths)
	return a, nil
}

// ServeHTTP serves the routes.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// handler turns a handler's error into its JSON answer and logs the request.
func (a *API) handler(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started := time.Now()
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		err := h(w, r)
		if err == nil {
			a.log.InfoContext(r.Context(), "request", "method", r.Method, "path", r.URL.Path, "ms", time.Since(started).Milliseconds())
			return
		}
		status, body := answer(err)
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		}
		a.log.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path, "status", status,
			"field", body.Field, "error", body.Error, "ms", time.Since(started).Milliseconds())
		writeJSON(w, status, body)
	})
}

// errorBody is every error answer.
type errorBody struct {
	Error string `json:"error"`
	// Field is the request field at fault, as a JSON path ("source.url"),
	// when one is.
	Field string `json:"field,omitempty"`
}

// httpError is an answer decided by a handler.
type httpError struct {
	status int
	field  string
	err    error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

func badRequest(field string, format string, args ...any) error {
	return &httpError{status: http.StatusBadRequest, field: field, err: fmt.Errorf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &httpError{status: http.StatusNotFound, err: fmt.Errorf(format, args...)}
}

// answer maps an error to a status and a body; the message is redacted.
func answer(err error) (int, errorBody) {
	body := errorBody{Error: endpoint.Redact(err.Error())}
	if fe, ok := errors.AsType[*phase.FieldError](err); ok {
		body.Field = fe.Field
	}
	if he, ok := errors.AsType[*httpError](err); ok {
		if he.field != "" {
			body.Field = he.field
		}
		return he.status, body
	}
	if errors.Is(err, job.ErrLimit) {
		return http.StatusConflict, body
	}
	switch phase.Classify(err).(type) {
	case *phase.InvalidInputError, *phase.UnsupportedError, *phase.AuthError, *phase.TLSError:
		return http.StatusBadRequest, body
	case *phase.NotFoundError:
		return http.StatusNotFound, body
	case *phase.ConflictError, *phase.BlockedError:
		return http.StatusConflict, body
	case *phase.TransientError:
		return http.StatusServiceUnavailable, body
	case *phase.TimeoutError:
		return http.StatusGatewayTimeout, body
	}
	return http.StatusInternalServerError, body
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// decode reads a request body strictly into v: one JSON object, no unknown
// fields. Errors are 400s naming the field where JSON says which. An
// optional body may be empty.
func decode(r *http.Request, v any, optional bool) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			if optional {
				return nil
			}
			return badRequest("", "a JSON body is required")
		}
		return decodeError(err)
	}
	if dec.More() {
		return badRequest("", "the body holds data after its JSON object")
	}
	return nil
}

func decodeError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return &httpError{status: http.StatusRequestEntityTooLarge, err: fmt.Errorf("the body is larger than %d bytes", tooBig.Limit)}
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("", "the body is not valid JSON: %v", err)
	case errors.As(err, &typ):
		return badRequest(typ.Field, "%s: want a JSON %s, not %s", typ.Field, jsonKind(typ.Type), typ.Value)
	}
	// encoding/json says `json: unknown field "name"` without the path.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return badRequest(strings.Trim(name, `"`), "unknown field %s", name)
	}
	return badRequest("", "the body cannot be read: %v", err)
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Float64:
		return "number"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice:
		return "array"
	}
	return t.String()
}
