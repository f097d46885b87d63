//go:build linux

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestExample is the foundation's end-to-end test: three workers serve from
// three pids; a killed worker is replaced and leaves no zombie; 50 restarts
// leak no fd; SIGTERM ends everything with status 0.
func TestExample(t *testing.T) {
	sup := startExample(t, "-listen", "127.0.0.1:0", "-workers", "3", "-min-uptime", "0")
	for range 3 {
		sup.next("worker ready")
	}

	// Three distinct workers answer.
	seen := map[int]bool{}
	for len(seen) < 3 && time.Now().Before(deadline(t)) {
		seen[get(t, sup.addr)] = true
	}
	if len(seen) != 3 {
		t.Fatalf("saw %d worker pids, want 3", len(seen))
	}
	kids := children(t, sup.pid)
	for pid := range seen {
		if !containsInt(kids, pid) {
			t.Fatalf("worker %d is not a child of the supervisor %d (children %v)", pid, sup.pid, kids)
		}
	}
	fds := fdCount(t, sup.pid)

	// SIGKILL one worker: a new one serves within a second, no zombie.
	var victim int
	for pid := range seen {
		victim = pid
		break
	}
	killed := time.Now()
	unix.PidfdSendSignal(pidfd(t, victim), unix.SIGKILL, nil, 0)
	replacement := sup.next("worker ready").Pid
	for {
		pid := get(t, sup.addr)
		if pid == replacement {
			break
		}
		if pid == victim {
			t.Fatalf("killed worker %d still answered", victim)
		}
	}
	if d := time.Since(killed); d > time.Second {
		t.Errorf("replacement served %v after the kill, want within 1s", d)
	} else {
		t.Logf("replacement served %v after the kill", d)
	}
	if zs := zombies(t, sup.pid); len(zs) > 0 {
		t.Errorf("zombies after a restart: %v", zs)
	}

	// 50 more restarts of a serving worker: the supervisor's fd count does
	// not move. (A worker killed before it is ready would count as a start
	// failure, and its restarts would back off.)
	current := replacement
	for i := range 50 {
		unix.PidfdSendSignal(pidfd(t, current), unix.SIGKILL, nil, 0)
		l := sup.next("worker ready")
		if l.Pid == current {
			t.Fatalf("restart %d: same pid %d", i, current)
		}
		current = l.Pid
	}
	if got := fdCount(t, sup.pid); got != fds {
		t.Errorf("supervisor fds: %d before 50 restarts, %d after", fds, got)
	}
	if zs := zombies(t, sup.pid); len(zs) > 0 {
		t.Errorf("zombies after 50 restarts: %v", zs)
	}

	// SIGTERM: exit status 0 and no worker left.
	var handles []int
	for _, k := range workerKids(t, sup.pid) {
		handles = append(handles, pidfd(t, k))
	}
	if len(handles) != 3 {
		t.Errorf("supervisor has %d children before SIGTERM, want 3", len(handles))
	}
	sup.cmd.Process.Signal(syscall.SIGTERM)
	if err := sup.wait(); err != nil {
		t.Fatalf("supervisor exit after SIGTERM: %v", err)
	}
	for _, h := range handles {
		if alive(h) {
			t.Errorf("a worker outlived the supervisor")
		}
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestExampleWorkerUnderSystemd runs the example's worker under systemd's
// own socket activator, the reference peer for the fd contract.
func TestExampleWorkerUnderSystemd(t *testing.T) {
	activator, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip("systemd-socket-activate is not installed (.ci/run installs it)")
	}
	sock := filepath.Join(t.TempDir(), "http.sock")
	cmd := exec.Command(activator, "-l", sock, "--fdname=web", exampleBin, "-worker")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		r.Close()
	}()
	// The activator says when it listens; it execs the worker in place on
	// the first connection.
	sc := bufio.NewScanner(r)
	for sc.Scan() && !strings.Contains(sc.Text(), "Listening on") {
	}
	go io.Copy(io.Discard, r)
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}},
	}
	for i := range 3 {
		resp, err := client.Get("http://worker/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Worker-Pid") != strconv.Itoa(cmd.Process.Pid) {
			t.Fatalf("request %d: status %d, pid %q; want 200 from pid %d", i, resp.StatusCode, resp.Header.Get("X-Worker-Pid"), cmd.Process.Pid)
		}
	}
	client.CloseIdleConnections()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("worker exit after SIGTERM: %v", err)
	}
}

