package shake

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFindBinary(t *testing.T) {
	if isExecutable(SystemPath) == nil {
		t.Skipf("%s exists on this machine: the lookup order cannot be tested around it", SystemPath)
	}
	home := t.TempDir()
	userBin := filepath.Join(home, ".kvmigrate", "bin", "redis-shake")
	other := filepath.Join(t.TempDir(), "redis-shake")
	require.NoError(t, os.WriteFile(other, []byte("#!/bin/sh\n"), 0o755))
	notExec := filepath.Join(t.TempDir(), "redis-shake")
	require.NoError(t, os.WriteFile(notExec, []byte("x"), 0o644))

	t.Run("fails naming all three places when none has it", func(t *testing.T) {
		_, err := findBinary("", home)
		require.ErrorIs(t, err, ErrBinaryNotFound)
		assert.Contains(t, err.Error(), "$REDIS_SHAKE_PATH")
		assert.Contains(t, err.Error(), "/usr/local/bin/redis-shake")
		assert.Contains(t, err.Error(), userBin)
	})
	t.Run("names ~/.kvmigrate/bin when the home directory is unknown", func(t *testing.T) {
		_, err := findBinary("", "")
		require.ErrorIs(t, err, ErrBinaryNotFound)
		assert.Contains(t, err.Error(), "~/.kvmigrate/bin/redis-shake")
	})
	t.Run("uses REDIS_SHAKE_PATH first", func(t *testing.T) {
		require.NoError(t, os.MkdirAll(filepath.Dir(userBin), 0o755))
		require.NoError(t, os.WriteFile(userBin, []byte("#!/bin/sh\n"), 0o755))
		t.Cleanup(func() { os.Remove(userBin) })
		got, err := findBinary(other, home)
		require.NoError(t, err)
		assert.Equal(t, other, got)
	})
	t.Run("falls back to ~/.kvmigrate/bin/redis-shake", func(t *testing.T) {
		require.NoError(t, os.MkdirAll(filepath.Dir(userBin), 0o755))
		require.NoError(t, os.WriteFile(userBin, []byte("#!/bin/sh\n"), 0o755))
		t.Cleanup(func() { os.Remove(userBin) })
		got, err := findBinary("", home)
		require.NoError(t, err)
		assert.Equal(t, userBin, got)
	})
	for name, path := range map[string]string{
		"a missing file":       filepath.Join(home, "nope"),
		"a file without x bit": notExec,
		"a directory":          home,
	} {
		t.Run("refuses a REDIS_SHAKE_PATH naming "+name+" instead of skipping it", func(t *testing.T) {
			require.NoError(t, os.MkdirAll(filepath.Dir(userBin), 0o755))
			require.NoError(t, os.WriteFile(userBin, []byte("#!/bin/sh\n"), 0o755))
			t.Cleanup(func() { os.Remove(userBin) })
			_, err := findBinary(path, home)
			require.ErrorIs(t, err, ErrBinaryNotFound)
			assert.Contains(t, err.Error(), "REDIS_SHAKE_PATH="+path)
			assert.Contains(t, err.Error(), "/usr/local/bin/redis-shake")
		})
	}
	t.Run("reads REDIS_SHAKE_PATH from the environment", func(t *testing.T) {
		t.Setenv(PathEnv, other)
		got, err := FindBinary()
		require.NoError(t, err)
		assert.Equal(t, other, got)
	})
}
