package orphans

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Children lists the pids of this process's children, zombies included.
func Children() ([]int, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", t.Name(), "children"))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // the thread exited
			}
			return nil, err
		}
		for f := range strings.FieldsSeq(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("parsing %q in /proc/self/task/%s/children: %w", f, t.Name(), err)
			}
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return slices.Compact(pids), nil
}

// Sweep kills and reaps every child of this process. Call it only when
// nothing else of the process waits for a child (no exec.Cmd running). It
// returns how many were still alive and how many were zombies.
func Sweep() (alive, zombies int, err error) {
	pids, err := Children()
	if err != nil {
		return 0, 0, err
	}
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // reaped meanwhile
		}
		if zombie(pid) {
			zombies++
		} else {
			alive++
			unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		}
		// Nobody else reaps our child: waiting on its pidfd is safe.
		var info unix.Siginfo
		unix.Waitid(unix.P_PIDFD, fd, &info, unix.WEXITED, nil)
		unix.Close(fd)
	}
	return alive, zombies, nil
}

// zombie reports whether pid is in state Z: the state follows the command
// name, which is in parentheses and may hold any byte.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'Z'
}
