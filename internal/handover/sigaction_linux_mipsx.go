//go:build linux && (mips || mipsle || mips64 || mips64le)

package handover

import "unsafe"

// sigaction is the kernel's struct sigaction on mips
// (include/linux/signal_types.h with __ARCH_HAS_IRIX_SIGACTION, which
// arch/mips/include/asm/signal.h defines): the flags, an unsigned int,
// come first, and there is no restorer. rt_sigaction copies it as is.
type sigaction struct {
	flags   uint32  // unsigned int
	handler uintptr // __sighandler_t
	mask    sigset
}

// sigset is the kernel's sigset_t on mips: _NSIG (128,
// arch/mips/include/uapi/asm/signal.h) bits in unsigned longs.
type sigset [128 / (8 * unsafe.Sizeof(uintptr(0)))]uintptr

const sigactionKnown = true
