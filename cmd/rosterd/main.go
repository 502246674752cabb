// Command rosterd is the Roster server: one node of a Raft-replicated
// service registry. It turns flags and ROSTER_* environment variables into a
// cluster configuration, serves the gRPC API and stops gracefully on SIGTERM.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	if err := newCommand().Execute(); err != nil {
		var usage usageError
		fmt.Fprintf(os.Stderr, "rosterd: %v\n", err)
		if errors.As(err, &usage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a flag combination that cannot work.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }
