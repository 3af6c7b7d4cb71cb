// Package kvtest starts real redis-server and valkey-server processes for
// tests: standalone servers and multi-master clusters, each on free ports in
// its own temporary directory, stopped when the test ends.
//
// The engines are plain binaries installed by scripts/engines.sh under
// $KVMIGRATE_ENGINES (default: <repo root>/.engines), one folder per engine:
//
//	redis-7.0/bin/{redis-server,redis-cli}
//	valkey-8.0/bin/{valkey-server,valkey-cli}
//	redis-8.0/bin/...
//	valkey-8.1/bin/...
//
// A test asks for an engine with [Require], which skips the test when the
// engine is not installed (and fails it when CI=true), then starts servers
// with [StartServer] or [StartCluster]:
//
//	e := kvtest.Require(t, "valkey-8.1")
//	srv := kvtest.StartServer(t, e, kvtest.WithPassword("pw"))
//	c := srv.Client(t)
//
// [WithTLS] makes servers and clusters serve TLS with certificates of a
// throwaway CA made for the test; kvtest's clients and URLs then use TLS:
//
//	srv := kvtest.StartServer(t, e, kvtest.WithTLS(kvtest.TLSOptions{ClientAuth: true}))
//	srv.URL() // "valkeys://127.0.0.1:port?tls_ca=...&tls_cert=...&tls_key=..."
package kvtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// EnginesEnv names the environment variable that overrides the folder the
// engines are installed in.
const EnginesEnv = "KVMIGRATE_ENGINES"

// Engine is one installable server engine at one version.
type Engine struct {
	// Name identifies the engine, e.g. "redis-7.0" or "valkey-8.1".
	Name string
	// Kind is "redis" or "valkey".
	Kind string
	// Version is the major.minor version, e.g. "7.0".
	Version string
	// ServerBin is the path of the server binary (or its wrapper).
	ServerBin string
	// CLIBin is the path of the matching command-line client.
	CLIBin string
}

// engineNames lists the engines scripts/engines.sh installs, oldest first
// within each kind.
var engineNames = []string{"redis-7.0", "valkey-8.0", "redis-8.0", "valkey-8.1"}

// AllEngines returns the engines kvtest knows, whether installed or not. The
// binary paths point into the engines folder; when it cannot be located they
// are relative paths that do not exist.
func AllEngines() []Engine {
	dir, _ := enginesDir()
	engines := make([]Engine, 0, len(engineNames))
	for _, name := range engineNames {
		engines = append(engines, newEngine(dir, name))
	}
	return engines
}

func newEngine(dir, name string) Engine {
	kind, version, _ := strings.Cut(name, "-")
	bin := filepath.Join(dir, name, "bin")
	return Engine{
		Name:      name,
		Kind:      kind,
		Version:   version,
		ServerBin: filepath.Join(bin, kind+"-server"),
		CLIBin:    filepath.Join(bin, kind+"-cli"),
	}
}

// Require returns the named engine, or ends the test when it cannot run: an
// unknown name fails the test; a missing binary skips it with a hint to run
// scripts/engines.sh, except when the CI environment variable is "true",
// where it fails (CI must never silently skip engine tests).
func Require(t testing.TB, name string) Engine {
	t.Helper()
	known := false
	for _, n := range engineNames {
		known = known || n == name
	}
	if !known {
		t.Fatalf("kvtest: unknown engine %q (known: %s)", name, strings.Join(engineNames, ", "))
	}
	dir, dirErr := enginesDir()
	e := newEngine(dir, name)
	err := dirErr
	if err == nil {
		err = errors.Join(executable(e.ServerBin), executable(e.CLIBin))
	}
	if err == nil {
		return e
	}
	unavailable(t, fmt.Sprintf("kvtest: engine %s is not installed: %v; run scripts/engines.sh (or set %s to the folder it installed into)", name, err, EnginesEnv))
	return Engine{}
}

// unavailable ends a test that needs something the machine lacks (an
// engine, or a capability of one): it skips the test with msg, except when
// the CI environment variable is "true", where it fails it (CI must never
// silently skip engine tests).
func unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// enginesDir returns $KVMIGRATE_ENGINES, or .engines in the repository root
// (the closest folder above the working directory that holds go.mod).
func enginesDir() (string, error) {
	if dir := os.Getenv(EnginesEnv); dir != "" {
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("locate engines: %w", err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, ".engines"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("locate engines: no go.mod above %s and %s is not set", wd, EnginesEnv)
		}
		dir = parent
	}
}
