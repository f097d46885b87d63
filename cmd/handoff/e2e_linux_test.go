//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// testExe is the test binary, which runs the echo helper as a worker.
func testExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// TestLineEchoServer runs a server that is not HTTP at all under handoff: a
// line-echo server on a TCP socket, taking it with listener.Inherit. A
// rolling restart (SIGHUP) under a stream of new connections fails none of
// them; a client that keeps its connection through the roll stays with
// its old worker, which exits cleanly when that client leaves.
func TestLineEchoServer(t *testing.T) {
	checkFds(t)
	p := startProc(t, bins.handoff, []string{"-workers", "2", "-ready", "notify", "-listen", "tcp://127.0.0.1:0",
		"-log-format", "json", "--", testExe(t)}, helperEnv+"=echo")
	l, from := p.waitMsg(0, "listening")
	addr := l.Addr
	gen1, from := p.waitReady(from, 2, 1)

	kept := dialEcho(t, addr)
	defer kept.Close()
	oldPid, err := kept.echo("before the roll")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(gen1, oldPid) {
		t.Fatalf("answered by pid %d, not one of the workers %v", oldPid, gen1)
	}

	ld := startEchoLoad(addr, 4)
	ld.more(t, 20)
	p.cmd.Process.Signal(syscall.SIGHUP)
	gen2, from := p.waitReady(from, 2, 2)
	_, from = p.waitMsg(from, "roll complete")
	ld.more(t, 20)
	ok, failed, errs, by := ld.finish()
	t.Logf("%d connections through the roll, %d failed", ok, failed)
	if failed > 0 {
		t.Errorf("%d of %d connections failed: %q", failed, ok+failed, errs)
	}
	if !slices.ContainsFunc(gen2, func(pid int) bool { return by[strconv.Itoa(pid)] > 0 }) {
		t.Errorf("no connection reached generation 2 %v: %v", gen2, by)
	}

	// The retired worker still serves the connection it had.
	if pid, err := kept.echo("after the roll"); err != nil || pid != oldPid {
		t.Errorf("the kept connection answered from pid %d (%v), want its worker %d", pid, err, oldPid)
	}
	fresh := dialEcho(t, addr)
	defer fresh.Close()
	if pid, err := fresh.echo("new"); err != nil || !slices.Contains(gen2, pid) {
		t.Errorf("a new connection answered from pid %d (%v), want one of generation 2 %v", pid, err, gen2)
	}
	kept.Close()
	exit, _ := p.waitLog(from, "the retired worker's exit", func(l logLine) bool {
		return l.Msg == "worker exited" && l.Pid == oldPid
	})
	if exit.Status != "exit status 0" {
		t.Errorf("retired worker %d: %s, want exit status 0", oldPid, exit.Status)
	}
	fresh.Close()
	if code := p.stop(); code != 0 {
		t.Errorf("handoff exited with %d after SIGTERM, want 0", code)
	}
}

