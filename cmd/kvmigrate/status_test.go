package main

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

type lockedWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestTheStatusLineShowsThePhaseAndErasesItself(t *testing.T) {
	var w lockedWriter
	s := runStatus(&w, "analyzing source and target", 5*time.Millisecond)
	time.Sleep(30 * time.Millisecond)
	s.stop()
	s.stop() // twice is fine
	out := w.String()
	assert.True(t, strings.HasPrefix(out, "\r\033[Kanalyzing source and target… 0s"), "%q", out)
	assert.True(t, strings.HasSuffix(out, "\r\033[K"), "erased at the end: %q", out)
	n := len(out)
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, n, len(w.String()), "nothing is written after stop")

	(&statusLine{}).stop() // the no-op line of a non-terminal
	var nilLine *statusLine
	nilLine.stop()
}
