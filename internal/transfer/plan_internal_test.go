package transfer

import (
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestIdempotentCommandsAreTriedAgainOnConnectionErrorsOnly(t *testing.T) {
	ctx := context.Background()
	calls := 0
	err := idempotent(ctx, func() error {
		calls++
		if calls < 3 {
			return io.EOF // a dead socket, while the client reconnects
		}
		return nil
	})
	assert.NoError(t, err)
	assert.Equal(t, 3, calls)

	calls = 0
	err = idempotent(ctx, func() error { calls++; return io.EOF })
	assert.ErrorIs(t, err, io.EOF, "three tries at most")
	assert.Equal(t, 3, calls)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	calls = 0
	err = idempotent(cancelled, func() error { calls++; return io.EOF })
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, 1, calls, "a cancelled context is not waited on")
}
