package job_test

import (
	"testing"

	"github.com/kvmigrate/kvmigrate/internal/job"
	"github.com/kvmigrate/kvmigrate/internal/job/jobtest"
)

func TestMemory(t *testing.T) {
	jobtest.Run(t, func(t *testing.T) job.Store {
		s := job.NewMemory()
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}
