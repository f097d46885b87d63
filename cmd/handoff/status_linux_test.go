//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStatusForAPerson: after a SIGKILLed worker and a roll, with a client
// holding a connection to an old worker, status shows the slots' last
// exits, the retiring worker with its drain time, the socket's queue, the
// last roll and the metrics address, in text and in JSON; status -watch
// refreshes until interrupted.
func TestStatusForAPerson(t *testing.T) {
	checkFds(t)
	pidfile := t.TempDir() + "/handoff.pid"
	p := startProc(t, bins.handoff, []string{"-workers", "2", "-ready", "notify", "-listen", "tcp://127.0.0.1:0",
		"-metrics", "tcp://127.0.0.1:0", "-pidfile", pidfile, "-log-format", "json", "--", testExe(t)}, helperEnv+"=echo")
	l, from := p.waitMsg(0, "listening")
	addr := l.Addr
	_, from = p.waitReady(from, 2, 1)
	st := statusJSON(t, "-pidfile", pidfile)
	victim := st.Workers[0]
	if err := syscall.Kill(victim.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, from = p.waitLog(from, "the replacement", func(l logLine) bool { return l.Msg == "worker ready" && l.Worker == victim.Slot })
	kept := dialEcho(t, addr)
	defer kept.Close()
	keptPid, err := kept.echo("hold")
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	_, from = p.waitMsg(from, "roll complete")

	st = statusJSON(t, "-pidfile", pidfile)
	if st.LastRoll == nil || st.LastRoll.Result != "completed" || st.LastRoll.Generation != 2 {
		t.Errorf("last roll %+v, want the completed roll to generation 2", st.LastRoll)
	}
	if len(st.RetiringWorkers) != 1 || st.RetiringWorkers[0].Pid != keptPid || st.RetiringWorkers[0].DrainingSeconds <= 0 {
		t.Errorf("retiring %+v, want pid %d draining", st.RetiringWorkers, keptPid)
	}
	if len(st.Slots) != 2 || st.Slots[victim.Slot].LastExit == nil || st.Slots[victim.Slot].LastExit.Reason != "signal" {
		t.Fatalf("slots %+v, want slot %d's last exit", st.Slots, victim.Slot)
	}
	if len(st.Sockets) != 1 || !st.Sockets[0].Known || st.Sockets[0].QueueMax == 0 || st.Sockets[0].Addr != addr || st.Sockets[0].NotServed {
		t.Errorf("sockets %+v, want %s with a known queue, served", st.Sockets, addr)
	}
	if st.MetricsAddr == "" || st.GenerationsAlive != 2 {
		t.Errorf("metrics addr %q, %d generations alive; want an address and 2", st.MetricsAddr, st.GenerationsAlive)
	}
	out := mustCLI(t, "status", "-pidfile", pidfile)
	for _, want := range []string{
		"generation: 2 (2 generations alive)", "last roll:  to generation 2 completed in ",
		"metrics:    http://" + st.MetricsAddr + "/metrics",
		"LAST EXIT", "signal: killed (signal)", "RETIRING", "DRAINING", "SOCKET", addr,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	t.Logf("status:\n%s", out)

	// -watch: two refreshes, then SIGINT ends it with status 0.
	cmd := exec.Command(bins.handoff, "status", "-watch=100ms", "-pidfile", pidfile)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	frames := 0
	sc := bufio.NewScanner(stdout)
	for frames < 2 && sc.Scan() {
		if strings.HasPrefix(sc.Text(), "handoff ") && strings.Contains(sc.Text(), ", pid ") {
			frames++
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	go func() {
		for sc.Scan() {
		}
	}()
	if err := cmd.Wait(); err != nil || frames != 2 {
		t.Errorf("status -watch: %d frames, then %v on SIGINT; want 2 and exit 0", frames, err)
	}
	kept.Close()
	if code := p.stop(); code != 0 {
		t.Errorf("handoff exited with %d, want 0", code)
	}
}

// TestPythonHTTPServerNotServed is the black hole: Debian's
// python3 -m http.server ignores fd 3 and binds a port of its own, so
// connections to handoff's port wait in the kernel's queue. handoff warns
// within -not-served-after, and status shows it.
func TestPythonHTTPServerNotServed(t *testing.T) {
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Skip("no /usr/bin/python3 (Debian's python3, which .ci/run's gunicorn brings)")
	}
	checkFds(t)
	pidfile := t.TempDir() + "/handoff.pid"
	p := startProc(t, bins.handoff, []string{"-listen", "tcp://127.0.0.1:0", "-not-served-after", "1s",
		"-pidfile", pidfile, "-log-format", "json", "--", python, "-m", "http.server", "--bind", "127.0.0.1", "0"})
	l, from := p.waitMsg(0, "listening")
	_, from = p.waitReady(from, 1, 1)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	began := time.Now()
	for range 3 {
		c, err := net.DialTimeout("tcp", l.Addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	w, _ := p.waitMsg(from, "listening socket not served: connections wait in its accept queue and no worker takes them")
	t.Logf("warned %v after the first connection", time.Since(began).Round(time.Millisecond))
	if w.Level != "warn" {
		t.Errorf("the warning's level is %q", w.Level)
	}
	out := mustCLI(t, "status", "-pidfile", pidfile)
	if !strings.Contains(out, "WARNING:    socket ") || !strings.Contains(out, "is not served: 3 connections wait") {
		t.Errorf("status does not warn:\n%s", out)
	}
	raw := mustCLI(t, "status", "-json", "-pidfile", pidfile)
	var r response
	if err := json.Unmarshal([]byte(raw), &r); err != nil || r.Status == nil || len(r.Status.Sockets) != 1 {
		t.Fatalf("status -json: %v\n%s", err, raw)
	}
	if q := r.Status.Sockets[0]; !q.NotServed || q.QueueLength != 3 || q.NotServedSince == nil {
		t.Errorf("socket %+v, want not served with 3 waiting", q)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	if code := p.stop(); code != 0 {
		t.Errorf("handoff exited with %d, want 0", code)
	}
}
