//go:build !linux

package worker

// handoverSupported: elsewhere hand-over is off, and the drain behaves as
// without a supervisor's socket pair.
const handoverSupported = false
