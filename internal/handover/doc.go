// Package handover hands a supervisor over to the program an in-place
// upgrade execs in the same process. It owns the hand-off, not the table:
//
//   - the state (the supervisor's table, opaque bytes here, and the signals
//     received and not handled yet), encoded with a version and a checksum
//     (Encode, Decode), so that a program that cannot read it says so
//     before it touches anything;
//   - its transport: a sealed memfd, left open across the exec, whose
//     number is all the environment carries (HANDOFF_UPGRADE_STATE), so
//     that its size is bounded by memory, not by the kernel's 128 KiB cap
//     on one environment string; Receive reads and closes it in the new
//     program (package early has already made it close-on-exec);
//   - the exec itself (Exec), with the descriptors to keep open, and the
//     handled signals across its window, set behind the Go runtime's back
//     with rt_sigaction (sigaction_linux*.go, one struct layout per
//     architecture as the kernel's headers have it).
//
// Exec and Receive need Linux; elsewhere they return an error wrapping
// handoff.ErrNotSupported.
package handover
