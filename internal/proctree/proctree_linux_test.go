package proctree

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestWatchGrandchild finds a grandchild through the tree of its parent, watches it through a
// pidfd, kills it and sees it exit.
func TestWatchGrandchild(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(exe)
	c.Env = append(os.Environ(), helperEnv+"=parent")
	stdin, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Wait()
	defer stdin.Close()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the leaf's pid: %v", err)
	}
	leaf, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}

	procs, err := Scan()
	if err != nil {
		t.Fatal(err)
	}
	var found *Proc
	for _, p := range Tree(procs, os.Getpid(), map[int]bool{c.Process.Pid: true}, nil) {
		if p.Pid == leaf {
			found = &p
		}
	}
	if found == nil || found.PPid != c.Process.Pid {
		t.Fatalf("Tree of %d: leaf %d not found as its child (%+v)", c.Process.Pid, leaf, found)
	}
	if _, err := Open(Proc{Pid: leaf, Start: found.Start + 1}); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Open with another start time: %v, want os.ErrProcessDone", err)
	}
	f, err := Open(*found)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Signal(f, syscall.SIGKILL); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	Wait(f) // returns once the leaf has exited (its parent reaps it)
	stdin.Close()
	if err := c.Wait(); err != nil {
		t.Errorf("parent: %v", err)
	}
	if err := Signal(f, syscall.SIGKILL); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after the exit: %v, want os.ErrProcessDone", err)
	}
}
