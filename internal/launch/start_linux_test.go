package launch

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/reap"
)

// TestOpenExe pins ELF binaries only, and knows its own.
func TestOpenExe(t *testing.T) {
	script := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if f, _ := OpenExe(script); f != nil {
		f.Close()
		t.Error("a script was pinned")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, isSelf := OpenExe(self)
	if f == nil || !isSelf {
		t.Fatalf("the test binary: %v, self %v", f, isSelf)
	}
	f.Close()
	if f, isSelf := OpenExe("/bin/sh"); f == nil || isSelf {
		t.Errorf("/bin/sh: %v, self %v; want pinned, not self", f, isSelf)
	} else {
		f.Close()
	}
}

// TestStartPinned: a pinned program runs even once its path names something else, with the
// extra file as fd 3.
func TestStartPinned(t *testing.T) {
	rp, err := reap.New()
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	dir := t.TempDir()
	sh := filepath.Join(dir, "sh")
	src, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sh, src, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, self := OpenExe(sh)
	if exe == nil || self {
		t.Fatalf("OpenExe(%s): %v, %v", sh, exe, self)
	}
	defer exe.Close()
	if err := os.Remove(sh); err != nil { // the path names nothing now
		t.Fatal(err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	extraR, extraW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer extraR.Close()
	defer extraW.Close()
	// Written before the start: os.Pipe's ends are non-blocking, and the
	// child's read end is too (its mode is the pipe's, not the process's),
	// so a read that comes before the write gets EAGAIN, not the line.
	io.WriteString(extraW, "fd3\n")
	proc, err := Start[*listener.Socket](rp, nil, Spec{Path: sh, Args: []string{"sh", "-c", `read v <&3; echo "$X $v"`},
		Env: []string{"X=pinned"}, Stdio: [3]*os.File{devnull, w, w}, ExtraFiles: []*os.File{extraR}, Exe: exe})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(r)
	ctx := context.Background()
	if d, ok := t.Deadline(); ok {
		var cancel func()
		ctx, cancel = context.WithDeadline(ctx, d)
		defer cancel()
	}
	if st, err := proc.Wait(ctx); err != nil || !st.Success() {
		t.Fatalf("the child: %v, %v (%s)", st, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "pinned fd3" {
		t.Errorf("output %q, want the environment's X and a line read from fd 3", got)
	}
}
