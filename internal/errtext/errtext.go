// Package errtext turns errors into the one-line messages the command-line
// programs print.
package errtext

import (
	"strings"
	"unicode"

	"google.golang.org/grpc/codes"
)

// CodeWords spells a gRPC code in lowercase words: InvalidArgument is
// "invalid argument".
func CodeWords(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if unicode.IsUpper(r) && i > 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// OneLine folds a multi-line message into one line.
func OneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
