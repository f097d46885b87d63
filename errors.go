package handoff

import "errors"

// ErrNotSupported is the one error every handoff package returns, wrapped
// with what was asked and runtime.GOOS, on platforms other than Linux. Test
// for it with errors.Is.
var ErrNotSupported = errors.New("handoff: not supported on this platform")
