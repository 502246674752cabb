package errtext

import (
	"testing"

	"google.golang.org/grpc/codes"
)

func TestCodeWordsAndOneLine(t *testing.T) {
	for c, want := range map[codes.Code]string{codes.InvalidArgument: "invalid argument", codes.Unavailable: "unavailable", codes.DeadlineExceeded: "deadline exceeded"} {
		if got := CodeWords(c); got != want {
			t.Errorf("CodeWords(%v) = %q, want %q", c, got, want)
		}
	}
	if got := OneLine("a\n  b\tc \n"); got != "a b c" {
		t.Errorf("OneLine = %q", got)
	}
}
