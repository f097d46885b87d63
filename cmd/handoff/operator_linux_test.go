package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSubcommandTypo: a word that is neither a subcommand nor a program is
// answered with the subcommand it is close to, not taken as the program to
// run ("no socket to pass on").
func TestSubcommandTypo(t *testing.T) {
	for _, c := range []struct{ word, want string }{
		{"relaod", "did you mean reload?"},
		{"stauts", "did you mean status?"},
		{"upgarde", "did you mean upgrade?"},
		{"scael", "did you mean scale?"},
		{"reloa", "did you mean reload?"},
	} {
		_, errs, code := cli(t, c.word, "-pidfile", "/tmp/x.pid")
		if code != exitUsage || !strings.Contains(errs, `unknown command "`+c.word+`"; `+c.want) {
			t.Errorf("handoff %s: exit %d, %q; want %d and %q", c.word, code, errs, exitUsage, c.want)
		}
	}
	// A program on PATH, or a path, is run as before, however close to a
	// subcommand its name is: here it fails for want of a -listen.
	dir := t.TempDir()
	prog := filepath.Join(dir, "reloads")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{prog}, {"true"}} {
		_, errs, code := cli(t, args...)
		if code != exitUsage || strings.Contains(errs, "did you mean") || !strings.Contains(errs, "-listen ADDR") {
			t.Errorf("handoff %s: exit %d, %q; want the missing -listen named, no suggestion", args[0], code, errs)
		}
	}
	if got := closestCommand("deploy"); got != "" {
		t.Errorf("closestCommand(deploy) = %q, want none", got)
	}
}

// TestPidfileInMissingDirectory: -pidfile in a directory that does not exist
// is a usage error naming it, and nothing is created.
func TestPidfileInMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "no", "such")
	pidfile := filepath.Join(dir, "app.pid")
	_, errs, code := cli(t, "-listen", "tcp://127.0.0.1:0", "-pidfile", pidfile, "--", "/bin/true")
	if code != exitUsage || !strings.Contains(errs, "-pidfile "+pidfile+": the directory "+dir+" does not exist") {
		t.Errorf("exit %d, %q; want %d naming the missing directory", code, errs, exitUsage)
	}
	if _, err := os.Stat(filepath.Dir(dir)); !os.IsNotExist(err) {
		t.Errorf("%s: %v; want it never created", filepath.Dir(dir), err)
	}
}

// TestHealthAddressForms: -health takes the address forms -metrics takes
// (HOST:PORT, tcp://, unix://), and a bad one is refused with the reason.
func TestHealthAddressForms(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "health.sock")
	for _, c := range []struct{ addr, network string }{
		{"127.0.0.1:0", "tcp"},
		{"tcp://127.0.0.1:0", "tcp"},
		{"unix://" + sock, "unix"},
	} {
		checkFds(t)
		p := startProc(t, bins.handoff, []string{"-listen", "tcp://127.0.0.1:0", "-health", c.addr,
			"-log-format", "json", "--", bins.example, "-worker"})
		h, _ := p.waitMsg(0, "serving health")
		addr := h.Addr
		if c.network == "unix" {
			addr = sock
		}
		client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, c.network, addr)
		}}}
		resp, err := client.Get("http://health/livez")
		if err != nil {
			t.Errorf("-health %s: GET /livez: %v", c.addr, err)
		} else {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("-health %s: GET /livez: %s, want 200", c.addr, resp.Status)
			}
		}
		client.CloseIdleConnections()
		if code := p.stop(); code != 0 {
			t.Errorf("-health %s: handoff exited with %d after SIGTERM, want 0", c.addr, code)
		}
		if c.network == "unix" {
			if _, err := os.Lstat(sock); !os.IsNotExist(err) {
				t.Errorf("-health %s: the socket file handoff made is still there after its stop (%v)", c.addr, err)
			}
		}
	}
	_, errs, code := cli(t, "-health", "udp://127.0.0.1:1", "--", "x")
	if code != exitUsage || !strings.Contains(errs, `-health: `) || !strings.Contains(errs, "udp") {
		t.Errorf("-health udp://…: exit %d, %q; want %d and the reason", code, errs, exitUsage)
	}
}

