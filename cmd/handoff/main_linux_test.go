//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// helperEnv names the helper the test binary runs instead of the tests
// (see helpers_linux_test.go).
const helperEnv = "HANDOFF_TEST_HELPER"

// bins are the programs TestMain builds once: handoff, the same with
// version "v2-test" to upgrade to, and the example server.
var bins struct {
	dir, handoff, handoffV2, example string
}

func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		os.Exit(runHelper(name))
	}
	flag.Parse()
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		os.Exit(m.Run()) // a fuzzing process runs FuzzParseCommand only
	}
	// Nothing a test starts may escape it: orphans become our children, and
	// each test reaps (and reports) what is left.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "PR_SET_CHILD_SUBREAPER:", err)
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "handoff-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// The directory must be open to others for the test that runs a client
	// as another user.
	os.Chmod(dir, 0o755)
	bins.dir = dir
	bins.handoff = filepath.Join(dir, "handoff")
	bins.handoffV2 = filepath.Join(dir, "handoff-v2")
	bins.example = filepath.Join(dir, "example")
	if err := buildAll(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	// goleak ends the process with os.Exit, which runs no deferred call:
	// the directory goes in its Cleanup.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// buildAll builds the binaries, in parallel.
func buildAll() error {
	builds := [][]string{
		{"go", "build", "-o", bins.handoff, "."},
		{"go", "build", "-ldflags", "-X main.version=v2-test", "-o", bins.handoffV2, "."},
		{"go", "build", "-o", bins.example, "../../example"},
	}
	errs := make([]error, len(builds))
	var wg sync.WaitGroup
	for i, b := range builds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command(b[0], b[1:]...).CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("%s: %v\n%s", strings.Join(b, " "), err, out)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// deadline is when a wait in t gives up: a minute from now, or sooner if
// the test's own deadline is closer.
func deadline(t *testing.T) time.Time {
	d := time.Now().Add(time.Minute)
	if td, ok := t.Deadline(); ok && td.Add(-5*time.Second).Before(d) {
		d = td.Add(-5 * time.Second)
	}
	return d
}

// checkFds fails t if the test process has more descriptors open at the
// end of t than at its start. Call it first, so that it runs last.
func checkFds(t *testing.T) {
	t.Helper()
	before := countFds(t)
	t.Cleanup(func() {
		if after := countFds(t); after > before {
			t.Errorf("descriptors leaked: %d open before the test, %d after", before, after)
		}
	})
}

func countFds(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// children returns the pids whose parent is the test process.
func children() []int {
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(self) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// reapLeftovers kills and reaps every child of the test process: orphans
// that were re-parented to it, the subreaper. With strict, finding one is
// an error: after a graceful stop nothing may be left.
func reapLeftovers(t *testing.T, strict bool) {
	t.Helper()
	for _, pid := range children() {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		// A zombie is dead: handoff killed it, and as an orphan it is this
		// process's (the subreaper's) to reap. Only a live one was left behind.
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		_, rest, _ := strings.Cut(string(stat), ") ")
		if strict && !strings.HasPrefix(rest, "Z") {
			t.Errorf("process left behind: pid %d (%s)", pid, strings.TrimSpace(string(comm)))
		}
		unix.Kill(pid, unix.SIGKILL)
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, 0, nil)
			if err != unix.EINTR {
				break
			}
		}
	}
}

// logLine is one JSON log line of handoff.
type logLine struct {
	Level      string `json:"level"`
	Msg        string `json:"msg"`
	Addr       string `json:"addr"`
	Pid        int    `json:"pid"`
	Worker     int    `json:"worker"`
	Generation uint64 `json:"generation"`
	Workers    int    `json:"workers"`
	Status     string `json:"status"`
	Error      string `json:"error"`
	Control    string `json:"control"`
	Version    string `json:"version"`
	Processes  int    `json:"processes"`
	Ts         string `json:"ts"`
	Cgroup     string `json:"cgroup"`
	Hint       string `json:"hint"`

	SystemdSockets []string `json:"systemd_sockets"`
}

// proc is a process whose output (stdout and stderr, shared with the
// workers it starts) is read line by line; JSON lines are parsed as logs.
type proc struct {
	t   *testing.T
	cmd *exec.Cmd
	pid int

	mu      sync.Mutex
	lines   []string
	logs    []logLine
	changed chan struct{} // closed and replaced on every new line and at EOF
	eof     bool

	readDone chan struct{}
	exited   chan struct{}
	state    *os.ProcessState
	strict   bool // after a graceful stop: leftovers are errors
}

// startProc starts bin with args, env added to the test's environment.
// Cleanup stops it (SIGTERM, then SIGKILL) and reaps what is left.
func startProc(t *testing.T, bin string, args []string, env ...string) *proc {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	// A worker that is the race-enabled test binary would linger a second
	// at exit without atexit_sleep_ms=0.
	cmd.Env = append(append(os.Environ(), "GORACE=atexit_sleep_ms=0"), env...)
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, pid: cmd.Process.Pid, changed: make(chan struct{}),
		readDone: make(chan struct{}), exited: make(chan struct{})}
	go p.read(r)
	go func() {
		cmd.Wait()
		p.state = cmd.ProcessState
		close(p.exited)
	}()
	t.Cleanup(p.cleanup)
	return p
}

func (p *proc) read(r *os.File) {
	defer close(p.readDone)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.lines = append(p.lines, line)
		var l logLine
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &l) == nil && l.Msg != "" {
			p.logs = append(p.logs, l)
		}
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	p.mu.Lock()
	p.eof = true
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

func (p *proc) cleanup() {
	select {
	case <-p.exited:
	default:
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(time.Until(deadline(p.t))):
			p.t.Errorf("pid %d did not stop on SIGTERM; killing it", p.pid)
			p.cmd.Process.Kill()
			<-p.exited
		}
	}
	reapLeftovers(p.t, p.strict)
	<-p.readDone // every writer of the pipe is gone now
	if p.t.Failed() {
		p.mu.Lock()
		tail := p.lines[max(0, len(p.lines)-80):]
		p.mu.Unlock()
		p.t.Logf("last output of pid %d:\n%s", p.pid, strings.Join(tail, "\n"))
	}
}

