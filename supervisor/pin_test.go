package supervisor_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/reap"
	"github.com/handoff-dev/handoff/supervisor"
)

// TestGenerationPinsItsRelease: the command runs through a release layout,
// current -> releases/N. Switching current to a broken release does not
// change the serving generation: a worker that crashes is restarted from
// its own release; a roll to the broken one fails and the slot serves on.
func TestGenerationPinsItsRelease(t *testing.T) {
	ctx := deadline(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{"releases/1", "releases/2"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(exe, filepath.Join(dir, "releases/1/worker")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "releases/2/worker"), []byte("#!/bin/sh\nexit 7\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	current := filepath.Join(dir, "current")
	if err := os.Symlink("releases/1", current); err != nil {
		t.Fatal(err)
	}
	sock, err := listener.Listen(listener.Addr{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	ready := make(chan supervisor.WorkerInfo, 16)
	exited := make(chan reap.Status, 16)
	s, err := supervisor.New(supervisor.Command{Path: filepath.Join(current, "worker"), Env: workerEnv(helperEnv + "=notify")},
		supervisor.WithSockets(sock), supervisor.WithLogger(zaptest.NewLogger(t)),
		supervisor.WithReadiness(supervisor.ReadyOnNotify()), supervisor.WithMinUptime(0),
		supervisor.WithAcceptWindow(200*time.Millisecond),
		supervisor.WithHooks(supervisor.Hooks{
			OnReady: func(w supervisor.WorkerInfo) { ready <- w },
			OnExit:  func(w supervisor.WorkerInfo, st reap.Status) bool { exited <- st; return true },
		}))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	w := recv(ctx, t, ready, "the first worker")

	// Deploy the broken release: current -> releases/2.
	tmp := filepath.Join(dir, "current.new")
	if err := os.Symlink("releases/2", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, current); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(w.Pid, syscall.SIGKILL)
	recv(ctx, t, exited, "the crash")
	if nw := recv(ctx, t, ready, "the restarted worker"); nw.Generation != 1 {
		t.Fatalf("restarted worker %+v, want generation 1", nw)
	}
	err = s.Roll(ctx)
	if err == nil || !strings.Contains(err.Error(), "exit status 7") {
		t.Fatalf("roll to the broken release: %v, want its exit status 7", err)
	}
	st := s.Stats()
	if st.Generation != 1 || len(st.Workers) != 1 || st.Workers[0].State != supervisor.Ready || st.Exits.Failed != 1 {
		t.Fatalf("after the failed roll: %+v", st)
	}
	s.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
