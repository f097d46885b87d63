package supervisor_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/handoff-dev/handoff/supervisor"
)

// manyReport is a line the "supervise-many" helper writes on its stdout.
type manyReport struct {
	Event     string // "ready", "stats", "spawned", "upgrade failed"
	Pid       int
	Resumed   bool
	Workers   []int
	Starts    uint64
	Restarts  uint64
	Upgrades  uint64
	Generated uint64
	Error     string
	// Fds are this process's descriptors that are neither the standard
	// three nor a socket, pipe or pidfd: what might have leaked across
	// the exec (the upgrade state's memfd, for one).
	Fds []string
}

func init() {
	// supervise-many supervises TEST_WORKERS sleeps (ready on start) and
	// reports on its stdout: "ready" once they all are, "spawned" for
	// every later start, "stats" when a line on stdin asks for it; the
	// line "upgrade" upgrades it in place to the same program, which
	// reports "stats" once it has resumed. SIGTERM stops it.
	helpers["supervise-many"] = func() int {
		n, err := strconv.Atoi(os.Getenv("TEST_WORKERS"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		var mu sync.Mutex
		out := json.NewEncoder(os.Stdout)
		report := func(r manyReport) {
			mu.Lock()
			defer mu.Unlock()
			r.Pid = os.Getpid()
			out.Encode(r)
		}
		resumed := supervisor.Resuming()
		ready, spawns := 0, 0
		allReady := make(chan struct{})
		s, err := supervisor.New(supervisor.Command{Path: "/bin/sleep", Args: []string{"sleep", "3600"}},
			supervisor.WithWorkers(n), supervisor.WithSignals(), supervisor.WithUpgradePath(exe),
			supervisor.WithMinUptime(0), supervisor.WithCgroups(false),
			// Warnings and errors only: a thousand workers' starts are
			// noise.
			supervisor.WithLogger(zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
				zapcore.Lock(os.Stderr), zap.WarnLevel))),
			supervisor.WithHooks(supervisor.Hooks{
				OnReady: func(supervisor.WorkerInfo) {
					if ready++; ready == n && !resumed {
						close(allReady)
					}
				},
				AfterSpawn: func(w supervisor.WorkerInfo) {
					if spawns++; resumed || spawns > n {
						report(manyReport{Event: "spawned", Workers: []int{w.Pid}})
					}
				},
			}))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		stats := func(event string) manyReport {
			st := s.Stats()
			r := manyReport{Event: event, Resumed: resumed, Starts: st.Starts, Restarts: st.Restarts,
				Upgrades: st.Upgrades.Completed, Generated: st.Generation, Fds: strayFds()}
			for _, w := range st.Workers {
				r.Workers = append(r.Workers, w.Pid)
			}
			return r
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		select {
		case <-s.Running():
		case err := <-done:
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if resumed {
			report(stats("stats"))
		} else {
			select {
			case <-allReady:
				report(stats("ready"))
			case err := <-done:
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		go func() {
			in := bufio.NewScanner(os.Stdin)
			for in.Scan() {
				switch in.Text() {
				case "stats":
					report(stats("stats"))
				case "upgrade":
					// Upgrade returns only if the exec failed.
					err := s.Upgrade(ctx)
					report(manyReport{Event: "upgrade failed", Error: fmt.Sprint(err)})
				}
			}
		}()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
}

// strayFds lists this process's descriptors above 2 that are no socket,
// pipe, pidfd or other anonymous inode: the files it holds open.
func strayFds() []string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var fds []string
	for _, e := range ents {
		if fd, _ := strconv.Atoi(e.Name()); fd < 3 {
			continue
		}
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || strings.HasPrefix(l, "socket:") || strings.HasPrefix(l, "pipe:") || strings.HasPrefix(l, "anon_inode:") {
			continue
		}
		fds = append(fds, e.Name()+" -> "+l)
	}
	return fds
}

// TestUpgradeManyWorkers: a supervisor of many workers (1,000: the state
// used to travel in one environment variable, which Linux caps at 128 KiB,
// and such a supervisor could not upgrade) upgrades in place: the same
// pid, every worker kept, the counters carried, and nothing of the hand-off
// left open in the new program or in a worker it starts.
func TestUpgradeManyWorkers(t *testing.T) {
	const n = 1000
	ctx := deadline(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = workerEnv(helperEnv+"=supervise-many", "TEST_WORKERS="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reports := make(chan manyReport)
	go func() {
		defer close(reports)
		dec := json.NewDecoder(stdout)
		for {
			var r manyReport
			if err := dec.Decode(&r); err != nil {
				io.Copy(io.Discard, stdout)
				return
			}
			reports <- r
		}
	}()
	defer func() {
		// SIGTERM stops it (the new program, after an upgrade, since the
		// pid is the same); what it still reports is dropped.
		start := time.Now()
		defer func() { t.Logf("stopped in %v", time.Since(start)) }()
		cmd.Process.Signal(syscall.SIGTERM)
		stdin.Close()
		for range reports {
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("the supervisor's exit: %v", err)
		}
	}()
	next := func(what string) manyReport {
		t.Helper()
		select {
		case r, ok := <-reports:
			if !ok {
				t.Fatalf("waiting for %s: the supervisor exited", what)
			}
			if r.Event == "upgrade failed" {
				t.Fatalf("waiting for %s: upgrade: %s", what, r.Error)
			}
			return r
		case <-ctx.Done():
			cmd.Process.Kill()
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		}
		panic("not reached")
	}

	start := time.Now()
	before := next("all workers ready")
	t.Logf("%d workers ready in %v", n, time.Since(start))
	if len(before.Workers) != n || before.Starts != n {
		t.Fatalf("before: %d workers, %d starts; want %d", len(before.Workers), before.Starts, n)
	}
	// One restart, for counters that say something.
	if err := syscall.Kill(before.Workers[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	next("the restart")
	fmt.Fprintln(stdin, "stats")
	before = next("stats before the upgrade")
	if len(before.Workers) != n || before.Starts != n+1 || before.Restarts != 1 {
		t.Fatalf("before: %d workers, %d starts, %d restarts; want %d, %d, 1", len(before.Workers), before.Starts, before.Restarts, n, n+1)
	}

	fmt.Fprintln(stdin, "upgrade")
	start = time.Now()
	after := next("stats after the upgrade")
	t.Logf("upgraded in %v", time.Since(start))
	if !after.Resumed || after.Pid != before.Pid {
		t.Fatalf("after the upgrade: pid %d (resumed %t), want %d", after.Pid, after.Resumed, before.Pid)
	}
	if !slices.Equal(sorted(after.Workers), sorted(before.Workers)) {
		t.Fatalf("after the upgrade the workers are not the same: %d of them, %d before", len(after.Workers), len(before.Workers))
	}
	if after.Starts != before.Starts || after.Restarts != before.Restarts || after.Upgrades != 1 || after.Generated != before.Generated {
		t.Fatalf("counters after the upgrade: %d starts, %d restarts, %d upgrades, generation %d; want %d, %d, 1, %d",
			after.Starts, after.Restarts, after.Upgrades, after.Generated, before.Starts, before.Restarts, before.Generated)
	}
	if fds := memfds(after.Fds); len(fds) > 0 {
		t.Errorf("the new program holds open: %v", fds)
	}
	// A worker the new program starts inherits nothing of the hand-off.
	if err := syscall.Kill(after.Workers[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w := next("a restart after the upgrade").Workers[0]
	if fds := memfds(procFds(t, w)); len(fds) > 0 {
		t.Errorf("worker %d started after the upgrade holds: %v", w, fds)
	}
}

// memfds are the entries of fds that name a memfd.
func memfds(fds []string) []string {
	return slices.DeleteFunc(slices.Clone(fds), func(l string) bool { return !strings.Contains(l, "memfd:") })
}

func sorted(s []int) []int { return slices.Sorted(slices.Values(s)) }

// procFds lists pid's descriptors above 2 that are not a socket (its
// listeners, its notify socket) or a pipe (its liveness pipe).
func procFds(t *testing.T, pid int) []string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range ents {
		if fd, _ := strconv.Atoi(e.Name()); fd < 3 {
			continue
		}
		l, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || strings.HasPrefix(l, "socket:") || strings.HasPrefix(l, "pipe:") {
			continue
		}
		fds = append(fds, e.Name()+" -> "+l)
	}
	return fds
}
