//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// wsgiApp answers every request with the pids of the gunicorn worker and
// of its arbiter, which is the process handoff started.
const wsgiApp = `import os

def app(environ, start_response):
    body = b"hello from gunicorn\n"
    start_response("200 OK", [
        ("Content-Type", "text/plain"),
        ("Content-Length", str(len(body))),
        ("X-Arbiter", str(os.getppid())),
    ])
    return [body]
`

// TestGunicorn runs Debian's gunicorn under handoff: "handoff -workers 2 --
// gunicorn --workers 1 app:app". gunicorn takes the socket it is given only
// when LISTEN_PID is its own pid, and its arbiter sends READY=1 with a
// STATUS to NOTIFY_SOCKET; both are checked. Under clients that never
// retry, three rolls (SIGHUP) fail no request, with either readiness.
func TestGunicorn(t *testing.T) {
	gunicorn, err := exec.LookPath("gunicorn")
	if err != nil {
		t.Skip("gunicorn is not installed: apt-get install gunicorn (.ci/run installs it)")
	}
	for _, ready := range []string{"notify", "delay:500ms"} {
		t.Run(ready, func(t *testing.T) { testGunicorn(t, gunicorn, ready) })
	}
}

func testGunicorn(t *testing.T, gunicorn, ready string) {
	checkFds(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(wsgiApp), 0o644); err != nil {
		t.Fatal(err)
	}
	ctl := filepath.Join(dir, "ctl", "handoff.sock")
	p := startProc(t, bins.handoff, []string{"-workers", "2", "-ready", ready, "-listen", "tcp://127.0.0.1:0",
		"-control", ctl, "-log-format", "json", "--", gunicorn, "--workers", "1", "--chdir", dir, "app:app"})
	l, from := p.waitMsg(0, "listening")
	addr := l.Addr
	gens := map[uint64][]int{}
	gens[1], from = p.waitReady(from, 2, 1)

	// gunicorn serves on the socket it was given (LISTEN_PID matched) and
	// says so, rather than binding its default 127.0.0.1:8000.
	p.waitLine("Listening at: http://" + addr)
	if resp := get(t, "tcp", addr); !slices.Contains(gens[1], atoi(resp.Header.Get("X-Arbiter"))) {
		t.Fatalf("answered by arbiter %q, not one of the workers %v", resp.Header.Get("X-Arbiter"), gens[1])
	}
	if ready == "notify" {
		// The arbiter's READY=1 came with a STATUS, kept on the worker.
		for _, w := range statusJSON(t, "-control", ctl).Workers {
			if w.Status != "Gunicorn arbiter booted" {
				t.Errorf("worker %d: status %q, want gunicorn's", w.Pid, w.Status)
			}
		}
	}

	ld := startHTTPLoad("tcp", addr, 8, "X-Arbiter")
	ld.more(t, 50)
	const rolls = 3
	for gen := uint64(2); gen <= 1+rolls; gen++ {
		p.cmd.Process.Signal(unix.SIGHUP)
		gens[gen], from = p.waitReady(from, 2, gen)
		_, from = p.waitMsg(from, "roll complete")
		ld.more(t, 50)
	}
	// The last generation serves: the retired one may still answer the
	// requests already queued at its workers, so wait for it, not for a count.
	for !slices.ContainsFunc(gens[1+rolls], func(pid int) bool { return ld.count(strconv.Itoa(pid)) > 0 }) {
		ld.more(t, 10) // fails the test at its deadline
	}
	ok, failed, errs, by := ld.finish()
	t.Logf("gunicorn, -ready %s: %d requests through %d rolls, %d failed", ready, ok, rolls, failed)
	if failed > 0 {
		t.Errorf("%d of %d requests failed: %q", failed, ok+failed, errs)
	}
	if !slices.ContainsFunc(gens[1+rolls], func(pid int) bool { return by[strconv.Itoa(pid)] > 0 }) {
		t.Errorf("the last generation %v served nothing: %v", gens[1+rolls], by)
	}
	if code := p.stop(); code != 0 {
		t.Errorf("handoff exited with %d after SIGTERM, want 0", code)
	}
}

