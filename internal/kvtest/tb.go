package kvtest

import (
	"fmt"
	"runtime"
	"testing"
)

// Recorded is what a helper did to the testing.TB that RunTB gave it.
type Recorded struct {
	testing.TB
	// SkipMsg and FatalMsg hold the message of Skip or Fatal/Fatalf.
	SkipMsg, FatalMsg string
}

func (r *Recorded) Helper()          {}
func (r *Recorded) Skip(args ...any) { r.SkipMsg = fmt.Sprint(args...); runtime.Goexit() }
func (r *Recorded) Skipf(format string, args ...any) {
	r.SkipMsg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *Recorded) Fatal(args ...any) { r.FatalMsg = fmt.Sprint(args...); runtime.Goexit() }
func (r *Recorded) Fatalf(format string, args ...any) {
	r.FatalMsg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// RunTB runs f with a testing.TB that records Skip and Fatal instead of
// ending the real test, so a test can check how a harness helper refuses
// (skip locally, fail in CI) without skipping or failing itself.
func RunTB(f func(testing.TB)) *Recorded {
	return run(&Recorded{}, f)
}

// RunTBIn is RunTB for helpers that need more of testing.TB than Helper,
// Skip and Fatal: every other method (TempDir, Cleanup, Logf...) is
// parent's.
func RunTBIn(parent testing.TB, f func(testing.TB)) *Recorded {
	return run(&Recorded{TB: parent}, f)
}

func run(r *Recorded, f func(testing.TB)) *Recorded {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}
