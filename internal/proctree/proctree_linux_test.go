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
	"time"
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

// TestStrays watches two processes: one killed is reported on Exits, the other is forgotten
// by Close, whose watcher ends too.
func TestStrays(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ss := NewStrays()
	defer ss.Close()
	var cmds []*exec.Cmd
	for range 2 {
		c := exec.Command(exe)
		c.Env = append(os.Environ(), helperEnv+"=leaf")
		stdin, err := c.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		defer stdin.Close()
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer c.Wait()
		defer c.Process.Kill()
		cmds = append(cmds, c)
	}
	var strays []*Stray
	for i, c := range cmds {
		p, ok := Stat(c.Process.Pid)
		if !ok {
			t.Fatalf("Stat(%d): gone", c.Process.Pid)
		}
		s, err := ss.Watch(p, i)
		if err != nil {
			t.Fatal(err)
		}
		strays = append(strays, s)
	}
	if ss.Len() != 2 || !ss.Has(cmds[0].Process.Pid) || strays[1].Owner != 1 {
		t.Fatalf("after two Watch: %d watched, owner %d", ss.Len(), strays[1].Owner)
	}
	if err := strays[0].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var deadline <-chan time.Time
	if d, ok := t.Deadline(); ok {
		deadline = time.After(time.Until(d) - time.Second)
	}
	select {
	case s := <-ss.Exits():
		if s != strays[0] {
			t.Fatalf("exit of %d, want %d", s.Pid, strays[0].Pid)
		}
		ss.Exited(s)
	case <-deadline:
		t.Fatal("no exit reported")
	}
	if ss.Len() != 1 || ss.Has(strays[0].Pid) {
		t.Errorf("after Exited: %d watched", ss.Len())
	}
	ss.Close()
	if err := strays[1].Signal(syscall.SIGTERM); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Signal after Close: %v, want os.ErrClosed", err)
	}
	var none *Strays
	if none.Len() != 0 || none.Has(1) || none.Exits() != nil {
		t.Error("a nil *Strays is not empty")
	}
	none.Close()
}
