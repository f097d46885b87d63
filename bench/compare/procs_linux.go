package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds on waiting for processes to go away.
const (
	killAfter   = 40 * time.Second // stop signal to SIGKILL (nginx, gunicorn and tableflip drain up to 30 s)
	logAfterEnd = 5 * time.Second  // exit to the end of the log (the workers hold it)
)

// proc is a process the harness started, its combined stdout and stderr
// (a pipe its descendants inherit, so the log ends when they have all
// exited), and its exit.
type proc struct {
	name     string
	cmd      *exec.Cmd
	log      *lineLog
	logR     *os.File
	readDone chan struct{} // the log reader saw EOF
	exited   chan struct{} // cmd.Wait returned
	waitErr  error         // read after exited
}

// startProc starts path with args and extra environment entries. Lines go
// to echo too when it is not nil.
func startProc(name, path string, args, env []string, echo io.Writer) (*proc, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	w.Close()
	p := &proc{name: name, cmd: cmd, log: newLineLog(), logR: r,
		readDone: make(chan struct{}), exited: make(chan struct{})}
	go p.read(echo)
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) read(echo io.Writer) {
	defer close(p.readDone)
	defer p.log.close()
	sc := bufio.NewScanner(p.logR)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if echo != nil {
			fmt.Fprintf(echo, "%s| %s\n", p.name, sc.Text())
		}
		p.log.push(sc.Text())
	}
}

// signal sends sig to the process through its pidfd.
func (p *proc) signal(sig syscall.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: sending %v: %w", p.name, sig, err)
	}
	return nil
}

// exitedEarly returns an error if the process has already exited.
func (p *proc) exitedEarly() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited: %v; its last lines:\n%s", p.name, p.waitErr, strings.Join(p.log.tail(15), "\n"))
	default:
		return nil
	}
}

// waitOrKill waits up to d for the process to exit on its own, then
// kills it.
func (p *proc) waitOrKill(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.exited:
		return nil
	case <-t.C:
		p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not exit within %v; killed", p.name, d)
	}
}

// stop sends sig unless the process has exited, SIGKILL after killAfter,
// waits for the log to end (every descendant gone), and returns the exit
// error (nil for status 0) joined with what went wrong. It does not sweep
// orphans: see sweep.
func (p *proc) stop(sig syscall.Signal) error {
	var errs []error
	select {
	case <-p.exited:
	default:
		if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("%s: sending %v: %w", p.name, sig, err))
		}
		t := time.NewTimer(killAfter)
		select {
		case <-p.exited:
		case <-t.C:
			errs = append(errs, fmt.Errorf("%s did not exit within %v of %v; killed", p.name, killAfter, sig))
			p.cmd.Process.Kill()
			<-p.exited
		}
		t.Stop()
	}
	if p.waitErr != nil {
		errs = append(errs, fmt.Errorf("%s: %w", p.name, p.waitErr))
	}
	if err := p.endLog(logAfterEnd); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// endLog waits up to d for the log to end, then closes it anyway.
func (p *proc) endLog(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	var err error
	select {
	case <-p.readDone:
	case <-t.C:
		err = fmt.Errorf("%s: processes still held its log %v after it exited", p.name, d)
		p.logR.Close() // unblocks the reader
		<-p.readDone
	}
	p.logR.Close()
	return err
}

// procStat returns the state letter and the parent pid of pid from
// /proc/pid/stat.
func procStat(pid int) (state string, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, err
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return "", 0, fmt.Errorf("/proc/%d/stat: too short", pid)
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err
}

func procState(pid int) (string, error) {
	st, _, err := procStat(pid)
	return st, err
}

// pidfd is a process the harness did not start directly (tableflip's
// upgraded processes, nginx's daemon master), held by a pidfd so that a
// signal can never reach a process that reused its pid.
type pidfd struct {
	pid int
	fd  int
}

// openPid opens pid and checks that its parent is the harness or one of
// parents: the pid was read from a log line or a pid file, and that is
// the proof that it is still the process meant.
func openPid(pid int, parents ...int) (*pidfd, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, os.NewSyscallError("pidfd_open", err)
	}
	_, ppid, err := procStat(pid)
	if err != nil || ppid != os.Getpid() && !slices.Contains(parents, ppid) {
		unix.Close(fd)
		return nil, fmt.Errorf("pid %d: parent %d is neither the harness nor one of %v (%v)", pid, ppid, parents, err)
	}
	return &pidfd{pid: pid, fd: fd}, nil
}

func (p *pidfd) signal(sig syscall.Signal) error {
	if err := unix.PidfdSendSignal(p.fd, sig, nil, 0); err != nil {
		return fmt.Errorf("pid %d: %w", p.pid, os.NewSyscallError("pidfd_send_signal", err))
	}
	return nil
}

// waitExit waits up to d for the process to exit; it reaps it if it is
// the harness's child.
func (p *pidfd) waitExit(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 20)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return os.NewSyscallError("poll", err)
		}
		if n > 0 {
			var info unix.Siginfo
			unix.Waitid(unix.P_PIDFD, p.fd, &info, unix.WEXITED|unix.WNOHANG, nil) // ECHILD if not ours
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d did not exit within %v", p.pid, d)
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
	}
}

func (p *pidfd) close() { unix.Close(p.fd) }

// freeAddr returns a loopback address whose port was free a moment ago,
// for servers that bind their own sockets (nginx, gunicorn).
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitHTTP polls addr until it answers 200, ctx is done, or p exits.
func waitHTTP(ctx context.Context, addr string, p *proc) error {
	return waitHTTPOver(ctx, addr, p, false)
}

// waitHTTPOver is waitHTTP, over cleartext HTTP/2 (prior knowledge) if h2c.
func waitHTTPOver(ctx context.Context, addr string, p *proc, h2c bool) error {
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	if h2c {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if p != nil {
			if perr := p.exitedEarly(); perr != nil {
				return perr
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to answer: %w (last: %v)", addr, context.Cause(ctx), err)
		case <-tick.C: // polling: nginx and gunicorn give no readiness signal the harness can read
		}
	}
}

// procStatus reads Threads and VmRSS (bytes) from /proc/pid/status.
func procStatus(pid int) (threads int, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "Threads":
			threads, err = strconv.Atoi(f[0])
		case "VmRSS":
			var kb int64
			kb, err = strconv.ParseInt(f[0], 10, 64)
			rss = kb << 10
		}
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, k, err)
		}
	}
	return threads, rss, nil
}

// sleep waits for d: the length of a measurement window or a pace, never
// a way to wait for an event.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// sleepUntil waits until t.
func sleepUntil(ctx context.Context, t time.Time) error { return sleep(ctx, time.Until(t)) }