// waitLog waits for the first log from index from on that matches, and
// returns it with the index after it.
func (p *proc) waitLog(from int, what string, match func(logLine) bool) (logLine, int) {
	p.t.Helper()
	timeout := time.NewTimer(time.Until(deadline(p.t)))
	defer timeout.Stop()
	for {
		p.mu.Lock()
		for i := from; i < len(p.logs); i++ {
			if match(p.logs[i]) {
				l := p.logs[i]
				p.mu.Unlock()
				return l, i + 1
			}
		}
		from = len(p.logs)
		changed, eof := p.changed, p.eof
		p.mu.Unlock()
		if eof {
			p.t.Fatalf("pid %d: output ended before %s", p.pid, what)
		}
		select {
		case <-changed:
		case <-timeout.C:
			p.t.Fatalf("pid %d: no %s in time", p.pid, what)
		}
	}
}

// waitMsg waits for a log with the message msg.
func (p *proc) waitMsg(from int, msg string) (logLine, int) {
	p.t.Helper()
	return p.waitLog(from, strconv.Quote(msg), func(l logLine) bool { return l.Msg == msg })
}

// waitLine waits for an output line (JSON or not) that holds s.
func (p *proc) waitLine(s string) {
	p.t.Helper()
	timeout := time.NewTimer(time.Until(deadline(p.t)))
	defer timeout.Stop()
	from := 0
	for {
		p.mu.Lock()
		for ; from < len(p.lines); from++ {
			if strings.Contains(p.lines[from], s) {
				p.mu.Unlock()
				return
			}
		}
		changed, eof := p.changed, p.eof
		p.mu.Unlock()
		if eof {
			p.t.Fatalf("pid %d: output ended before a line with %q", p.pid, s)
		}
		select {
		case <-changed:
		case <-timeout.C:
			p.t.Fatalf("pid %d: no line with %q in time", p.pid, s)
		}
	}
}

// waitReady waits for n "worker ready" logs of generation gen and returns
// their pids.
func (p *proc) waitReady(from int, n int, gen uint64) ([]int, int) {
	p.t.Helper()
	var pids []int
	for len(pids) < n {
		var l logLine
		l, from = p.waitLog(from, fmt.Sprintf("worker ready of generation %d", gen), func(l logLine) bool {
			return l.Msg == "worker ready" && l.Generation == gen
		})
		pids = append(pids, l.Pid)
	}
	return pids, from
}

// nlogs is the number of log lines so far: the index to wait from.
func (p *proc) nlogs() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.logs)
}

// stop sends SIGTERM and returns the exit code; afterwards nothing may be
// left running.
func (p *proc) stop() int {
	p.t.Helper()
	p.strict = true
	p.cmd.Process.Signal(syscall.SIGTERM)
	return p.wait()
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(time.Until(deadline(p.t))):
		p.t.Fatalf("pid %d did not exit in time", p.pid)
	}
	return p.state.ExitCode()
}

// cli runs handoff with args to its end and returns its stdout, stderr and
// exit code.
func cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return cliAs(t, nil, args...)
}

// cliAs is cli with the process's credentials (nil: the test's).
func cliAs(t *testing.T, cred *syscall.Credential, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithDeadline(context.Background(), deadline(t))
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.handoff, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("handoff %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

// mustCLI is cli for a command that must succeed.
func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := cli(t, args...)
	if code != 0 {
		t.Fatalf("handoff %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// statusJSON runs "handoff status -json" with args and decodes it.
func statusJSON(t *testing.T, args ...string) *statusReport {
	t.Helper()
	out := mustCLI(t, append([]string{"status", "-json"}, args...)...)
	var r response
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("status -json printed %q: %v", out, err)
	}
	if !r.OK || r.Status == nil {
		t.Fatalf("status -json: %+v", r)
	}
	return r.Status
}

func workerPids(st *statusReport) []int {
	var pids []int
	for _, w := range st.Workers {
		pids = append(pids, w.Pid)
	}
	return pids
}
