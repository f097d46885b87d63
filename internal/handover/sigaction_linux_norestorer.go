//go:build linux && (loong64 || riscv64)

package handover

import "unsafe"

// sigaction is the kernel's struct sigaction (include/linux/signal_types.h)
// where the architecture has no SA_RESTORER: loongarch and riscv use
// asm-generic/signal.h as it is. rt_sigaction copies it as is.
type sigaction struct {
	handler uintptr // __sighandler_t
	flags   uintptr // unsigned long
	mask    sigset
}

// sigset is the kernel's sigset_t: _NSIG (64) bits in unsigned longs.
type sigset [64 / (8 * unsafe.Sizeof(uintptr(0)))]uintptr

const sigactionKnown = true
