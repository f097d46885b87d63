package reap

import (
	"strconv"
	"syscall"
	"time"
)

// Status is one reaped exit.
type Status struct {
	Pid      int
	Code     int            // exit code; -1 when killed by a signal
	Signal   syscall.Signal // 0 unless killed by a signal
	CoreDump bool           // the kernel wrote a core dump
	Rusage   syscall.Rusage // resource usage reported by wait4
	Time     time.Time      // when the reaper collected it
}

// Exited reports whether the process exited normally rather than by a signal.
func (s Status) Exited() bool { return s.Signal == 0 }

// Success reports whether the process exited normally with code 0.
func (s Status) Success() bool { return s.Code == 0 && s.Signal == 0 }

// String describes the exit the way [os.ProcessState.String] does:
// "exit status 3", "signal: killed", "signal: aborted (core dumped)".
func (s Status) String() string {
	var res string
	if s.Signal != 0 {
		res = "signal: " + s.Signal.String()
	} else {
		res = "exit status " + strconv.Itoa(s.Code)
	}
	if s.CoreDump {
		res += " (core dumped)"
	}
	return res
}
