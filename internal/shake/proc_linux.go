package shake

import "syscall"

// sysProcAttr puts redis-shake in its own process group and has the kernel
// kill it if kvmigrate dies without stopping it: a sync run must not go on
// replicating unsupervised.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
