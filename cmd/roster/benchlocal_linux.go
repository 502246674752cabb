package main

import "syscall"

// killWithParent has the kernel SIGKILL the child when the benchmark
// process dies (a kill -9 leaves no chance to stop it). The signal comes
// when the thread that started the child ends; Go keeps its threads for
// the life of the process unless a goroutine locked to one ends, which
// the benchmark never does.
func killWithParent(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGKILL
}