// TestControlSubcommands drives a running handoff with status, reload,
// upgrade and scale through its pid file, and checks the control socket's
// permissions and the errors a user can meet.
func TestControlSubcommands(t *testing.T) {
	checkFds(t)
	dir := t.TempDir()
	// Open to others, so that the test of another user reaches the control
	// socket's own directory.
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "handoff") // replaced by v2 for the upgrade
	copyFile(t, bins.handoff, bin)
	pidfile := filepath.Join(dir, "handoff.pid")
	ctl := filepath.Join(dir, "handoff.pid.ctl", "control.sock")
	p := startProc(t, bin, []string{"-workers", "2", "-ready", "notify", "-listen", "tcp://127.0.0.1:0",
		"-pidfile", pidfile, "-log-format", "json", "--", testExe(t)}, helperEnv+"=echo")
	l, from := p.waitMsg(0, "handoff starting")
	if l.Control != ctl {
		t.Errorf("control socket %q, want %q", l.Control, ctl)
	}
	l, from = p.waitMsg(from, "listening")
	addr := l.Addr
	gen1, from := p.waitReady(from, 2, 1)

	t.Run("permissions", func(t *testing.T) {
		di, err := os.Lstat(filepath.Dir(ctl))
		if err != nil {
			t.Fatal(err)
		}
		si, err := os.Lstat(ctl)
		if err != nil {
			t.Fatal(err)
		}
		if !di.IsDir() || di.Mode().Perm() != 0o700 {
			t.Errorf("control directory: %v, want a directory of mode 0700", di.Mode())
		}
		if si.Mode().Type() != os.ModeSocket || si.Mode().Perm() != 0o600 {
			t.Errorf("control socket: %v, want a socket of mode 0600", si.Mode())
		}
		if os.Geteuid() != 0 {
			t.Skip("another user's client needs root to start")
		}
		_, errs, code := cliAs(t, &syscall.Credential{Uid: 65534, Gid: 65534}, "status", "-control", ctl)
		if code != 1 || !strings.Contains(errs, "permission denied") {
			t.Errorf("status as uid 65534: exit %d, %q; want 1 and permission denied", code, errs)
		}
	})

	t.Run("status", func(t *testing.T) {
		out := mustCLI(t, "status", "-pidfile", pidfile)
		for _, want := range []string{"pid " + strconv.Itoa(p.pid), "generation: 1", "workers:    2, 2 ready", "SLOT  PID"} {
			if !strings.Contains(out, want) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}
		for _, pid := range gen1 {
			if !slices.ContainsFunc(strings.Split(out, "\n"), func(line string) bool {
				f := strings.Fields(line)
				return len(f) >= 4 && f[1] == strconv.Itoa(pid) && f[2] == "1" && f[3] == "ready"
			}) {
				t.Errorf("status has no row for worker %d, generation 1, ready:\n%s", pid, out)
			}
		}
		st := statusJSON(t, "-pidfile", pidfile)
		if st.Pid != p.pid || st.Generation != 1 || st.Upgraded || len(st.Workers) != 2 {
			t.Errorf("status -json: pid %d generation %d upgraded %v, %d workers; want %d, 1, false, 2", st.Pid, st.Generation, st.Upgraded, len(st.Workers), p.pid)
		}
		for _, w := range st.Workers {
			if w.State != "ready" || !slices.Contains(gen1, w.Pid) || w.UptimeSeconds <= 0 {
				t.Errorf("worker %+v: want ready, one of %v, up", w, gen1)
			}
		}
		if byControl := statusJSON(t, "-control", ctl); byControl.Pid != p.pid {
			t.Errorf("status -control: pid %d, want %d", byControl.Pid, p.pid)
		}
	})

	var gen2 []int
	t.Run("reload", func(t *testing.T) {
		out := mustCLI(t, "reload", "-pidfile", pidfile)
		if !strings.Contains(out, "rolled to generation 2") {
			t.Errorf("reload said:\n%s", out)
		}
		st := statusJSON(t, "-pidfile", pidfile)
		gen2 = workerPids(st)
		if st.Generation != 2 || len(gen2) != 2 || slices.ContainsFunc(gen2, func(pid int) bool { return slices.Contains(gen1, pid) }) {
			t.Errorf("after reload: generation %d, workers %v; want generation 2, two new workers (not %v)", st.Generation, gen2, gen1)
		}
	})

	t.Run("broken upgrade", func(t *testing.T) {
		before := statusJSON(t, "-pidfile", pidfile)
		if err := os.WriteFile(bin+".new", []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(bin+".new", bin); err != nil {
			t.Fatal(err)
		}
		_, errs, code := cli(t, "upgrade", "-pidfile", pidfile)
		if code != 1 || !strings.Contains(errs, "handoff keeps running as it was") || !strings.Contains(errs, "preflight") {
			t.Errorf("upgrade to a broken binary: exit %d, %q; want 1 and why", code, errs)
		}
		after := statusJSON(t, "-pidfile", pidfile)
		if !after.ExecTime.Equal(before.ExecTime) || !slices.Equal(workerPids(after), workerPids(before)) {
			t.Errorf("after a failed upgrade: exec %v workers %v; want %v %v as before", after.ExecTime, workerPids(after), before.ExecTime, workerPids(before))
		}
	})

	t.Run("upgrade", func(t *testing.T) {
		before := statusJSON(t, "-pidfile", pidfile)
		copyFile(t, bins.handoffV2, bin) // a new build, installed over the old one
		out := mustCLI(t, "upgrade", "-pidfile", pidfile)
		for _, want := range []string{"upgrade started; the supervisor re-executed", "upgraded in place", "runs handoff v2-test", "2 of 2 workers adopted"} {
			if !strings.Contains(out, want) {
				t.Errorf("upgrade lacks %q:\n%s", want, out)
			}
		}
		after := statusJSON(t, "-pidfile", pidfile)
		if after.Pid != p.pid || after.Version != "v2-test" || !after.Upgraded || !after.ExecTime.After(before.ExecTime) {
			t.Errorf("after upgrade: pid %d version %q upgraded %v exec %v; want %d, v2-test, true, after %v",
				after.Pid, after.Version, after.Upgraded, after.ExecTime, p.pid, before.ExecTime)
		}
		if !slices.Equal(workerPids(after), workerPids(before)) {
			t.Errorf("workers %v after the upgrade, %v before: want the same, adopted", workerPids(after), workerPids(before))
		}
		up, _ := p.waitMsg(from, "supervisor upgraded in place")
		// Retired workers still draining are adopted too.
		if up.Workers < 2 || up.Pid != p.pid {
			t.Errorf("upgrade log: %+v; want at least 2 workers adopted by pid %d", up, p.pid)
		}
		c := dialEcho(t, addr)
		defer c.Close()
		if pid, err := c.echo("after the upgrade"); err != nil || !slices.Contains(gen2, pid) {
			t.Errorf("echo after the upgrade from pid %d (%v), want one of %v", pid, err, gen2)
		}
	})

	t.Run("scale", func(t *testing.T) {
		at := p.nlogs()
		out := mustCLI(t, "scale", "3", "-pidfile", pidfile)
		if !strings.Contains(out, "scaling to 3 workers") {
			t.Errorf("scale said:\n%s", out)
		}
		l, _ := p.waitLog(at, "a third worker ready", func(l logLine) bool { return l.Msg == "worker ready" && l.Worker == 2 })
		st := statusJSON(t, "-pidfile", pidfile)
		if len(st.Workers) != 3 || !slices.Contains(workerPids(st), l.Pid) {
			t.Errorf("after scale 3: workers %v, want 3 with %d", workerPids(st), l.Pid)
		}
	})

	t.Run("second instance", func(t *testing.T) {
		_, errs, code := cli(t, "-listen", "tcp://127.0.0.1:0", "-pidfile", pidfile, "--", "/bin/true")
		if code != 1 || !strings.Contains(errs, "another handoff answers") {
			t.Errorf("a second handoff with the same pid file: exit %d, %q; want 1 and another handoff answers", code, errs)
		}
		if pid, err := readPidfile(pidfile); err != nil || pid != p.pid {
			t.Errorf("pid file after the refused start: %d, %v; want %d", pid, err, p.pid)
		}
	})

	if code := p.stop(); code != 0 {
		t.Errorf("handoff exited with %d after SIGTERM, want 0", code)
	}
	for _, gone := range []string{pidfile, ctl, filepath.Dir(ctl)} {
		if _, err := os.Lstat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left after the stop (%v)", gone, err)
		}
	}

	t.Run("no pid file", func(t *testing.T) {
		_, errs, code := cli(t, "status", "-pidfile", pidfile)
		if code != 1 || !strings.Contains(errs, "no pid file at "+pidfile) {
			t.Errorf("status without a pid file: exit %d, %q", code, errs)
		}
	})
	t.Run("stale pid file", func(t *testing.T) {
		dead := exec.Command(testExe(t))
		dead.Env = append(os.Environ(), helperEnv+"=exit", "GORACE=atexit_sleep_ms=0")
		dead.Run()
		if err := os.WriteFile(pidfile, []byte(strconv.Itoa(dead.Process.Pid)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, errs, code := cli(t, "reload", "-pidfile", pidfile)
		want := "stale pid file " + pidfile + ": process " + strconv.Itoa(dead.Process.Pid) + " is not running"
		if code != 1 || !strings.Contains(errs, want) {
			t.Errorf("reload with a stale pid file: exit %d, %q; want 1 and %q", code, errs, want)
		}
	})
	t.Run("no control socket", func(t *testing.T) {
		_, errs, code := cli(t, "status", "-control", ctl)
		if code != 1 || !strings.Contains(errs, ctl) {
			t.Errorf("status -control with nothing there: exit %d, %q", code, errs)
		}
	})
}

// TestFlagsReachWorkers: the socket's name from -listen, the watchdog
// interval and the stop signal get to the worker.
func TestFlagsReachWorkers(t *testing.T) {
	checkFds(t)
	p := startProc(t, bins.handoff, []string{"-listen", "lines=tcp://127.0.0.1:0", "-ready", "notify", "-watchdog", "30s",
		"-stop-signal", "INT", "-log-format", "json", "--", testExe(t)}, helperEnv+"=echo")
	l, from := p.waitMsg(0, "listening")
	pids, _ := p.waitReady(from, 1, 1)
	c := dialEcho(t, l.Addr)
	defer c.Close()
	for q, want := range map[string]string{"names": "lines", "env WATCHDOG_USEC": "30000000", "env HANDOFF_WORKER": "0"} {
		if _, got, err := c.ask(q); err != nil || got != want {
			t.Errorf("worker asked %q: %q, %v; want %q", q, got, err, want)
		}
	}
	c.Close()
	if code := p.stop(); code != 0 {
		t.Errorf("handoff exited with %d after SIGTERM, want 0", code)
	}
	p.waitLine(fmt.Sprintf("echo %d: stopping on interrupt", pids[0]))
}

// TestExitCodes: 1 when the server cannot start (its address is taken), 2
// for a bad command line, naming the flag or value.
func TestExitCodes(t *testing.T) {
	checkFds(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, errs, code := cli(t, "-listen", "tcp://"+taken.Addr().String(), "--", "/bin/true")
	if code != 1 || !strings.Contains(errs, "in use") {
		t.Errorf("a taken address: exit %d, %q; want 1 and in use", code, errs)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-workers", "0", "--", "x"}, "-workers 0"},
		{[]string{"-workers", "many", "--", "x"}, "-workers"},
		{[]string{"-ready", "sometimes", "--", "x"}, `"sometimes" for flag -ready`},
		{[]string{"-ready", "delay:soon", "--", "x"}, "-ready"},
		{[]string{"-listen", "udp://127.0.0.1:53", "--", "x"}, `"udp://127.0.0.1:53" for flag -listen`},
		{[]string{"-stop-signal", "NOPE", "--", "x"}, `"NOPE" for flag -stop-signal`},
		{[]string{"-stop-timeout", "-1s", "--", "x"}, "-stop-timeout -1s"},
		{[]string{"-ready-timeout", "0s", "--", "x"}, "-ready-timeout 0s"},
		{[]string{"-watchdog", "1us", "--", "x"}, "-watchdog 1µs"},
		{[]string{"-probe", "ftp://h:1/", "--", "x"}, `"ftp://h:1/" for flag -probe: want http://HOST:PORT/PATH or tcp://HOST:PORT`},
		{[]string{"-probe", "tcp://nohostport", "--", "x"}, `"tcp://nohostport" for flag -probe`},
		{[]string{"-probe-exec", " ", "--", "x"}, `for flag -probe-exec: want a command`},
		{[]string{"-probe", "tcp://127.0.0.1:1", "-probe-exec", "true", "--", "x"}, "-probe and -probe-exec"},
		{[]string{"-log-format", "xml", "--", "x"}, `"xml" for flag -log-format`},
		{[]string{"-cgroups", "maybe", "--", "x"}, `"maybe" for flag -cgroups: want auto, on or off`},
		{[]string{"-bogus", "--", "x"}, "-bogus"},
		{[]string{"-listen", "tcp://127.0.0.1:0"}, "no command to run"},
		{[]string{"--", "/bin/true"}, "-listen ADDR"},
		{[]string{"-listen", "tcp://127.0.0.1:0", "--", "/no/such/server"}, "/no/such/server"},
		{[]string{"scale"}, "scale takes one argument"},
		{[]string{"scale", "two", "-pidfile", "x"}, "want a whole number"},
		{[]string{"scale", "+-1", "-pidfile", "x"}, "want a whole number"},
		{[]string{"-workers", "two", "--", "x"}, `"two" for flag -workers: want a whole number`},
		{[]string{"-stop-timeout", "soon", "--", "x"}, `"soon" for flag -stop-timeout: want a duration`},
		{[]string{"-surge", "0", "--", "x"}, "-surge 0"},
		{[]string{"-max-draining", "-1", "--", "x"}, "-max-draining -1: want 0 (no cap) or more"},
		{[]string{"-max-draining", "many", "--", "x"}, `"many" for flag -max-draining: want a whole number`},
		{[]string{"-min-uptime", "-1s", "--", "x"}, "-min-uptime -1s"},
		{[]string{"-backoff", "0s", "--", "x"}, "-backoff 0s"},
		{[]string{"-backoff", "1s", "-backoff-max", "10ms", "--", "x"}, "-backoff-max 10ms"},
		{[]string{"-max-start-failures", "-1", "--", "x"}, "-max-start-failures -1"},
		{[]string{"-max-lifetime", "-1h", "--", "x"}, "-max-lifetime -1h"},
		{[]string{"-lifetime-jitter", "1m", "--", "x"}, "-lifetime-jitter 1m0s needs -max-lifetime"},
		{[]string{"-env", "NOVALUE", "--", "x"}, `"NOVALUE" for flag -env: want KEY=VALUE`},
		{[]string{"-chdir", "/no/such/dir", "--", "x"}, "-chdir /no/such/dir"},
		{[]string{"-remap-exit", "300=0", "--", "x"}, `"300=0" for flag -remap-exit: want FROM=TO`},
		{[]string{"-shutdown-delay", "-1s", "--", "x"}, "-shutdown-delay -1s"},
		{[]string{"-health", "nonsense", "--", "x"}, `-health: listener: address "nonsense"`},
		{[]string{"-user", "no-such-user", "--", "x"}, `-user "no-such-user": no such user`},
		{[]string{"-group", "no-such-group", "--", "x"}, `-group "no-such-group": no such group`},
		{[]string{"scale", "3"}, "-pidfile PATH or -control PATH"},
		{[]string{"status", "extra", "-pidfile", "x"}, `"extra"`},
		{[]string{"status", "-timeout", "0s", "-pidfile", "x"}, "-timeout 0s"},
		{[]string{"reload", "-bogus"}, "-bogus"},
	} {
		_, errs, code := cli(t, c.args...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("handoff %s: exit %d, %q; want 2 and %q", strings.Join(c.args, " "), code, errs, c.want)
		}
	}

	for _, args := range [][]string{{"-h"}, {"help"}, {"status", "-h"}} {
		out, _, code := cli(t, args...)
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("handoff %s: exit %d, %q; want 0 and the help", strings.Join(args, " "), code, out)
		}
	}
	if out, _, code := cli(t, "-version"); code != 0 || !strings.HasPrefix(out, "handoff ") {
		t.Errorf("handoff -version: exit %d, %q", code, out)
	}
}

// TestExampleWorker runs the repository's example server as a plain worker
// under the CLI, with -ready notify: keep-alive clients that never retry
// lose no request through two rolls.
func TestExampleWorker(t *testing.T) {
	checkFds(t)
	p := startProc(t, bins.handoff, []string{"-workers", "2", "-ready", "notify", "-listen", "tcp://127.0.0.1:0",
		"-log-format", "json", "--", bins.example, "-worker"})
	l, from := p.waitMsg(0, "listening")
	addr := l.Addr
	_, from = p.waitReady(from, 2, 1)
	if resp := get(t, "tcp", addr); resp.Header.Get("X-Generation") != "1" {
		t.Fatalf("X-Generation %q, want 1", resp.Header.Get("X-Generation"))
	}
	ld := startHTTPLoad("tcp", addr, 16, "X-Generation")
	ld.more(t, 100)
	lastRoll := from
	for gen := uint64(2); gen <= 3; gen++ {
		lastRoll = from
		p.cmd.Process.Signal(syscall.SIGHUP)
		_, from = p.waitReady(from, 2, gen)
		_, from = p.waitMsg(from, "roll complete")
		ld.more(t, 100)
	}
	// "roll complete" means the old workers were told to go; once both
	// have drained and exited, only generation 3 answers.
	for range 2 {
		_, lastRoll = p.waitLog(lastRoll, "an exit of generation 2", func(l logLine) bool {
			return l.Msg == "worker exited" && l.Generation == 2
		})
	}
	ld.more(t, 100)
	ok, failed, errs, by := ld.finish()
	t.Logf("%d keep-alive requests through 2 rolls, %d failed; by generation %v", ok, failed, by)
	if failed > 0 {
		t.Errorf("%d of %d requests failed: %q", failed, ok+failed, errs)
	}
	if by["3"] == 0 {
		t.Errorf("generation 3 served nothing: %v", by)
	}
	if code := p.stop(); code != 0 {
		t.Errorf("handoff exited with %d after SIGTERM, want 0", code)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	// Written aside and renamed over: a running binary cannot be opened for
	// writing (ETXTBSY), and an install replaces it this way too.
	tmp := to + ".new"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, to)
	}
	if err != nil {
		t.Fatal(err)
	}
}
