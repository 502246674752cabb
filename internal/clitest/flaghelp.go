// Package clitest holds checks the command-line programs' tests share.
package clitest

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// CheckFlagHelp walks every command under root: pflag takes back-quoted
// words in a flag's help as the value placeholder --help prints (--name
// WORD), so a back-quoted command in the text makes a flag look as if it
// took words. A boolean flag must have no placeholder, and any other one a
// single word.
func CheckFlagHelp(t testing.TB, root *cobra.Command) {
	t.Helper()
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		check := func(f *pflag.Flag) {
			placeholder, _ := pflag.UnquoteUsage(f)
			switch {
			case f.Value.Type() == "bool" && placeholder != "":
				t.Errorf("%s --%s: a boolean flag shows the placeholder %q in --help (back-quotes in its help text)", cmd.CommandPath(), f.Name, placeholder)
			case strings.ContainsAny(placeholder, " \t"):
				t.Errorf("%s --%s: the placeholder %q in --help is more than one word (back-quotes in its help text)", cmd.CommandPath(), f.Name, placeholder)
			}
		}
		cmd.LocalFlags().VisitAll(check)
		cmd.PersistentFlags().VisitAll(check)
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
