package job

import "fmt"

// Status is where a job stands. The set is closed.
type Status string

const (
	StatusPending    Status = "pending"    // created, not started
	StatusAnalyzing  Status = "analyzing"  // phase 1 running
	StatusAnalyzed   Status = "analyzed"   // report written; final for analysis jobs
	StatusRunning    Status = "running"    // phase 2: copying (or syncing until cutover)
	StatusValidating Status = "validating" // phase 3
	StatusPaused     Status = "paused"     // interrupted (Ctrl-C, crash detected); resumable
	StatusSucceeded  Status = "succeeded"  // terminal
	StatusFailed     Status = "failed"     // terminal; Error says why
	StatusBlocked    Status = "blocked"    // terminal: blocking findings and no force
	StatusCancelled  Status = "cancelled"  // terminal: stopped by a user (stop, Ctrl-C and abort) or an aborted execution
)

// Allowed transitions. Terminal statuses have none. Kind rules on top
// (Job.CanTransition): an analysis job never leaves analyzed and never enters
// running, validating, paused or blocked.
//
//	from        | to
//	------------+------------------------------------------------------
//	pending     | analyzing, failed, cancelled
//	analyzing   | analyzed, blocked, failed, cancelled
//	analyzed    | running, failed, cancelled             (migration only)
//	running     | validating, succeeded, paused, failed, cancelled
//	validating  | succeeded, paused, failed, cancelled
//	paused      | running, validating, failed, cancelled
//	succeeded, failed, blocked, cancelled | (terminal)
var transitions = map[Status][]Status{
	StatusPending:    {StatusAnalyzing, StatusFailed, StatusCancelled},
	StatusAnalyzing:  {StatusAnalyzed, StatusBlocked, StatusFailed, StatusCancelled},
	StatusAnalyzed:   {StatusRunning, StatusFailed, StatusCancelled},
	StatusRunning:    {StatusValidating, StatusSucceeded, StatusPaused, StatusFailed, StatusCancelled},
	StatusValidating: {StatusSucceeded, StatusPaused, StatusFailed, StatusCancelled},
	StatusPaused:     {StatusRunning, StatusValidating, StatusFailed, StatusCancelled},
	StatusSucceeded:  nil,
	StatusFailed:     nil,
	StatusBlocked:    nil,
	StatusCancelled:  nil,
}

// Statuses lists every status in lifecycle order.
func Statuses() []Status {
	return []Status{
		StatusPending, StatusAnalyzing, StatusAnalyzed, StatusRunning, StatusValidating,
		StatusPaused, StatusSucceeded, StatusFailed, StatusBlocked, StatusCancelled,
	}
}

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	_, ok := transitions[s]
	return ok
}

// Terminal reports whether no transition leaves s. (An analysis job is also
// finished in StatusAnalyzed: see Job.Finished.)
func (s Status) Terminal() bool {
	next, ok := transitions[s]
	return ok && len(next) == 0
}

// ValidTransition reports whether the status graph allows from → to,
// regardless of the job kind. Staying in the same status is not a transition.
func ValidTransition(from, to Status) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// analysisStatuses are the only statuses an analysis job can hold.
var analysisStatuses = map[Status]bool{
	StatusPending: true, StatusAnalyzing: true, StatusAnalyzed: true,
	StatusFailed: true, StatusCancelled: true,
}

// CanTransition reports whether j may move to status to: the graph allows it
// and j's kind does too.
func (j Job) CanTransition(to Status) bool {
	if j.Finished() || !ValidTransition(j.Status, to) {
		return false
	}
	return j.Kind != KindAnalysis || analysisStatuses[to]
}

// Finished reports whether j has reached its final status: a terminal one,
// or analyzed for an analysis job.
func (j Job) Finished() bool {
	return j.Status.Terminal() || j.Kind == KindAnalysis && j.Status == StatusAnalyzed
}

// TransitionError is returned (wrapped or not) when a job's current status
// does not allow the requested one. errors.Is(err, ErrConflict) holds.
type TransitionError struct {
	ID       string
	Kind     Kind
	From, To Status
}

func (e *TransitionError) Error() string {
	if e.From == e.To {
		return fmt.Sprintf("job %s is already %s", e.ID, e.From)
	}
	return fmt.Sprintf("job %s (%s): cannot move from %s to %s", e.ID, e.Kind, e.From, e.To)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *TransitionError) Is(target error) bool { return target == ErrConflict }
