package awstest

import "syscall"

// sysProcAttr puts moto in its own process group and asks the kernel to kill
// it if the test binary dies without running its cleanups (a panic or a
// `go test -timeout`).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