// TestSystemdSocketUnit starts handoff the way a .socket unit does, with
// systemd's own activator, and no -listen: handoff adopts the socket it is
// given, tells the test (its service manager) READY=1 and STOPPING=1, and
// keeps the socket through an upgrade in place, after which LISTEN_FDS is
// gone, and a reload.
func TestSystemdSocketUnit(t *testing.T) {
	activate, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip("systemd-socket-activate is not installed (.ci/run installs it)")
	}
	checkFds(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "web.sock")
	ctl := filepath.Join(dir, "ctl", "handoff.sock")
	manager := listenNotify(t)
	defer manager.Close()
	p := startProc(t, activate, []string{"-l", sock, "--fdname=web", "-E", "NOTIFY_SOCKET=" + manager.LocalAddr().String(),
		bins.handoff, "-workers", "2", "-ready", "notify", "-control", ctl, "-log-format", "json", "--", bins.example, "-worker"})
	p.waitLine("Listening on " + sock)

	// The first connection makes the activator exec handoff in place.
	if resp := get(t, "unix", sock); resp.Header.Get("X-Generation") != "1" {
		t.Fatalf("X-Generation %q, want 1", resp.Header.Get("X-Generation"))
	}
	l, from := p.waitMsg(0, "handoff starting")
	if l.Pid != p.pid || !slices.Equal(l.SystemdSockets, []string{"web=" + sock}) {
		t.Errorf("handoff started as pid %d with systemd sockets %q; want pid %d, [web=%s]", l.Pid, l.SystemdSockets, p.pid, sock)
	}
	waitNotify(t, manager, p.pid, "READY=1")

	out := mustCLI(t, "upgrade", "-control", ctl)
	if !strings.Contains(out, "2 of 2 workers adopted") {
		t.Errorf("upgrade said:\n%s", out)
	}
	p.waitMsg(from, "supervisor upgraded in place")
	if resp := get(t, "unix", sock); resp.Header.Get("X-Generation") != "1" {
		t.Errorf("after the upgrade: X-Generation %q, want 1", resp.Header.Get("X-Generation"))
	}
	if out := mustCLI(t, "reload", "-control", ctl); !strings.Contains(out, "rolled to generation 2") {
		t.Errorf("reload said:\n%s", out)
	}
	if resp := get(t, "unix", sock); resp.Header.Get("X-Generation") != "2" {
		t.Errorf("after the reload: X-Generation %q, want 2", resp.Header.Get("X-Generation"))
	}
	if code := p.stop(); code != 0 {
		t.Errorf("handoff exited with %d after SIGTERM, want 0", code)
	}
	waitNotify(t, manager, p.pid, "STOPPING=1")
}

// listenNotify opens a notify socket, as systemd does for a Type=notify
// service, that receives the sender's credentials with each message.
func listenNotify(t *testing.T) *net.UnixConn {
	t.Helper()
	name := fmt.Sprintf("@handoff-cli-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	if serr != nil {
		t.Fatal(os.NewSyscallError("setsockopt SO_PASSCRED", serr))
	}
	return c
}

// waitNotify waits for a message from pid that holds the line want.
func waitNotify(t *testing.T, c *net.UnixConn, pid int, want string) {
	t.Helper()
	c.SetReadDeadline(deadline(t))
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	for {
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			t.Fatalf("waiting for %s from pid %d: %v", want, pid, err)
		}
		from := 0
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) > 0 {
			if cred, err := unix.ParseUnixCredentials(&msgs[0]); err == nil {
				from = int(cred.Pid)
			}
		}
		if from == pid && slices.Contains(strings.Split(string(buf[:n]), "\n"), want) {
			return
		}
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}
