package logging

import (
	"os"

	"go.uber.org/zap"
)

// Default returns the logger of a supervisor that was given none: info and
// above to stderr, in handoff's own format (NewFormat), which its workers
// then log in too.
func Default() *zap.Logger { return New(os.Stderr) }

// New logs info and above to f in handoff's own format: console lines for
// people, in colour, when f is a terminal; JSON lines otherwise (a file, a
// pipe, journald), ts in ISO 8601 and durations in seconds.
func New(f *os.File) *zap.Logger { return NewFormat("", f) }

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
