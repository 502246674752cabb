//go:build !linux

package main

import "syscall"

// killWithParent does nothing where the system has no parent-death
// signal: a benchmark killed with kill -9 leaves its local nodes running.
func killWithParent(*syscall.SysProcAttr) {}
