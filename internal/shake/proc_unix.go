//go:build unix

package shake

import (
	"os"
	"syscall"
)

// terminate asks redis-shake to stop (it handles SIGTERM like Ctrl-C).
func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }

// kill kills redis-shake's process group.
func kill(p *os.Process) error {
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		return p.Kill()
	}
	return nil
}
