//go:build unix

package supervisor_test

import (
	"bufio"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/reap"
	"github.com/handoff-dev/handoff/supervisor"
)

func TestHooksChangeSpawnAndVeto(t *testing.T) {
	ctx := deadline(t)
	sock, err := listener.Listen(listener.Addr{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	exe, _ := os.Executable()
	spawned := make(chan supervisor.WorkerInfo, 16)
	vetoed := make(chan reap.Status, 16)
	s, err := supervisor.New(supervisor.Command{Path: exe, Env: workerEnv(helperEnv + "=serve")},
		supervisor.WithSockets(sock),
		supervisor.WithLogger(zaptest.NewLogger(t)),
		supervisor.WithHooks(supervisor.Hooks{
			BeforeSpawn: func(sp *supervisor.Spawn) error {
				sp.Env = append(sp.Env, "TEST_ECHO=from-hook")
				sp.Args = append(sp.Args, "hooked")
				return nil
			},
			AfterSpawn: func(w supervisor.WorkerInfo) { spawned <- w },
			OnExit:     func(w supervisor.WorkerInfo, st reap.Status) bool { vetoed <- st; return false },
		}))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	w := recv(ctx, t, spawned, "a worker")
	c, err := net.Dial("tcp", sock.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if f := strings.Fields(line); len(f) != 6 || f[4] != "from-hook" || f[5] != "hooked" {
		t.Fatalf("worker said %q, want the hook's env and argument", line)
	}
	syscall.Kill(w.Pid, syscall.SIGKILL)
	if st := recv(ctx, t, vetoed, "the vetoed exit"); st.Pid != w.Pid {
		t.Fatalf("OnExit saw pid %d, want %d", st.Pid, w.Pid)
	}
	if st := s.Stats(); len(st.Workers) != 0 {
		t.Fatalf("after a vetoed restart: %d workers, want 0", len(st.Workers))
	}
	select {
	case w := <-spawned:
		t.Fatalf("worker %+v started after a veto", w)
	default:
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestBeforeSpawnErrorIsStartFailure(t *testing.T) {
	ctx := deadline(t)
	exe, _ := os.Executable()
	calls := make(chan struct{}, 16)
	s, err := supervisor.New(supervisor.Command{Path: exe},
		supervisor.WithLogger(zaptest.NewLogger(t)),
		supervisor.WithBackoff(time.Millisecond, time.Millisecond),
		supervisor.WithHooks(supervisor.Hooks{BeforeSpawn: func(*supervisor.Spawn) error {
			calls <- struct{}{}
			return errors.New("no")
		}}))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	for range 3 {
		recv(ctx, t, calls, "a BeforeSpawn call")
	}
	if st := s.Stats(); st.StartFailures < 3 || len(st.Workers) != 0 {
		t.Errorf("stats %+v: want 3 start failures and no worker", st)
	}
	s.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
