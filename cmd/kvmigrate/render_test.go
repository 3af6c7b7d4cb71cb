package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/topology"
	"github.com/kvmigrate/kvmigrate/internal/validation"
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

func TestTheValidationSummaryCountsTheAnalysissLargestKeys(t *testing.T) {
	render := func(s validation.SampleStats) string {
		var b strings.Builder
		renderValidation(&b, "redis://a:1", "valkey://b:2", validation.Report{Passed: true, Sample: s})
		return b.String()
	}
	assert.Contains(t, render(validation.SampleStats{Sampled: 500, Always: 4, Full: 500, Digest: 4}),
		"sample (sampled): 500 source keys and the analysis's 4 largest: 500 compared in full, 4 by digest, 0 by count only")
	assert.Contains(t, render(validation.SampleStats{Sampled: 42, Full: 42, Exhaustive: true}),
		"sample (every key): 42 source keys: 42 compared in full, 0 by digest, 0 by count only")
}
