package main

import (
	"testing"

	"github.com/roster-registry/roster/internal/clitest"
)

// TestFlagHelpPlaceholders: no flag of rosterd shows a bogus value
// placeholder in --help (clitest.CheckFlagHelp).
func TestFlagHelpPlaceholders(t *testing.T) {
	clitest.CheckFlagHelp(t, newCommand())
}
