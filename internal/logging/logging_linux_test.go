package logging

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// The terminal tests open a Linux pseudo-terminal by hand (TIOCSPTLCK,
// TIOCGPTN).

func TestNewWritesConsoleLinesToATerminal(t *testing.T) {
	ptm, pts := openPty(t)
	l := New(pts)
	l.Debug("hidden")
	l.Info("worker started", zap.Int("worker", 0))
	pts.Close()
	ptm.SetReadDeadline(time.Now().Add(time.Minute))
	buf := make([]byte, 4096)
	n, err := ptm.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	line := string(buf[:n])
	if strings.HasPrefix(line, "{") || !strings.Contains(line, "INFO") || !strings.Contains(line, "worker started") ||
		!strings.Contains(line, "worker=0") || strings.Contains(line, "hidden") {
		t.Fatalf("terminal got %q, want one console line at INFO", line)
	}
}

// openPty returns a pseudo-terminal's master and slave ends.
func openPty(t *testing.T) (ptm, pts *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ptm.Close() })
	rc, err := ptm.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ioErr error
	rc.Control(func(fd uintptr) {
		if ioErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioErr == nil {
			n, ioErr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
		}
	})
	if ioErr != nil {
		t.Fatal(ioErr)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pts.Close() })
	return ptm, pts
}
