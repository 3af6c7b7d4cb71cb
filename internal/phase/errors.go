package phase

import (
	"context"
	"errors"
	"reflect"

	"github.com/kvmigrate/kvmigrate/internal/endpoint"
	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/transfer"
)

// Error types that cross to Step Functions. aws-lambda-go reports the Go
// type name of the error a handler returns as the Lambda error type, which
// Step Functions uses as the error name in Retry and Catch: the names are
// part of the contract. A handler returns Classify(err), never a wrapped
// error (its type name would be "wrapError").
//
// The state machine retries TransientError only; every other name goes to
// the failure path, which records it on the job.
type (
	// TransientError: worth retrying (lost connection, timeout, a server
	// loading or failing over).
	TransientError struct{ Err error }
	// InvalidInputError: the payload or the job's settings can never work.
	InvalidInputError struct{ Err error }
	// AuthError: the server refused the credentials, or the user lacks an
	// ACL permission.
	AuthError struct{ Err error }
	// TLSError: the TLS handshake or certificate check failed.
	TLSError struct{ Err error }
	// UnsupportedError: a topology or mode that kvmigrate cannot (yet) move.
	UnsupportedError struct{ Err error }
	// BlockedError: the analysis found blocking findings and force was not
	// set (the name of the state machine's "Blocked" Fail state).
	BlockedError struct{ Err error }
	// ValidationFailedError: the copy was made but validation did not pass.
	ValidationFailedError struct{ Err error }
	// NotFoundError: the job (or its report) does not exist.
	NotFoundError struct{ Err error }
	// ConflictError: the job's status does not allow the step (it was
	// stopped, or another execution moved it).
	ConflictError struct{ Err error }
	// TimeoutError: the invocation ran out of time where it should not have.
	TimeoutError struct{ Err error }
	// InternalError: anything else.
	InternalError struct{ Err error }
)

// stepError is implemented by every error type above.
type stepError interface {
	error
	// wrap returns an error of the same type around err.
	wrap(err error) error
}

// errorTypes lists one value of each error type, in declaration order.
var errorTypes = []stepError{
	&TransientError{}, &InvalidInputError{}, &AuthError{}, &TLSError{}, &UnsupportedError{},
	&BlockedError{}, &ValidationFailedError{}, &NotFoundError{}, &ConflictError{},
	&TimeoutError{}, &InternalError{},
}

// ErrorNames returns the Step Functions error names of the error types (the
// Go type names, as aws-lambda-go reports them), in declaration order.
func ErrorNames() []string {
	names := make([]string, len(errorTypes))
	for i, e := range errorTypes {
		names[i] = reflect.TypeOf(e).Elem().Name()
	}
	return names
}

// rules map domain errors to error types; the first match wins, so the more
// specific classes come first.
var rules = []struct {
	targets []error
	wrap    func(error) error
}{
	{[]error{endpoint.ErrInvalidURL, endpoint.ErrClusterDB, endpoint.ErrClusterMode, transfer.ErrInvalidOptions, job.ErrInvalid},
		func(err error) error { return &InvalidInputError{Err: err} }},
	{[]error{endpoint.ErrAuth, endpoint.ErrNoPermission}, func(err error) error { return &AuthError{Err: err} }},
	{[]error{endpoint.ErrTLS}, func(err error) error { return &TLSError{Err: err} }},
	{[]error{transfer.ErrTopology}, func(err error) error { return &UnsupportedError{Err: err} }},
	{[]error{job.ErrNotFound}, func(err error) error { return &NotFoundError{Err: err} }},
	{[]error{job.ErrConflict}, func(err error) error { return &ConflictError{Err: err} }},
	{[]error{transfer.ErrTransient, endpoint.ErrUnreachable, job.ErrTransient}, func(err error) error { return &TransientError{Err: err} }},
	{[]error{context.DeadlineExceeded}, func(err error) error { return &TimeoutError{Err: err} }},
}

// Classify maps an error to the error type Step Functions sees: nil stays
// nil; an error that already holds one of the types keeps that type (with
// err's full message); a domain error is classified by its sentinel (see
// rules); anything else is an InternalError. The result is never wrapped,
// so its type name is the error name.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	if se, ok := err.(stepError); ok {
		return se
	}
	var se stepError
	if errors.As(err, &se) {
		return se.wrap(err)
	}
	for _, r := range rules {
		for _, target := range r.targets {
			if errors.Is(err, target) {
				return r.wrap(err)
			}
		}
	}
	return &InternalError{Err: err}
}

func msg(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}

func (e *TransientError) Error() string        { return msg(e.Err) }
func (e *TransientError) Unwrap() error        { return e.Err }
func (e *TransientError) wrap(err error) error { return &TransientError{Err: err} }

func (e *InvalidInputError) Error() string        { return msg(e.Err) }
func (e *InvalidInputError) Unwrap() error        { return e.Err }
func (e *InvalidInputError) wrap(err error) error { return &InvalidInputError{Err: err} }

func (e *AuthError) Error() string        { return msg(e.Err) }
func (e *AuthError) Unwrap() error        { return e.Err }
func (e *AuthError) wrap(err error) error { return &AuthError{Err: err} }

func (e *TLSError) Error() string        { return msg(e.Err) }
func (e *TLSError) Unwrap() error        { return e.Err }
func (e *TLSError) wrap(err error) error { return &TLSError{Err: err} }

func (e *UnsupportedError) Error() string        { return msg(e.Err) }
func (e *UnsupportedError) Unwrap() error        { return e.Err }
func (e *UnsupportedError) wrap(err error) error { return &UnsupportedError{Err: err} }

func (e *BlockedError) Error() string        { return msg(e.Err) }
func (e *BlockedError) Unwrap() error        { return e.Err }
func (e *BlockedError) wrap(err error) error { return &BlockedError{Err: err} }

func (e *ValidationFailedError) Error() string        { return msg(e.Err) }
func (e *ValidationFailedError) Unwrap() error        { return e.Err }
func (e *ValidationFailedError) wrap(err error) error { return &ValidationFailedError{Err: err} }

func (e *NotFoundError) Error() string        { return msg(e.Err) }
func (e *NotFoundError) Unwrap() error        { return e.Err }
func (e *NotFoundError) wrap(err error) error { return &NotFoundError{Err: err} }

func (e *ConflictError) Error() string        { return msg(e.Err) }
func (e *ConflictError) Unwrap() error        { return e.Err }
func (e *ConflictError) wrap(err error) error { return &ConflictError{Err: err} }

func (e *TimeoutError) Error() string        { return msg(e.Err) }
func (e *TimeoutError) Unwrap() error        { return e.Err }
func (e *TimeoutError) wrap(err error) error { return &TimeoutError{Err: err} }

func (e *InternalError) Error() string        { return msg(e.Err) }
func (e *InternalError) Unwrap() error        { return e.Err }
func (e *InternalError) wrap(err error) error { return &InternalError{Err: err} }
