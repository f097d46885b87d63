package proctree

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"testing"

	"go.uber.org/goleak"
)

const helperEnv = "HANDOFF_PROCTREE_TEST_HELPER"

// TestMain runs the helper named in HANDOFF_PROCTREE_TEST_HELPER instead of the tests: "parent"
// starts "leaf" and waits for it; "leaf" prints its pid and waits for EOF on stdin.
func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		goleak.VerifyTestMain(m)
	case "parent":
		exe, _ := os.Executable()
		c := exec.Command(exe)
		c.Env = append(os.Environ(), helperEnv+"=leaf")
		c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
		c.Run()
	case "leaf":
		fmt.Println(os.Getpid())
		io.Copy(io.Discard, os.Stdin)
	}
}

func TestTree(t *testing.T) {
	// 10 is a worker with child 11 and grandchild 12; 13 left the tree but stayed in group 10;
	// 14 is its child; 20 is another worker; 1 is self, whose group 1 is never walked.
	procs := []Proc{
		{Pid: 10, PPid: 1, Pgid: 10}, {Pid: 11, PPid: 10, Pgid: 10}, {Pid: 12, PPid: 11, Pgid: 12},
		{Pid: 13, PPid: 1, Pgid: 10}, {Pid: 14, PPid: 13, Pgid: 14},
		{Pid: 20, PPid: 1, Pgid: 20}, {Pid: 21, PPid: 20, Pgid: 20}, {Pid: 1, PPid: 0, Pgid: 1},
	}
	pids := func(ps []Proc) []int {
		var out []int
		for _, p := range ps {
			out = append(out, p.Pid)
		}
		slices.Sort(out)
		return out
	}
	if got := pids(Tree(procs, 1, map[int]bool{10: true}, nil)); !slices.Equal(got, []int{11, 12}) {
		t.Errorf("by parent: %v, want [11 12]", got)
	}
	if got := pids(Tree(procs, 1, map[int]bool{10: true}, map[int]bool{10: true, 1: true})); !slices.Equal(got, []int{11, 12, 13, 14}) {
		t.Errorf("by parent and group: %v, want [11 12 13 14]", got)
	}
}
