package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/topology"
	"github.com/kvmigrate/kvmigrate/internal/workflow"
)

func TestTheSummaryGivesKeyAndByteRatesEvenForOneHugeKey(t *testing.T) {
	outcome := func(keys, bytes int64, took time.Duration) string {
		var b strings.Builder
		renderOutcome(&b, workflow.Outcome{
			Job:     job.Job{ID: "j", Status: job.StatusSucceeded, Counters: job.Counters{Copied: keys, Bytes: bytes}},
			Source:  topology.Info{Engine: "redis", Version: "7.0.15"},
			Target:  topology.Info{Engine: "valkey", Version: "8.0.1"},
			Elapsed: took,
		}, took)
		return b.String()
	}
	assert.Contains(t, outcome(1, 200<<20, 4*time.Second), "1 keys, 200.0 MiB in 4s: 0.25 keys/s, 50.0 MiB/s")
	assert.Contains(t, outcome(1_000_000, 60<<20, 2*time.Second), "1000000 keys, 60.0 MiB in 2s: 500000 keys/s, 30.0 MiB/s")
}
