//go:build linux

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// The programs under test, built once by TestMain: exampleBin is the
// example server, exampleV2 the same with X-Version "v2", to upgrade to,
// and echoBin the worker-only program of example/echo.
var exampleBin, exampleV2, echoBin string

// module prefixes the import paths built here, so that the builds do not
// depend on the directory the tests run in.
const module = "github.com/handoff-dev/handoff/"

func TestMain(m *testing.M) {
	// Nothing a test starts may escape it: orphans become our children.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "PR_SET_CHILD_SUBREAPER:", err)
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "handoff-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// goleak ends the process with os.Exit, which runs no deferred call:
	// the directory goes in its Cleanup.
	exit := func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}
	exampleBin, exampleV2 = filepath.Join(dir, "example"), filepath.Join(dir, "example-v2")
	echoBin = filepath.Join(dir, "echo")
	for _, b := range [][]string{
		{"go", "build", "-o", exampleBin, module + "example"},
		{"go", "build", "-ldflags", "-X main.version=v2", "-o", exampleV2, module + "example"},
		{"go", "build", "-o", echoBin, module + "example/echo"},
	} {
		build := exec.Command(b[0], b[1:]...)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n", b[len(b)-1], err)
			exit(2)
		}
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(exit))
}