// load is a set of keep-alive HTTP clients that never retry: each POSTs in
// a loop on its own connection (Go's client never retries a POST) and
// records who answered.
type load struct {
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu       sync.Mutex
	ok       int
	failed   int
	errs     []string         // the first few failures
	served   map[uint64][]int // generation → pids that answered
	versions map[string]int   // X-Version → responses
	pids     map[int]uint64   // pid → its generation
	waiters  []loadWaiter
}

// loadWaiter is closed when the successes reach n.
type loadWaiter struct {
	n    int
	done chan struct{}
}

func startLoad(t *testing.T, addr string, clients int) *load {
	l := &load{stop: make(chan struct{}), served: map[uint64][]int{}, versions: map[string]int{}, pids: map[int]uint64{}}
	for i := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 15 * time.Second}
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				body := fmt.Sprintf("client %d request %d", i, n)
				resp, err := c.Post("http://"+addr+"/", "text/plain", strings.NewReader(body))
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				l.record(resp, err)
			}
		}()
	}
	return l
}

func (l *load) record(resp *http.Response, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failed++
		if len(l.errs) < 10 {
			l.errs = append(l.errs, err.Error())
		}
		return
	}
	l.ok++
	l.waiters = slices.DeleteFunc(l.waiters, func(w loadWaiter) bool {
		if l.ok >= w.n {
			close(w.done)
			return true
		}
		return false
	})
	pid, _ := strconv.Atoi(resp.Header.Get("X-Worker-Pid"))
	gen, _ := strconv.ParseUint(resp.Header.Get("X-Generation"), 10, 64)
	l.versions[resp.Header.Get("X-Version")]++
	if _, seen := l.pids[pid]; !seen {
		l.pids[pid] = gen
		l.served[gen] = append(l.served[gen], pid)
	}
}

// count returns the successes and failures so far.
func (l *load) count() (ok, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok, l.failed
}

// waitRequests waits until n more requests have succeeded.
func (l *load) waitRequests(t *testing.T, n int) {
	t.Helper()
	l.mu.Lock()
	w := loadWaiter{n: l.ok + n, done: make(chan struct{})}
	l.waiters = append(l.waiters, w)
	l.mu.Unlock()
	select {
	case <-w.done:
	case <-time.After(time.Until(deadline(t))):
		ok, failed := l.count()
		t.Fatalf("load stalled: %d successes, %d failures", ok, failed)
	}
}

