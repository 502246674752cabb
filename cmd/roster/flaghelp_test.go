package main

import (
	"testing"

	"github.com/roster-registry/roster/internal/clitest"
)

// TestFlagHelpPlaceholders: no flag of any roster command shows a bogus
// value placeholder in --help (clitest.CheckFlagHelp).
func TestFlagHelpPlaceholders(t *testing.T) {
	root := (&app{}).rootCommand(func(string) string { return "" })
	addCompletion(root)
	clitest.CheckFlagHelp(t, root)
	if len(root.Commands()) < 10 {
		t.Fatalf("walked %d commands; the command tree was not built", len(root.Commands()))
	}
}
