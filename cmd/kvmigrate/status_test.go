package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestTheStatusLineShowsThePhaseAndErasesItself(t *testing.T) {
	var w syncBuffer
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
