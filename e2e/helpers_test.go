//go:build linux

package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/internal/logging/logline"
)

// logLine is one JSON log line of the supervisor.
type logLine struct {
	Msg        string  `json:"msg"`
	Ts         epoch   `json:"ts"`
	Addr       string  `json:"addr"`
	Pid        int     `json:"pid"`
	Worker     int     `json:"worker"`
	Generation uint64  `json:"generation"`
	Status     string  `json:"status"`
	Error      string  `json:"error"`
	Signal     string  `json:"signal"`
	Failures   int     `json:"failures"`
	RetryIn    float64 `json:"retry_in"` // seconds
	From       int     `json:"from"`
	To         int     `json:"to"`
	GoAway     int     `json:"http2_goaway"` // a worker's drain start: HTTP/2 connections sent GOAWAY
	Handed     int     `json:"handed_over"`  // "worker: drain ended": connections handed to the next generation
}

// startExample starts the example's supervisor with args and waits until it
// listens.
func startExample(t *testing.T, args ...string) *supervised {
	t.Helper()
	return startSupervisor(t, exampleBin, nil, args...)
}

// startSupervisor is startSupervisorWith for a process that must start.
func startSupervisor(t *testing.T, bin string, env []string, args ...string) *supervised {
	t.Helper()
	s, err := startSupervisorWith(t, bin, nil, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// supervised is a running supervisor, read through its JSON log.
type supervised struct {
	t      *testing.T
	cmd    *exec.Cmd
	pid    int
	addr   string
	logs   chan logLine
	quit   chan struct{}
	reader sync.WaitGroup
	seen   []logLine // every line until has returned
	junkMu sync.Mutex
	junk   []string // the first lines that were not JSON: a crash's message
	raw    []string // every line, as written
	waited bool
	werr   error
}

// startSupervisorWith starts the supervisor bin with args, env added to the
// test's environment, and attr, and waits until it listens. Its stderr
// (shared by its workers) is read as JSON log lines. It returns an error
// only if the process cannot be started.
func startSupervisorWith(t *testing.T, bin string, attr *syscall.SysProcAttr, env []string, args ...string) (*supervised, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = w
	cmd.SysProcAttr = attr
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	s := &supervised{t: t, cmd: cmd, pid: cmd.Process.Pid, logs: make(chan logLine, 4096), quit: make(chan struct{})}
	s.reader.Add(1)
	go func() {
		defer s.reader.Done()
		defer r.Close()
		defer close(s.logs)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			s.junkMu.Lock()
			s.raw = append(s.raw, sc.Text())
			s.junkMu.Unlock()
			var l logLine
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				s.junkMu.Lock()
				if len(s.junk) < 10 {
					s.junk = append(s.junk, sc.Text())
				}
				s.junkMu.Unlock()
				continue
			}
			select {
			case s.logs <- l:
			case <-s.quit:
			}
		}
	}()
	t.Cleanup(func() {
		close(s.quit)
		if !s.waited {
			cmd.Process.Kill()
			s.wait()
		}
		killOrphans(t)
		s.reader.Wait()
	})
	s.addr = s.next("listening").Addr
	return s, nil
}

// wait waits for the supervisor to exit and returns its error.
func (s *supervised) wait() error {
	if !s.waited {
		s.werr = s.cmd.Wait()
		s.waited = true
	}
	return s.werr
}

func (s *supervised) signal(sig unix.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %v: %v", sig, err)
	}
}

func (s *supervised) next(msg string) logLine {
	s.t.Helper()
	lines := s.until(msg, nil)
	return lines[len(lines)-1]
}

// untilAny returns the log lines up to and including the next one that
// satisfies match.
func (s *supervised) untilAny(match func(logLine) bool) []logLine {
	s.t.Helper()
	return s.until("", func(l logLine) bool { return match(l) })
}

// until returns the log lines up to and including the next one with
// message msg ("": any) that satisfies match (nil: any).
func (s *supervised) until(msg string, match func(logLine) bool) []logLine {
	s.t.Helper()
	var lines []logLine
	timeout := time.After(time.Until(deadline(s.t)))
	for {
		select {
		case l, ok := <-s.logs:
			if !ok {
				s.junkMu.Lock()
				defer s.junkMu.Unlock()
				s.t.Fatalf("supervisor log ended before %q: %v; it wrote:\n%s", msg, s.wait(), strings.Join(s.junk, "\n"))
			}
			lines = append(lines, l)
			s.seen = append(s.seen, l)
			if (msg == "" || l.Msg == msg) && (match == nil || match(l)) {
				return lines
			}
		case <-timeout:
			s.t.Fatalf("timed out waiting for log %q", msg)
		}
	}
}

// killOrphans kills and reaps the processes a test left behind: the test
// process is a child subreaper, so a worker whose supervisor died becomes
// its child. Tests here do not run in parallel, so at a test's end every
// child of the test process is its leftover.
func killOrphans(t *testing.T) {
	for _, pid := range children(t, os.Getpid()) {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue
		}
		var ws unix.WaitStatus
		if _, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
			t.Errorf("process %d outlived its test; killing it", pid)
			unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		}
		unix.Wait4(pid, &ws, 0, nil) // a zombie has no exe: just reap it
		unix.Close(fd)
	}
}

func deadline(t *testing.T) time.Time {
	if d, ok := t.Deadline(); ok {
		return d.Add(-5 * time.Second)
	}
	return time.Now().Add(2 * time.Minute)
}

var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

// get makes one request on a new connection and returns the serving pid.
func get(t *testing.T, addr string) int {
	t.Helper()
	resp, err := noKeepAlive.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: status %d", resp.StatusCode)
	}
	pid, err := strconv.Atoi(resp.Header.Get("X-Worker-Pid"))
	if err != nil || resp.Header.Get("X-Generation") == "" {
		t.Fatalf("GET: bad identity headers %v", resp.Header)
	}
	return pid
}

// workerKids lists the children of the supervisor pid but its janitor
// (supervisor/janitor.go), which is no worker.
func workerKids(t *testing.T, pid int) []int {
	t.Helper()
	var kids []int
	for _, k := range children(t, pid) {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k))
		if arg0, _, _ := strings.Cut(string(cmdline), "\x00"); arg0 != "handoff-janitor" {
			kids = append(kids, k)
		}
	}
	return kids
}

// children lists the pids whose parent is pid.
func children(t *testing.T, pid int) []int {
	t.Helper()
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var kids []int
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if k, err := strconv.Atoi(f); err == nil {
				kids = append(kids, k)
			}
		}
	}
	return kids
}

// zombies lists the children of pid in state Z.
func zombies(t *testing.T, pid int) []int {
	t.Helper()
	var zs []int
	for _, k := range children(t, pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", k))
		if err != nil {
			continue
		}
		// The state follows the command name, which is in parentheses.
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
			zs = append(zs, k)
		}
	}
	return zs
}

func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// pidfd opens a handle on pid, so that it can be signalled and watched
// without a pid-reuse hazard.
func pidfd(t *testing.T, pid int) int {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func alive(fd int) bool {
	return !errors.Is(unix.PidfdSendSignal(fd, 0, nil, 0), unix.ESRCH)
}

// epoch is a log line's time in seconds since the epoch, from the ISO 8601
// text of handoff's JSON logs (or a number).
type epoch float64

func (e *epoch) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return json.Unmarshal(b, (*float64)(e))
	}
	t, err := time.Parse(logline.TimeLayout, s)
	if err != nil {
		return err
	}
	*e = epoch(float64(t.UnixNano()) / 1e9)
	return nil
}