// TestUnixSocketRemovedAtStop: a unix socket file handoff created for
// -listen is removed when it stops, not when it upgrades in place; one it
// was given (systemd's) is never its to remove.
func TestUnixSocketRemovedAtStop(t *testing.T) {
	checkFds(t)
	dir := t.TempDir()
	sock, pidfile := filepath.Join(dir, "app.sock"), filepath.Join(dir, "app.pid")
	p := startProc(t, bins.handoff, []string{"-listen", "unix://" + sock, "-pidfile", pidfile,
		"-log-format", "json", "--", bins.example, "-worker"})
	_, from := p.waitMsg(0, "listening")
	p.waitReady(from, 1, 1)
	mustCLI(t, "upgrade", "-pidfile", pidfile)
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("%s after an upgrade in place: %v, %v; want the socket kept", sock, fi, err)
	}
	if resp := get(t, "unix", sock); resp.StatusCode != http.StatusOK {
		t.Fatalf("GET over %s after the upgrade: %s", sock, resp.Status)
	}
	if code := p.stop(); code != 0 {
		t.Errorf("handoff exited with %d after SIGTERM, want 0", code)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("%s after the stop: %v; want it removed", sock, err)
	}
}

// TestNeverNotifyingServer: a server that accepts connections but never
// says READY=1 under -ready notify (uvicorn) is killed at the ready timeout
// with a log line that says so and names -ready start and -probe; the
// kills count as start failures, so -max-start-failures ends the loop with
// a non-zero exit and that reason in the last line.
func TestNeverNotifyingServer(t *testing.T) {
	checkFds(t)
	p := startProc(t, bins.handoff, []string{"-listen", "tcp://127.0.0.1:0", "-ready", "notify",
		"-ready-timeout", "2s", "-max-start-failures", "2", "-log-format", "json", "--", testExe(t)}, helperEnv+"=silent")
	l, from := p.waitMsg(0, "listening")
	_, from = p.waitMsg(from, "worker started")
	// A client the worker accepts: it serves, it only never says so.
	c, err := net.DialTimeout("tcp", l.Addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var killed logLine
	killed, from = p.waitMsg(from, "worker not ready in time: killing")
	for _, want := range []string{"accepting connections", "never sent READY=1", "-ready start", "-probe"} {
		if !strings.Contains(killed.Hint, want) {
			t.Errorf("the ready-timeout line's hint %q does not say %q", killed.Hint, want)
		}
	}
	code := p.wait()
	if code == 0 {
		t.Errorf("handoff exited 0 after giving up; want non-zero")
	}
	last := p.lastLog()
	if last.Level != "error" || !strings.Contains(last.Error, "giving up: not ready within 2s") ||
		!strings.Contains(last.Error, "READY=1") || !strings.Contains(last.Error, "-ready start") {
		t.Errorf("last log line %+v: want the error giving up, naming the missing READY=1", last)
	}
}

// lastLog is the last log line of a process whose output has ended.
func (p *proc) lastLog() logLine {
	<-p.readDone
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.logs) == 0 {
		return logLine{}
	}
	return p.logs[len(p.logs)-1]
}

// TestCrashLoopShowsInStatus: a generation that served and now fails to
// start (its files changed under it) shows in status, text and JSON, as
// crash-looping since when, and the log says once what to do.
func TestCrashLoopShowsInStatus(t *testing.T) {
	checkFds(t)
	dir := t.TempDir()
	pidfile, fail := filepath.Join(dir, "app.pid"), filepath.Join(dir, "fail")
	p := startProc(t, bins.handoff, []string{"-workers", "2", "-ready", "notify", "-listen", "tcp://127.0.0.1:0",
		"-pidfile", pidfile, "-backoff", "10ms", "-backoff-max", "50ms", "-log-format", "json", "--", testExe(t)},
		helperEnv+"=echo", "HANDOFF_TEST_FAIL_IF="+fail)
	_, from := p.waitMsg(0, "listening")
	pids, from := p.waitReady(from, 2, 1)
	if err := os.WriteFile(fail, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	l, _ := p.waitMsg(from, "a generation that served here now fails to start")
	if !strings.Contains(l.Hint, "-chdir") || !strings.Contains(l.Hint, "directory of its own") {
		t.Errorf("hint %q: want the advice to deploy each release in its own directory", l.Hint)
	}
	out := mustCLI(t, "status", "-pidfile", pidfile)
	if !strings.Contains(out, "WARNING:    slot 0 crash-looping for") && !strings.Contains(out, "WARNING:    slot 1 crash-looping for") ||
		!strings.Contains(out, "1 of 2 workers ready") {
		t.Errorf("status does not warn of the crash loop:\n%s", out)
	}
	st := statusJSON(t, "-pidfile", pidfile)
	looping := 0
	for _, sl := range st.Slots {
		if sl.CrashLooping {
			looping++
			if sl.FailingSince == nil || sl.Failures < 3 {
				t.Errorf("slot %+v: crash-looping without failing_since or 3 failures", sl)
			}
		}
	}
	if looping != 1 {
		t.Errorf("status -json: %d slots crash-looping, want 1: %+v", looping, st.Slots)
	}
	if code := p.stop(); code != 0 {
		t.Errorf("handoff exited with %d after SIGTERM, want 0", code)
	}
}
