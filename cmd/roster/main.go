// Command roster is the command-line client of a Roster service registry:
// register and deregister instances, discover and watch services, and
// administer the cluster. Every command prints a table for people or, with
// -o json, JSON for scripts.
//
// Errors are one line on stderr, "roster: <message>"; the exit code is 1
// for a failed call and 2 for a usage error (bad flags or arguments, caught
// before any call is made).
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}
