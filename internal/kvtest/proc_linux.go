package kvtest

import "syscall"

// sysProcAttr puts the server in its own process group, so that signals reach
// it and anything it forks (BGSAVE children), and asks the kernel to kill it
// if the test binary dies without running its cleanups (a panic or a
// `go test -timeout`).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
