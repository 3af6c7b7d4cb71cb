package sfntest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"runtime/debug"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambda/messages"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

const (
	// lambdaInvokeResource is the optimized integration's Resource; the
	// engine calls it as if it were a function, with the Parameters
	// (FunctionName, Payload) as the payload.
	lambdaInvokeResource = "arn:aws:states:::lambda:invoke"
	// maxPayload is Lambda's synchronous request and response limit.
	maxPayload = 6 << 20
	// maxStateData is Step Functions' limit on a task result.
	maxStateData = 256 << 10
)

// InvokeFunc adapts a function to lambda.Handler, for stand-ins and for
// wrappers that inject faults around a real handler.
type InvokeFunc func(ctx context.Context, payload []byte) ([]byte, error)

// Invoke calls f.
func (f InvokeFunc) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	return f(ctx, payload)
}

// Invocation is one Lambda invocation the harness served.
type Invocation struct {
	Function string
	Payload  json.RawMessage
	// Result is the function's result; nil when it failed.
	Result json.RawMessage
	// ErrorType and ErrorMessage are the function error, as Lambda reports it.
	ErrorType    string
	ErrorMessage string
	Start        time.Time
	Duration     time.Duration
}

// Invocations returns the Lambda invocations served so far, in the order
// they finished.
func (h *Harness) Invocations() []Invocation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Invocation(nil), h.calls...)
}

// serveInvoke is Lambda's Invoke API (synchronous invocations only).
func (h *Harness) serveInvoke(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
	if err != nil {
		lambdaServiceError(w, http.StatusBadRequest, "InvalidRequestContentException", err.Error())
		return
	}
	if len(body) > maxPayload {
		lambdaServiceError(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException", "Request must be smaller than 6291456 bytes for the InvokeFunction operation")
		return
	}
	if t := r.Header.Get("X-Amz-Invocation-Type"); t != "" && t != "RequestResponse" {
		h.t.Errorf("sfntest: invocation type %s of %s is not served", t, name)
		lambdaServiceError(w, http.StatusBadRequest, "InvalidParameterValueException", "sfntest serves RequestResponse invocations only")
		return
	}
	if strings.HasPrefix(name, lambdaInvokeResource) {
		h.serveLambdaInvokeTask(w, name, body)
		return
	}
	fn := FunctionName(name)
	if _, ok := h.cfg.Functions[fn]; !ok {
		lambdaServiceError(w, http.StatusNotFound, "ResourceNotFoundException", "Function not found: "+functionARN(fn))
		return
	}
	result, fnErr := h.invoke(fn, body)
	writeInvokeResult(w, result, fnErr)
}

// serveLambdaInvokeTask serves the arn:aws:states:::lambda:invoke form: the
// payload holds the Parameters, the result goes under "Payload".
func (h *Harness) serveLambdaInvokeTask(w http.ResponseWriter, resource string, body []byte) {
	if resource != lambdaInvokeResource {
		h.t.Errorf("sfntest: %s is not served (only %s)", resource, lambdaInvokeResource)
		writeInvokeResult(w, nil, &messages.InvokeResponse_Error{Type: "States.Runtime", Message: "sfntest does not serve " + resource})
		return
	}
	var params struct {
		FunctionName   string
		Payload        json.RawMessage
		Qualifier      string
		InvocationType string
		ClientContext  string
		LogType        string
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&params); err != nil || params.FunctionName == "" {
		h.t.Errorf("sfntest: %s Parameters %s: want FunctionName and Payload (%v)", resource, body, err)
		writeInvokeResult(w, nil, &messages.InvokeResponse_Error{Type: "States.Runtime", Message: fmt.Sprintf("bad %s parameters: %v", resource, err)})
		return
	}
	if params.InvocationType != "" && params.InvocationType != "RequestResponse" {
		h.t.Errorf("sfntest: %s with InvocationType %s is not served", resource, params.InvocationType)
	}
	fn := FunctionName(params.FunctionName)
	if _, ok := h.cfg.Functions[fn]; !ok {
		// Step Functions reports the service's exception with a "Lambda." prefix.
		writeInvokeResult(w, nil, &messages.InvokeResponse_Error{Type: "Lambda.ResourceNotFoundException", Message: "Function not found: " + functionARN(fn)})
		return
	}
	payload := []byte(params.Payload)
	if len(payload) == 0 {
		payload = []byte("{}")
	}
	result, fnErr := h.invoke(fn, payload)
	if fnErr != nil {
		writeInvokeResult(w, nil, fnErr)
		return
	}
	var out any = json.RawMessage(result)
	if !json.Valid(result) {
		out = string(result)
	}
	requestID := newID()
	wrapped, err := json.Marshal(map[string]any{
		"ExecutedVersion": "$LATEST",
		"Payload":         out,
		"SdkHttpMetadata": map[string]any{
			"AllHttpHeaders": map[string][]string{"X-Amz-Executed-Version": {"$LATEST"}, "x-amzn-RequestId": {requestID}},
			"HttpHeaders":    map[string]string{"X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": requestID},
			"HttpStatusCode": 200,
		},
		"SdkResponseMetadata": map[string]string{"RequestId": requestID},
		"StatusCode":          200,
	})
	if err != nil {
		writeInvokeResult(w, nil, &messages.InvokeResponse_Error{Type: "States.Runtime", Message: err.Error()})
		return
	}
	if len(wrapped) > maxStateData {
		writeInvokeResult(w, nil, &messages.InvokeResponse_Error{
			Type:    "States.DataLimitExceeded",
			Message: fmt.Sprintf("The state/task returned a result with a size exceeding the maximum number of bytes service limit (%d bytes > %d).", len(wrapped), maxStateData),
		})
		return
	}
	writeInvokeResult(w, wrapped, nil)
}

// invoke runs a function's handler with aws-lambda-go's Invoke, in a
// context that carries the function timeout as its deadline and a
// lambdacontext, and returns its result or its error as the Lambda runtime
// reports it. The invocation outlives the HTTP request (an aborted
// execution does not stop a running Lambda); the harness waits for it.
func (h *Harness) invoke(fn string, payload []byte) ([]byte, *messages.InvokeResponse_Error) {
	handler := h.cfg.Functions[fn]
	timeout := h.cfg.FunctionTimeout
	if d, ok := h.cfg.Timeouts[fn]; ok && d > 0 {
		timeout = d
	}
	requestID := newID()
	start := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(timeout))
	ctx = lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: requestID, InvokedFunctionArn: functionARN(fn)})

	type outcome struct {
		result []byte
		err    *messages.InvokeResponse_Error
	}
	ch := make(chan outcome, 1)
	h.invocations.Add(1)
	go func() {
		defer h.invocations.Done()
		defer cancel()
		defer func() {
			if v := recover(); v != nil {
				h.log.Error("sfntest: the function panicked", "function", fn, "panic", v, "stack", string(debug.Stack()))
				ch <- outcome{err: &messages.InvokeResponse_Error{Type: typeName(v), Message: fmt.Sprint(v)}}
			}
		}()
		result, err := handler.Invoke(ctx, payload)
		if err != nil {
			ch <- outcome{err: errorResponse(err)}
			return
		}
		ch <- outcome{result: result}
	}()

	var o outcome
	select {
	case o = <-ch:
	case <-ctx.Done():
		select {
		case o = <-ch:
		default:
			// Lambda ends the invocation at its timeout, whatever the handler does.
			o.err = &messages.InvokeResponse_Error{
				Type:    "Sandbox.Timedout",
				Message: fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", requestID, timeout.Seconds()),
			}
		}
	}
	if o.err == nil && len(o.result) > maxPayload {
		o = outcome{err: &messages.InvokeResponse_Error{Type: "Function.ResponseSizeTooLarge", Message: "Response payload size exceeded maximum allowed payload size (6291556 bytes)."}}
	}
	inv := Invocation{Function: fn, Payload: json.RawMessage(payload), Start: start, Duration: time.Since(start)}
	if o.err != nil {
		inv.ErrorType, inv.ErrorMessage = o.err.Type, o.err.Message
	} else {
		inv.Result = json.RawMessage(o.result)
	}
	h.mu.Lock()
	h.calls = append(h.calls, inv)
	h.mu.Unlock()
	return o.result, o.err
}

