package handover

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// seals are the seals a state's memfd carries: its content can no longer
// change once written.
const seals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// Exec replaces the program with h.Path, in the same process, handing it
// h.State and h.Fds. It returns only if that failed, with everything as it
// was: the signals it took from h.Sigs are returned for the caller to
// handle after all.
//
// With h.Sigs, the handled signals are set for the exec's window first
// (see quietSignals and stopSignals), then Exec waits until every signal
// the Go runtime caught before that has reached h.Sigs (settle), and takes
// them: from then on, a stop signal ends the process and any other is
// ignored, so none is lost with the old image.
//
// SIGTERM is the one signal no Go program can be protected from in the
// window: the new program's runtime unblocks it on its first thread
// (runtime.minit: blockableSig is false for _SigKill signals) and installs
// its own handler for it, ignoring an inherited SIG_IGN (sigInstallGoHandler
// keeps only SIGHUP's and SIGINT's), before any package init runs, and that
// handler ends the process until someone is notified of SIGTERM, which
// package early does first thing. So a SIGTERM that lands between the exec
// and early's init (a few milliseconds: the runtime's start) ends the
// process, whatever it blocked or ignored before. The supervisor's janitor
// then stops the workers gracefully.
func Exec(h *Handoff) (late []syscall.Signal, err error) {
	mfd, err := unix.MemfdCreate("handoff-upgrade-state", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	defer unix.Close(mfd) // reached only if the exec failed
	if err := setCloexec(h.Fds, false); err != nil {
		setCloexec(h.Fds, true)
		return nil, err
	}
	defer setCloexec(h.Fds, true)
	if h.Sigs != nil {
		restore, err := setRaw(quietSignals, sigIgn)
		if err != nil {
			return nil, err
		}
		defer restore()
		undie, err := setRaw(stopSignals, sigDfl)
		if err != nil {
			return nil, err
		}
		defer undie()
		settle()
		late = Drain(h.Sigs)
	}
	st := h.State
	st.Signals = slices.Concat(st.Signals, late)
	if err := write(mfd, Encode(st)); err != nil {
		return late, err
	}
	env := append(withoutState(h.Env), EnvState+"="+strconv.Itoa(mfd))
	err = syscall.Exec(h.Path, h.Args, env)
	return late, fmt.Errorf("exec %s: %w", h.Path, err)
}

// write writes b to the memfd, seals it and leaves it open across the exec.
func write(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("write", err)
		}
		b = b[n:]
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		return os.NewSyscallError("fcntl F_ADD_SEALS", err)
	}
	return setCloexec([]int{fd}, false)
}

func setCloexec(fds []int, on bool) error {
	flag := 0
	if on {
		flag = unix.FD_CLOEXEC
	}
	for _, fd := range fds {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, flag); err != nil {
			return os.NewSyscallError("fcntl F_SETFD", err)
		}
	}
	return nil
}

// Receive reads and closes the state an upgrade handed this program, and
// removes EnvState from the environment; nil when there is none. The
// descriptor must be a sealed memfd (one that is not is left alone) and
// its content one Decode reads.
func Receive() (*State, error) {
	v, ok := os.LookupEnv(EnvState)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(EnvState)
	if strings.HasPrefix(v, "{") {
		return legacy(v), nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("upgrade state: %s=%q: want a descriptor number of 3 or more", EnvState, v)
	}
	got, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil || got&seals != seals {
		// Not ours to close: some other descriptor, or none.
		return nil, fmt.Errorf("upgrade state: descriptor %d is no sealed memfd (seals %#x, %v)", fd, got, err)
	}
	f := os.NewFile(uintptr(fd), "upgrade-state")
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("upgrade state: %w", err)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("upgrade state: %w", err)
	}
	st, err := Decode(b)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// envLegacySignals is where a program of version 0 left the signals it
// received at the exec's last moment.
const envLegacySignals = "HANDOFF_UPGRADE_SIGNALS"

// legacy is the state as the programs before Version 1 handed it over, so
// that an upgrade from one of them to this program keeps its workers: the
// table as JSON in EnvState itself, the signals queued before the exec in
// its "Signals" key and those of the exec's last moment in
// envLegacySignals, comma-separated. What is no signal number is dropped.
func legacy(v string) *State {
	var old struct{ Signals []int }
	_ = json.Unmarshal([]byte(v), &old) // the table's own decoder reports a bad one
	nums := old.Signals
	if late, ok := os.LookupEnv(envLegacySignals); ok {
		os.Unsetenv(envLegacySignals)
		for f := range strings.SplitSeq(late, ",") {
			if n, err := strconv.Atoi(f); err == nil {
				nums = append(nums, n)
			}
		}
	}
	st := &State{Table: []byte(v)}
	for _, n := range nums {
		if n > 0 && n < 65 {
			st.Signals = append(st.Signals, syscall.Signal(n))
		}
	}
	return st
}
