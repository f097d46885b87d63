//go:build linux

package supervisor_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/supervisor"
	"github.com/handoff-dev/handoff/worker"
)

func init() {
	// web says READY=1 at once and serves HTTP on its first listener:
	// 500 if HANDOFF_GENERATION is TEST_BAD_GEN (ready lied), else 200.
	helpers["web"] = func() int {
		ls, err := listener.Inherit()
		if err != nil || len(ls) == 0 {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 3
		}
		gen := os.Getenv(worker.EnvGeneration)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if gen == os.Getenv("TEST_BAD_GEN") {
				http.Error(w, "broken build", http.StatusInternalServerError)
				return
			}
			fmt.Fprintf(w, "%d %s\n", os.Getpid(), gen)
		})}
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		go srv.Serve(ls[0])
		if err := worker.Ready(); err != nil {
			return 3
		}
		<-term
		srv.Shutdown(context.Background())
		return 0
	}
	// probe is an exec probe: it fails when the canary it is given
	// (HANDOFF_PROBE_PID) runs generation TEST_BAD_GEN, read from the
	// worker's own environment.
	helpers["probe"] = func() int {
		env, err := os.ReadFile("/proc/" + os.Getenv(supervisor.EnvProbePID) + "/environ")
		if err != nil {
			fmt.Println("probe:", err)
			return 2
		}
		bad := []byte(worker.EnvGeneration + "=" + os.Getenv("TEST_BAD_GEN"))
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, bad) {
				fmt.Println("canary runs the bad generation")
				return 1
			}
		}
		return 0
	}
}

// TestProbeFailsRoll: a generation whose workers say READY=1 but fail the
// probe (answer 500; an exec probe exits 1) is rolled back and the old
// worker serves throughout; the next, healthy generation rolls.
func TestProbeFailsRoll(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		probe supervisor.Probe
		want  string
	}{
		{"http", supervisor.ProbeHTTP("/healthz"), "status 500"},
		{"exec", supervisor.ProbeExec("env", "HANDOFF_TEST_HELPER=probe", "TEST_BAD_GEN=2", "GORACE=atexit_sleep_ms=0", exe),
			"canary runs the bad generation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := deadline(t)
			core, logs := observer.New(zap.InfoLevel)
			t.Cleanup(func() {
				if t.Failed() {
					for _, e := range logs.All() {
						t.Log(e.Message, e.ContextMap())
					}
				}
			})
			f := newFixture(t, "web", []string{"TEST_BAD_GEN=2"},
				supervisor.WithLogger(zap.New(core)), supervisor.WithReadiness(supervisor.ReadyOnNotify()),
				supervisor.WithWorkers(1), supervisor.WithAcceptWindow(time.Second), supervisor.WithProbe(tc.probe))
			f.run(ctx)
			old := f.waitReady(ctx)
			get := func() string {
				t.Helper()
				c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
				resp, err := c.Get("http://" + f.sock.Addr().String() + "/")
				if err != nil {
					t.Fatalf("GET: %v", err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("GET: %s %s", resp.Status, b)
				}
				return strings.TrimSpace(string(b))
			}

			// The bad generation: rolled back, the old worker never retired.
			err := f.s.Roll(ctx)
			if err == nil || !strings.Contains(err.Error(), "probe") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Roll to the bad generation: %v, want a probe failure with %q", err, tc.want)
			}
			st := f.s.Stats()
			if st.LastRoll == nil || st.LastRoll.Result != supervisor.RollRolledBack || st.Generation != 1 ||
				len(st.Workers) != 1 || st.Workers[0].Pid != old.Pid {
				t.Fatalf("stats after the failed roll: %+v, want worker %d of generation 1", st, old.Pid)
			}
			// The canary was retired; once it is gone, only the old worker answers.
			if sp := f.waitSpawn(ctx); sp.Pid != old.Pid {
				t.Fatalf("first spawn %d, want the old worker %d", sp.Pid, old.Pid)
			}
			waitGone(ctx, t, f.waitSpawn(ctx).Pid)
			if got, want := get(), fmt.Sprintf("%d 1", old.Pid); got != want {
				t.Fatalf("after the failed roll, GET answered %q, want %q", got, want)
			}
			if n := logs.FilterMessage("retiring worker").FilterField(zap.Int("pid", old.Pid)).Len(); n != 0 {
				t.Fatalf("the old worker was retired by a roll whose probe failed")
			}

			// A healthy generation passes the probe and rolls.
			if err := f.s.Roll(ctx); err != nil {
				t.Fatalf("Roll to a healthy generation: %v", err)
			}
			st = f.s.Stats()
			if st.Generation != 3 || len(st.Workers) != 1 || st.Workers[0].Generation != 3 {
				t.Fatalf("stats after the healthy roll: %+v, want generation 3", st)
			}
			if n := logs.FilterMessage("probing the new generation").Len(); n != 2 {
				t.Fatalf("the probe ran %d times, want once per roll", n)
			}
		})
	}
}

// waitGone waits for pid, which need not be a child, to exit.
func waitGone(ctx context.Context, t *testing.T, pid int) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err == unix.ESRCH {
		return
	}
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(fd)
	for ctx.Err() == nil {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 100); err == nil && n > 0 {
			return
		}
	}
	t.Fatalf("worker %d did not exit", pid)
}

// TestProbeBadValue: New refuses a probe it could never run, saying why.
func TestProbeBadValue(t *testing.T) {
	for _, tc := range []struct {
		p    supervisor.Probe
		want string
	}{
		{supervisor.ProbeHTTP("ftp://127.0.0.1:1/"), "want http://HOST:PORT/PATH"},
		{supervisor.ProbeTCP("nohostport"), "want HOST:PORT"},
		{supervisor.ProbeExec(), "exec probe without a command"},
		{supervisor.Probe{}, "use ProbeHTTP, ProbeTCP or ProbeExec"},
	} {
		_, err := supervisor.New(supervisor.Command{Path: "/bin/true"}, supervisor.WithProbe(tc.p))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New with probe %v: %v, want %q", tc.p, err, tc.want)
		}
	}
}
