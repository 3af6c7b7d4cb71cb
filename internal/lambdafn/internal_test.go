package lambdafn

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmigrate/kvmigrate/internal/phase"
)

func TestLimitsLeaveTheSafetyMargin(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := Deps{Now: func() time.Time { return now }, SafetyMargin: 2 * time.Second}.withDefaults()
	at := func(left time.Duration) context.Context {
		ctx, cancel := context.WithDeadline(context.Background(), now.Add(left))
		t.Cleanup(cancel)
		return ctx
	}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want time.Time
	}{
		{"no deadline: keys only", context.Background(), time.Time{}},
		{"the deadline minus the margin", at(10 * time.Second), now.Add(8 * time.Second)},
		{"half the time left when it is less than the margin", at(time.Second), now.Add(500 * time.Millisecond)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim, err := d.limits(tc.ctx, 100)
			require.NoError(t, err)
			assert.Equal(t, tc.want, lim.Deadline)
			assert.Equal(t, 100, lim.MaxKeys)
		})
	}
	t.Run("a deadline already passed is a TimeoutError", func(t *testing.T) {
		_, err := d.limits(at(-time.Second), 0)
		assert.IsType(t, &phase.TimeoutError{}, phase.Classify(err))
	})
}

func TestCutKeepsRunesWhole(t *testing.T) {
	assert.Equal(t, "short", cut("short", 10))
	s := cut(strings.Repeat("é", 300), phase.MaxFindingMessage)
	assert.LessOrEqual(t, len(s), phase.MaxFindingMessage)
	assert.True(t, utf8.ValidString(s))
	assert.True(t, strings.HasSuffix(s, "…"))
}

func TestCredentialsNeverPrintTheirPassword(t *testing.T) {
	c := Credentials{Username: "app", Password: "hunter22"}
	for _, s := range []string{c.String(), c.GoString(), c.LogValue().String()} {
		assert.NotContains(t, s, "hunter22")
		assert.Contains(t, s, "app")
	}
	_, err := ParseCredentials("arn:x", `{"username":"app","password":`) // cut short
	assert.IsType(t, &phase.InvalidInputError{}, err)
	_, err = ParseCredentials("arn:x", `"hunter22"`)
	assert.NotContains(t, err.Error(), "hunter22")
	_, err = ParseCredentials("arn:x", `{"username":"app"}`)
	assert.ErrorContains(t, err, "no \"password\"")
}
