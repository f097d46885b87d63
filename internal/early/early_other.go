//go:build !unix

package early

import "os"

// Signals is empty: no in-place upgrade execs a program here (it returns
// handoff.ErrNotSupported), so init catches nothing.
var Signals []os.Signal

func closeOnExec(int) {}
