//go:build unix

package cloexec

import (
	"os"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSet: a descriptor without the flag (as an exec hands it over) has it
// after Set.
func TestSet(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	flags := func() int {
		t.Helper()
		var v int
		var ferr error
		rc, _ := r.SyscallConn()
		rc.Control(func(fd uintptr) { v, ferr = unix.FcntlInt(fd, unix.F_GETFD, 0) })
		if ferr != nil {
			t.Fatal(ferr)
		}
		return v
	}
	rc, _ := r.SyscallConn()
	rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETFD, 0) })
	if flags()&unix.FD_CLOEXEC != 0 {
		t.Fatal("the flag is still set after clearing it")
	}
	if err := Set(r); err != nil {
		t.Fatal(err)
	}
	if flags()&unix.FD_CLOEXEC == 0 {
		t.Error("not close-on-exec after Set")
	}
}
