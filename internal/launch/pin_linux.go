package launch

import (
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// OpenExe opens the program at path if it can run from its descriptor: an
// ELF binary (a script's interpreter would be handed a descriptor closed by
// then). self reports whether it is the running supervisor's own binary.
func OpenExe(path string) (exe *os.File, self bool) {
	f, err := os.Open(path) // close-on-exec
	if err != nil {
		return nil, false
	}
	magic := make([]byte, 4)
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		f.Close()
		return nil, false
	}
	if _, err := f.ReadAt(magic, 0); err != nil || !bytes.Equal(magic, []byte("\x7fELF")) {
		f.Close()
		return nil, false
	}
	return f, IsSelf(f)
}

// IsSelf reports whether f is the running supervisor's own binary.
func IsSelf(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	me, err := os.Stat("/proc/self/exe")
	return err == nil && os.SameFile(fi, me)
}

// exeAbove returns a path that runs exe in a child whose first n
// descriptors the spawn sets: /proc/self/fd/N of a close-on-exec duplicate
// of exe numbered n or more, which the child's exec opens before it
// closes the duplicate. done closes the duplicate, once the child has
// exec'd.
func exeAbove(exe *os.File, n int) (path string, done func(), err error) {
	rc, err := exe.SyscallConn()
	if err != nil {
		return "", nil, err
	}
	var fd int
	var ferr error
	if err := rc.Control(func(f uintptr) { fd, ferr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, n) }); err != nil {
		return "", nil, err
	}
	if ferr != nil {
		return "", nil, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", ferr)
	}
	return "/proc/self/fd/" + strconv.Itoa(fd), func() { unix.Close(fd) }, nil
}
