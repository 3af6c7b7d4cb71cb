package shake

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// PathEnv names the environment variable that points at the redis-shake
// binary.
const PathEnv = "REDIS_SHAKE_PATH"

// SystemPath is where the shake-task image installs redis-shake.
const SystemPath = "/usr/local/bin/redis-shake"

// ErrBinaryNotFound is wrapped by FindBinary's errors.
var ErrBinaryNotFound = errors.New("redis-shake binary not found")

// FindBinary returns the redis-shake binary to run: $REDIS_SHAKE_PATH,
// then /usr/local/bin/redis-shake, then ~/.kvmigrate/bin/redis-shake.
// A REDIS_SHAKE_PATH that is set must name an executable file; it is never
// skipped silently. The error names all three places.
func FindBinary() (string, error) {
	home, _ := os.UserHomeDir()
	return findBinary(os.Getenv(PathEnv), home)
}

func findBinary(envPath, home string) (string, error) {
	userPath := "~/.kvmigrate/bin/redis-shake"
	if home != "" {
		userPath = filepath.Join(home, ".kvmigrate", "bin", "redis-shake")
	}
	places := fmt.Sprintf("$%s, %s, %s", PathEnv, SystemPath, userPath)
	if envPath != "" {
		if err := isExecutable(envPath); err != nil {
			return "", fmt.Errorf("%s=%s: %v; fix or unset it (redis-shake is looked for in %s): %w",
				PathEnv, envPath, err, places, ErrBinaryNotFound)
		}
		return envPath, nil
	}
	candidates := []string{SystemPath}
	if home != "" {
		candidates = append(candidates, userPath)
	}
	for _, p := range candidates {
		if isExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("looked in %s (%s is not set): install redis-shake v4 in one of them or set %s: %w",
		places, PathEnv, PathEnv, ErrBinaryNotFound)
}

func isExecutable(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return errors.New("no such file")
	case err != nil:
		return err
	case fi.IsDir():
		return errors.New("is a directory")
	case fi.Mode().Perm()&0o111 == 0:
		return errors.New("is not executable")
	}
	return nil
}