func (l *load) finish() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// TestZeroDowntime is the promise of handoff: under 32 keep-alive clients
// that never retry, 10 rolling restarts and 2 in-place upgrades of the
// supervisor (one to a rebuilt binary), then an upgrade to a broken binary,
// fail no request; every roll changes every worker pid; the supervisor's
// pid never changes.
func TestZeroDowntime(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "server")
	copyFile(t, exampleBin, bin)
	sup := startSupervisor(t, bin, nil, "-listen", "127.0.0.1:0", "-workers", "3")
	for range 3 {
		sup.next("worker ready")
	}
	l := startLoad(t, sup.addr, 32)
	defer func() {
		l.finish()
		ok, failed := l.count()
		t.Logf("%d requests, %d failed; generations served %v; versions %v", ok+failed, failed, len(l.served), l.versions)
		if failed > 0 || ok == 0 {
			t.Errorf("%d of %d requests failed: %q", failed, ok+failed, l.errs)
		}
	}()
	l.waitRequests(t, 200)

	upgrade := func(wantExe string) {
		t.Helper()
		before := workerKids(t, sup.pid)
		sup.cmd.Process.Signal(syscall.SIGUSR2)
		sup.until("supervisor upgraded in place", func(ll logLine) bool {
			if ll.Pid != sup.pid {
				t.Fatalf("upgraded supervisor has pid %d, want %d", ll.Pid, sup.pid)
			}
			return true
		})
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", sup.pid)); exe != wantExe {
			t.Fatalf("supervisor runs %q after the upgrade, want %q", exe, wantExe)
		}
		after := workerKids(t, sup.pid)
		for _, pid := range before {
			if !containsInt(after, pid) {
				// A draining worker may have exited meanwhile; a serving one must be adopted.
				t.Logf("child %d gone after the upgrade", pid)
			}
		}
		l.waitRequests(t, 100)
	}

	for gen := uint64(2); gen <= 11; gen++ {
		sup.cmd.Process.Signal(syscall.SIGHUP)
		lines := sup.until("roll complete", func(ll logLine) bool { return ll.Generation == gen })
		started := 0
		for _, ll := range lines {
			if ll.Msg == "worker started" && ll.Generation == gen {
				started++
			}
			if ll.Msg == "roll failed; the previous generation keeps serving" {
				t.Fatalf("roll to generation %d failed: %s", gen, ll.Error)
			}
		}
		if started != 3 {
			t.Fatalf("roll to generation %d started %d workers, want 3", gen, started)
		}
		l.waitRequests(t, 100)
		switch gen {
		case 5:
			upgrade(bin) // same binary
		case 8:
			// A rebuilt binary replaces the old one on disk, as an install would.
			copyFile(t, exampleV2, bin+".new")
			if err := os.Rename(bin+".new", bin); err != nil {
				t.Fatal(err)
			}
			upgrade(bin)
		}
	}

	// A broken binary: the preflight catches it and nothing changes.
	if err := os.WriteFile(bin+".new", []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	sup.cmd.Process.Signal(syscall.SIGUSR2)
	sup.until("upgrade failed; the supervisor keeps running", nil)
	l.waitRequests(t, 200)

	// Every generation was served by its own pids.
	l.mu.Lock()
	owner := map[int]uint64{}
	for gen, pids := range l.served {
		for _, pid := range pids {
			if g, dup := owner[pid]; dup {
				t.Errorf("pid %d served generations %d and %d", pid, g, gen)
			}
			owner[pid] = gen
		}
	}
	if len(l.served) != 11 {
		t.Errorf("responses came from generations %v, want 1 to 11", l.served)
	}
	if l.versions["v2"] == 0 {
		t.Errorf("no response from the rebuilt binary: versions %v", l.versions)
	}
	l.mu.Unlock()

	if err := syscall.Kill(sup.pid, 0); err != nil {
		t.Fatalf("supervisor %d after the broken upgrade: %v", sup.pid, err)
	}
	l.finish()
	sup.cmd.Process.Signal(syscall.SIGTERM)
	if err := sup.wait(); err != nil {
		t.Fatalf("supervisor exit after SIGTERM: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// sdMessage is a datagram the supervisor sent to its service manager.
type sdMessage struct {
	pid  int32
	text string
}

// fakeSystemd listens where a service manager would, in the abstract
// namespace, and returns the NOTIFY_SOCKET value and the messages.
func fakeSystemd(t *testing.T) (string, <-chan sdMessage) {
	t.Helper()
	name := fmt.Sprintf("@handoff-e2e-%d-%d", os.Getpid(), time.Now().UnixNano())
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := conn.SyscallConn()
	rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	msgs := make(chan sdMessage, 256)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf, oob := make([]byte, 4096), make([]byte, 1024)
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			m := sdMessage{text: string(buf[:n])}
			if cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
				for _, c := range cmsgs {
					if cred, err := unix.ParseUnixCredentials(&c); err == nil {
						m.pid = cred.Pid
					}
				}
			}
			select {
			case msgs <- m:
			default: // the test stopped listening
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return name, msgs
}

// expectSd waits for a message from pid that contains every line of want.
func expectSd(t *testing.T, msgs <-chan sdMessage, pid int, want ...string) string {
	t.Helper()
	timeout := time.After(time.Until(deadline(t)))
	for {
		select {
		case m := <-msgs:
			lines := strings.Split(m.text, "\n")
			ok := int(m.pid) == pid
			for _, w := range want {
				ok = ok && slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, w) })
			}
			if ok {
				return m.text
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %q from pid %d", want, pid)
		}
	}
}

// TestSupervisorUnderSystemd: the supervisor tells its service manager
// when it is ready, reloading and stopping; TTIN and TTOU scale; and a
// burst of SIGHUP right after SIGUSR2, landing in the exec window, neither
// kills the supervisor nor loses the roll it asks for.
func TestSupervisorUnderSystemd(t *testing.T) {
	sock, msgs := fakeSystemd(t)
	sup := startSupervisor(t, exampleBin, []string{"NOTIFY_SOCKET=" + sock}, "-listen", "127.0.0.1:0", "-workers", "2")
	expectSd(t, msgs, sup.pid, "READY=1", "STATUS=2 workers ready, generation 1")
	if got := get(t, sup.addr); got == 0 {
		t.Fatal("no worker pid")
	}

	sup.cmd.Process.Signal(syscall.SIGHUP)
	expectSd(t, msgs, sup.pid, "RELOADING=1", "MONOTONIC_USEC=")
	expectSd(t, msgs, sup.pid, "READY=1", "STATUS=2 workers ready, generation 2")

	sup.cmd.Process.Signal(syscall.SIGTTIN)
	sup.until("worker ready", func(l logLine) bool { return l.Worker == 2 })
	sup.cmd.Process.Signal(syscall.SIGTTOU)
	sup.until("retiring worker", func(l logLine) bool { return l.Worker == 2 })

	// The exec window: HUPs sent right after USR2.
	sup.cmd.Process.Signal(syscall.SIGUSR2)
	for range 50 {
		sup.cmd.Process.Signal(syscall.SIGHUP)
	}
	lines := sup.until("supervisor upgraded in place", func(l logLine) bool { return l.Pid == sup.pid })
	// Pending signals are delivered lowest number first, so the roll may
	// start before the upgrade (which then waits for it); HUPs during the
	// preflight are queued into one roll that the new program runs; those
	// after its exec are rolls as usual. Either way a roll completes.
	if !slices.ContainsFunc(lines, func(l logLine) bool { return l.Msg == "roll complete" && l.Generation >= 3 }) {
		sup.until("roll complete", func(l logLine) bool { return l.Generation >= 3 })
	}
	if err := syscall.Kill(sup.pid, 0); err != nil {
		t.Fatalf("supervisor after the signal burst: %v", err)
	}
	get(t, sup.addr)

	sup.cmd.Process.Signal(syscall.SIGTERM)
	expectSd(t, msgs, sup.pid, "STOPPING=1")
	if err := sup.wait(); err != nil {
		t.Fatalf("supervisor exit after SIGTERM: %v", err)
	}
}

// TestSupervisorKilled: after kill -9 of the supervisor, every worker sees
// its liveness pipe close and exits within a second; none is left orphaned.
// (The test process is a child subreaper, so the orphans become its
// children, and it reaps them.)
func TestSupervisorKilled(t *testing.T) {
	sup := startExample(t, "-listen", "127.0.0.1:0", "-workers", "3")
	var workers []int
	for range 3 {
		workers = append(workers, sup.next("worker ready").Pid)
	}
	fds := make([]unix.PollFd, len(workers))
	for i, pid := range workers {
		fds[i] = unix.PollFd{Fd: int32(pidfd(t, pid)), Events: unix.POLLIN}
	}
	killed := time.Now()
	sup.cmd.Process.Kill()
	sup.wait()
	// A pidfd polls readable when its process has exited. Ten seconds is
	// ten times the promise: past it, the workers are not coming down.
	giveUp := time.Now().Add(10 * time.Second)
	for left := len(fds); left > 0; {
		if time.Now().After(giveUp) {
			t.Fatalf("%d workers still alive 10s after the supervisor was killed", left)
		}
		if _, err := unix.Poll(fds, int(time.Until(giveUp).Milliseconds())); err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
		left = 0
		for i := range fds {
			if fds[i].Revents&unix.POLLIN == 0 {
				left++
			}
		}
	}
	took := time.Since(killed)
	t.Logf("all %d workers exited %v after the supervisor was killed", len(workers), took)
	if took > time.Second {
		t.Errorf("workers took %v to exit, want within 1s", took)
	}
	for _, pid := range workers {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
			t.Errorf("reaping orphaned worker %d: %v", pid, err)
		}
	}
	// The janitor, an orphan too, exits once it has seen the workers go.
	for _, pid := range children(t, os.Getpid()) {
		if st := waitOrphan(t, pid); st.Signaled() {
			t.Errorf("process %d left by the supervisor was killed by %v", pid, st.Signal())
		}
	}
}
