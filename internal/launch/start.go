package launch

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"syscall"

	"github.com/handoff-dev/handoff/reap"
)

// A Spec is a worker to start.
type Spec struct {
	Path       string
	Args, Env  []string
	Dir        string
	Stdio      [3]*os.File // fds 0, 1, 2
	ExtraFiles []*os.File  // after the sockets
	// Live are the files after ExtraFiles (the liveness pipe's read end); a pinned Exe comes
	// after them.
	Live   []*os.File
	Cred   *Credential // nil: the supervisor's own
	Cgroup *os.File    // a cgroup directory to start in (CLONE_INTO_CGROUP); nil: none
	// Exe, unless nil, is Path's program pinned open, which runs instead of whatever is at
	// Path now; Self says it is the supervisor's own binary.
	Exe  *os.File
	Self bool
}

// A Credential is the user and groups a worker runs as, by number: syscall.Credential, which
// Windows does not have.
type Credential struct {
	UID, GID uint32
	Groups   []uint32
}

// Start starts the process sp describes through rp, with socks from fd 3, in a process group
// of its own. Every file is handed over as a raw descriptor (never through File.Fd, which
// would make a shared socket blocking): fds 0-2, the sockets, ExtraFiles, Live, then the
// pinned program if the trampoline needs it as a descriptor.
func Start[S Controller](rp *reap.Reaper, socks []S, sp Spec) (proc *reap.Process, err error) {
	// The trampoline would only exit 127; say what is wrong instead.
	if sp.Exe == nil {
		if _, err := exec.LookPath(sp.Path); err != nil {
			return nil, err
		}
	}
	std, err := RawFds(sp.Stdio[:])
	if err != nil {
		return nil, err
	}
	extra, err := RawFds(sp.ExtraFiles)
	if err != nil {
		return nil, err
	}
	live, err := RawFds(sp.Live)
	if err != nil {
		return nil, err
	}
	path, argv, env := sp.Path, sp.Args, sp.Env
	switch {
	case sp.Exe == nil:
		path, argv, env = Trampoline(sp.Path, sp.Args, env)
	case sp.Self: // the image this process runs, whatever is at its path now
		path, argv, env = Trampoline("/proc/self/exe", sp.Args, env)
	default:
		n := len(std) + len(socks) + len(extra) + len(live)
		if tpath, targv, tenv := Trampoline(sp.Path, sp.Args, env); tpath == sp.Path {
			// Nothing to set: the child execs the pinned program itself,
			// as a trampoline's second exec of a Go binary would cost a
			// crash loop dearly.
			p, done, err := exeAbove(sp.Exe, n)
			if err != nil {
				return nil, err
			}
			defer done()
			path, argv, env = p, targv, tenv
			break
		}
		// Handed over as the fd after the liveness pipe's.
		fd, err := RawFds([]*os.File{sp.Exe})
		if err != nil {
			return nil, err
		}
		path, argv, env = TrampolineFd(n, sp.Args, env)
		live = append(live, fd[0])
	}
	cerr := ControlAll(socks, func(socks []uintptr) {
		proc, err = rp.Start(path, argv, &syscall.ProcAttr{
			Dir:   sp.Dir,
			Env:   env,
			Files: slices.Concat(std, socks, extra, live),
			Sys:   sysProcAttr(sp.Cred, sp.Cgroup),
		})
	})
	runtime.KeepAlive(&sp) // its files stay open until the child has its copies
	if err = cmp.Or(cerr, err); err != nil {
		return nil, fmt.Errorf("start %s: %w", sp.Path, err)
	}
	return proc, nil
}

// RawFds returns the files' descriptors without switching them to blocking
// mode, as File.Fd would.
func RawFds(files []*os.File) ([]uintptr, error) {
	fds := make([]uintptr, len(files))
	for i, f := range files {
		if f == nil {
			return nil, fmt.Errorf("file %d is nil", i)
		}
		rc, err := f.SyscallConn()
		if err != nil {
			return nil, fmt.Errorf("file %s: %w", f.Name(), err)
		}
		if err := rc.Control(func(fd uintptr) { fds[i] = fd }); err != nil {
			return nil, fmt.Errorf("file %s: %w", f.Name(), err)
		}
	}
	return fds, nil
}
