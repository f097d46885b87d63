package handover

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff"
)

// quietSignals are the handled signals set to SIG_IGN across an upgrade's
// exec. A Go program keeps an inherited SIG_IGN for SIGHUP until it is
// notified of it (package early does it first thing), and never ends or
// stops for an unnotified SIGUSR2, SIGTTIN or SIGTTOU once its runtime has
// started; before that (in the exec itself) the default action of each
// would end or stop the process. One of these arriving in the window is
// lost, never fatal. The stop signals are the other way round
// (stopSignals).
//
// They are ignored, not blocked: a blocked mask survives the exec, and the
// new program's every thread, and every child it starts with os/exec, would
// inherit it (the Go runtime restores its initial mask in each child).
var quietSignals = []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU}

// stopSignals get their default action across an upgrade's exec: one that
// arrives after the signals for the new program were taken ends the process
// then and there, and the janitor stops the workers as the supervisor
// would have; under the runtime's handler it would be taken in and lost
// with the old image. The new program's first milliseconds are the same
// (see Exec).
var stopSignals = []syscall.Signal{syscall.SIGTERM, syscall.SIGINT}

const (
	sigDfl = 0
	sigIgn = 1
)

// setRaw sets sigs to SIG_IGN or SIG_DFL with rt_sigaction itself, behind
// the Go runtime's back: signal.Ignore would cancel every signal.Notify of
// the process, the program's own included. restore puts back the handlers
// (the runtime's) exactly as they were.
func setRaw(sigs []syscall.Signal, handler uintptr) (restore func(), err error) {
	old := make([]sigaction, len(sigs))
	set := 0
	restore = func() {
		for i := range set {
			rtSigaction(sigs[i], &old[i], nil)
		}
	}
	act := sigaction{handler: handler}
	for i, sig := range sigs {
		if err := rtSigaction(sig, &act, &old[i]); err != nil {
			restore()
			return nil, err
		}
		set++
	}
	return restore, nil
}

func rtSigaction(sig syscall.Signal, act, old *sigaction) error {
	if !sigactionKnown {
		return errNoSigaction
	}
	_, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig),
		uintptr(unsafe.Pointer(act)), uintptr(unsafe.Pointer(old)), unsafe.Sizeof(sigset{}), 0, 0)
	if e != 0 {
		return os.NewSyscallError("rt_sigaction", e)
	}
	return nil
}

// sigMarker is the signal settle sends itself. Its number must be above
// SIGTERM's and SIGINT's and below 32 (see settle): SIGWINCH is 28, and 20
// on mips, and it is ignored by default, so a stray one harms nobody. A
// program notified of SIGWINCH gets one per thread of an upgrade that
// fails.
const sigMarker = syscall.SIGWINCH

// settleWithin bounds settle: a thread that blocks sigMarker (a program
// started with it blocked) never takes it.
const settleWithin = time.Second

// settle returns once every signal the Go runtime's handler caught before
// settle was called has been relayed to the channels it is notified on,
// so that Exec takes from h.Sigs every stop signal the old program caught:
// any later one meets SIG_DFL (stopSignals) and ends the process.
//
// A signal the runtime caught is relayed in three steps: its handler, on
// whichever thread the kernel chose, marks it in a bit set; the runtime's
// signal goroutine takes the whole set (one 32-bit word at a time) and
// hands its signals out in increasing number; os/signal sends each to its
// every channel before the next (runtime/sigqueue.go, os/signal's
// process). So settle sends sigMarker to each thread in turn with tgkill
// and waits for it on a channel of its own:
//   - the runtime's handler runs with every signal blocked (its sa_mask is
//     full), so the marker reaches a thread only once the handler it may
//     be running for an earlier signal has marked that signal;
//   - a signal marked before the marker, in the same word and with a lower
//     number, is handed out no later than the marker, so it is on its
//     channel by the time the marker is on settle's.
//
// One thread at a time, because the set holds one bit per signal: markers
// sent at once would be relayed as one. SIGHUP, SIGINT, SIGUSR2 and
// SIGTERM are below sigMarker everywhere, SIGTTIN and SIGTTOU too except on
// mips, where one caught in the last instant may still be handed out after
// the marker and lost (never fatal: quietSignals). A SIGWINCH sent by
// someone else during settle can end one wait early. Without /proc, settle
// sends one marker to the process, which covers the threads not busy in a
// handler. TestSettle fails the day the runtime's relay stops working so.
func settle() {
	mark := make(chan os.Signal, 1)
	signal.Notify(mark, sigMarker)
	defer signal.Stop(mark)
	timeout := time.NewTimer(settleWithin)
	defer timeout.Stop()
	pid := unix.Getpid()
	send := func(tid int) error { return unix.Tgkill(pid, tid, sigMarker) }
	tids, err := threads()
	if err != nil {
		tids, send = []int{pid}, func(int) error { return unix.Kill(pid, sigMarker) }
	}
	for _, tid := range tids {
		if send(tid) != nil {
			continue // gone, and its handlers with it
		}
		select {
		case <-mark:
		case <-timeout.C:
			return
		}
	}
}

// threads lists this process's threads.
func threads() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// errNoSigaction is rtSigaction's error on an architecture whose struct
// sigaction this package does not know (sigaction_linux_other.go).
var errNoSigaction = fmt.Errorf("upgrade: rt_sigaction: %w: linux/%s", handoff.ErrNotSupported, runtime.GOARCH)
