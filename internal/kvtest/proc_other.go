//go:build unix && !linux

package kvtest

import "syscall"

// sysProcAttr puts the server in its own process group, so that signals reach
// it and anything it forks (BGSAVE children).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