// errorResponse is what aws-lambda-go's runtime loop reports for a handler
// error (lambda/errors.go, lambdaErrorResponse): the error's Go type name
// (pointer or not) and its message, or an InvokeResponse_Error as is.
func errorResponse(err error) *messages.InvokeResponse_Error {
	if ive, ok := err.(messages.InvokeResponse_Error); ok {
		return &ive
	}
	return &messages.InvokeResponse_Error{Type: typeName(err), Message: err.Error()}
}

func typeName(v any) string {
	t := reflect.TypeOf(v)
	if t == nil {
		return ""
	}
	if t.Kind() == reflect.Pointer {
		return t.Elem().Name()
	}
	return t.Name()
}

// writeInvokeResult answers an Invoke: the result, or a function error as
// Lambda reports one (200, X-Amz-Function-Error: Unhandled, the error JSON).
func writeInvokeResult(w http.ResponseWriter, result []byte, fnErr *messages.InvokeResponse_Error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amz-Executed-Version", "$LATEST")
	if fnErr != nil {
		body, _ := json.Marshal(fnErr)
		w.Header().Set("X-Amz-Function-Error", "Unhandled")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(result)
}

// lambdaServiceError answers a request the Lambda service refuses.
func lambdaServiceError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Errortype", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"Type": "User", "message": message})
}

func functionARN(fn string) string {
	return "arn:aws:lambda:" + Region + ":" + Account + ":function:" + fn
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	s := hex.EncodeToString(b[:])
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

var _ lambda.Handler = InvokeFunc(nil)
