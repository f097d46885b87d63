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

// TestIndexTrees: one index answers for each root what Tree answers for it
// alone, and a walk of many roots and groups at once finds their union.
func TestIndexTrees(t *testing.T) {
	// Workers 10, 20, 30 lead their groups; 11 and 12 are 10's child and
	// grandchild; 13 left 10's tree but not its group; 21 is 20's; 31 and
	// 32 are 30's, 32 in a session of its own; 40 is unrelated; 1 is self.
	procs := []Proc{
		{Pid: 1, PPid: 0, Pgid: 1}, {Pid: 10, PPid: 1, Pgid: 10}, {Pid: 11, PPid: 10, Pgid: 10},
		{Pid: 12, PPid: 11, Pgid: 12}, {Pid: 13, PPid: 1, Pgid: 10}, {Pid: 20, PPid: 1, Pgid: 20},
		{Pid: 21, PPid: 20, Pgid: 1}, {Pid: 30, PPid: 1, Pgid: 30}, {Pid: 31, PPid: 30, Pgid: 30},
		{Pid: 32, PPid: 31, Pgid: 32}, {Pid: 40, PPid: 1, Pgid: 40},
	}
	pids := func(ps []Proc) []int {
		out := []int{}
		for _, p := range ps {
			out = append(out, p.Pid)
		}
		slices.Sort(out)
		return out
	}
	ix := NewIndex(procs, 1)
	if ix.Len() != len(procs) {
		t.Errorf("Len %d, want %d", ix.Len(), len(procs))
	}
	for root, want := range map[int][]int{10: {11, 12, 13}, 20: {21}, 30: {31, 32}, 40: {}, 99: {}} {
		set := map[int]bool{root: true}
		if got := pids(ix.Tree(set, set)); !slices.Equal(got, want) {
			t.Errorf("tree of %d: %v, want %v", root, got, want)
		}
		if got := pids(Tree(procs, 1, set, set)); !slices.Equal(got, want) {
			t.Errorf("Tree of %d: %v, want %v", root, got, want)
		}
	}
	all := map[int]bool{10: true, 20: true, 30: true}
	if got := pids(ix.Tree(all, map[int]bool{10: true, 1: true})); !slices.Equal(got, []int{11, 12, 13, 21, 31, 32}) {
		t.Errorf("all three: %v, want [11 12 13 21 31 32]", got)
	}
}
