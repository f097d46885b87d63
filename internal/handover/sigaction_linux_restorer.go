//go:build linux && (386 || amd64 || arm || arm64 || ppc64 || ppc64le || s390x)

package handover

import "unsafe"

// sigaction is the kernel's struct sigaction (include/linux/signal_types.h)
// where the architecture has __ARCH_HAS_SA_RESTORER: x86, arm, arm64,
// powerpc and s390 define SA_RESTORER in their uapi asm/signal.h.
// rt_sigaction copies it as is.
type sigaction struct {
	handler  uintptr // __sighandler_t
	flags    uintptr // unsigned long
	restorer uintptr // __sigrestore_t
	mask     sigset
}

// sigset is the kernel's sigset_t: _NSIG (64) bits in unsigned longs.
type sigset [64 / (8 * unsafe.Sizeof(uintptr(0)))]uintptr

const sigactionKnown = true
