//go:build !unix

package shake

import (
	"os"
	"syscall"
)

// sysProcAttr: no process group or parent-death signal here.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// terminate: there is no SIGTERM; stopping kills.
func terminate(p *os.Process) error { return p.Kill() }

func kill(p *os.Process) error { return p.Kill() }
