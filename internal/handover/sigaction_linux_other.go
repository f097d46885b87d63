//go:build linux && !(386 || amd64 || arm || arm64 || ppc64 || ppc64le || s390x || loong64 || riscv64 || mips || mipsle || mips64 || mips64le)

package handover

// sigaction is not known on this architecture: rtSigaction fails, and so
// does an upgrade of a program that handles its signals (the supervisor
// goes on as it was).
type sigaction struct{ handler uintptr }

type sigset struct{}

const sigactionKnown = false
