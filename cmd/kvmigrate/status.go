package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// statusLine shows what a phase without progress bars is doing (the
// analysis, a validation) with its elapsed time, rewritten in place on a
// terminal every interval; stop erases it. Off (a no-op) when w is not a
// terminal, so logs and pipes get nothing.
type statusLine struct {
	w        io.Writer
	stopOnce sync.Once
	done     chan struct{}
	finished chan struct{}
}

// startStatus starts a status line on stderr when it is a terminal.
func startStatus(a *app, what string, quiet bool) *statusLine {
	if quiet || a.errOut != os.Stderr || !isTerminal(os.Stderr) {
		return &statusLine{}
	}
	return runStatus(a.errOut, what, time.Second)
}

func runStatus(w io.Writer, what string, every time.Duration) *statusLine {
	s := &statusLine{w: w, done: make(chan struct{}), finished: make(chan struct{})}
	started := time.Now()
	go func() {
		defer close(s.finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			fmt.Fprintf(w, "\r\033[K%s… %s", what, time.Since(started).Round(time.Second))
			select {
			case <-s.done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop erases the line; it may be called more than once.
func (s *statusLine) stop() {
	if s == nil || s.done == nil {
		return
	}
	s.stopOnce.Do(func() {
		close(s.done)
		<-s.finished
	})
}
