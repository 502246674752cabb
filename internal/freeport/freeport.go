// Package freeport finds loopback TCP ports for the processes that tests,
// benchmarks and chaos runs start.
package freeport

import "net"

// Loopback returns n distinct ports on 127.0.0.1 that were free a moment
// ago: it holds all n listeners open at once, so no port is handed out
// twice, and closes them before it returns. Another program can still take
// one before the caller binds it.
func Loopback(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
