//go:build unix && !linux

package shake

import "syscall"

// sysProcAttr puts redis-shake in its own process group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
