//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestScalePauseAndRelative: scale 0 pauses (every worker retires, the
// socket stays), scale +2 and scale -1 change the number from what it is.
func TestScalePauseAndRelative(t *testing.T) {
	checkFds(t)
	ctl := filepath.Join(t.TempDir(), "ctl", "handoff.sock")
	p := startProc(t, bins.handoff, []string{"-ready", "notify", "-listen", "tcp://127.0.0.1:0", "-control", ctl,
		"-log-format", "json", "--", testExe(t)}, helperEnv+"=echo")
	_, from := p.waitMsg(0, "listening")
	_, from = p.waitReady(from, 1, 1)

	mustCLI(t, "scale", "0", "-control", ctl)
	_, from = p.waitMsg(from, "worker exited")
	if st := statusJSON(t, "-control", ctl); len(st.Workers) != 0 {
		t.Fatalf("after scale 0: workers %v, want none", workerPids(st))
	}
	if out := mustCLI(t, "scale", "+2", "-control", ctl); !strings.Contains(out, "scaling by +2") {
		t.Errorf("scale +2 said %q", out)
	}
	_, from = p.waitReady(from, 2, 1)
	mustCLI(t, "scale", "-control", ctl, "-1") // the change may follow the flags
	p.waitMsg(from, "worker exited")
	if st := statusJSON(t, "-control", ctl); len(st.Workers) != 1 {
		t.Fatalf("after scale -1: workers %v, want 1", workerPids(st))
	}
	if _, errs, code := cli(t, "scale", "-5", "-control", ctl); code != 1 || !strings.Contains(errs, "only 1 workers") {
		t.Errorf("scale -5 of 1: exit %d, %q", code, errs)
	}
	if code := p.stop(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}

// TestWorkerSettingsFlags: -env and -chdir reach the worker; -max-lifetime
// with -lifetime-jitter recycles it, and -surge, -min-uptime and -backoff
// are taken.
func TestWorkerSettingsFlags(t *testing.T) {
	checkFds(t)
	dir := t.TempDir()
	p := startProc(t, bins.handoff, []string{"-ready", "notify", "-listen", "tcp://127.0.0.1:0",
		"-env", "APP_ENV=production", "-env", "EMPTY=", "-chdir", dir,
		"-max-lifetime", "2s", "-lifetime-jitter", "100ms", "-surge", "2", "-max-draining", "3", "-min-uptime", "100ms",
		"-backoff", "50ms", "-backoff-max", "1s", "-log-format", "json", "--", testExe(t)}, helperEnv+"=echo")
	l, from := p.waitMsg(0, "listening")
	pids, from := p.waitReady(from, 1, 1)
	c := dialEcho(t, l.Addr)
	for q, want := range map[string]string{"env APP_ENV": "production", "env EMPTY": ""} {
		if _, got, err := c.ask(q); err != nil || got != want {
			t.Errorf("worker asked %q: %q, %v; want %q", q, got, err, want)
		}
	}
	c.Close()
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pids[0])); err != nil || cwd != dir {
		t.Errorf("worker's directory %q, %v; want %s", cwd, err, dir)
	}
	_, from = p.waitMsg(from, "recycling worker at its maximum lifetime")
	p.waitReady(from, 1, 1)
	if code := p.stop(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}

// idServer answers each connection on fd 3 with "UID GID" and closes it.
const idServer = `import os, socket
s = socket.socket(fileno=3)
while True:
    c, _ = s.accept()
    c.sendall(("%d %d\n" % (os.getuid(), os.getgid())).encode())
    c.close()
`

// TestUserNobodyPrivilegedPort: handoff, as root, binds a port below 1024
// and runs its worker as nobody, which serves on it.
func TestUserNobodyPrivilegedPort(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("binding a port below 1024 and changing user need root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody:", err)
	}
	checkFds(t)
	// A free port below 1024: bind one, then hand its number to handoff.
	var port int
	for p := 700 + rand.IntN(300); port == 0; p = 700 + rand.IntN(300) {
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			l.Close()
			port = p
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := startProc(t, bins.handoff, []string{"-user", "nobody", "-listen", "tcp://" + addr,
		"-log-format", "json", "--", "/usr/bin/python3", "-c", idServer})
	_, from := p.waitMsg(0, "listening")
	p.waitReady(from, 1, 1)
	var got string
	for end := deadline(t); ; {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			b, _ := io.ReadAll(c)
			c.Close()
			if got = strings.TrimSpace(string(b)); got != "" {
				break
			}
		}
		if time.Now().After(end) {
			t.Fatalf("no answer on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond) // python is still starting
	}
	if want := nobody.Uid + " " + nobody.Gid; got != want {
		t.Errorf("the worker runs as %q, want nobody's %q", got, want)
	}
	if code := p.stop(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}

// probe returns the status code of GET url, 0 if it could not be had.
func probe(url string) int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestShutdownDelay: with -shutdown-delay 2s, SIGTERM first turns /readyz
// to 503 while the workers go on serving keep-alive clients that never
// retry; only after the delay are the workers stopped. The clients, gone
// once the probe failed (as a load balancer would take the endpoint out),
// lose no request.
func TestShutdownDelay(t *testing.T) {
	checkFds(t)
	p := startProc(t, bins.handoff, []string{"-workers", "2", "-ready", "notify", "-listen", "tcp://127.0.0.1:0",
		"-shutdown-delay", "2s", "-health", "127.0.0.1:0", "-log-format", "json", "--", bins.example, "-worker"})
	h, _ := p.waitMsg(0, "serving health")
	ready := "http://" + h.Addr + "/readyz"
	l, from := p.waitMsg(0, "listening")
	_, from = p.waitReady(from, 2, 1)
	if code := probe(ready); code != http.StatusOK {
		t.Fatalf("/readyz %d while serving, want 200", code)
	}
	if code := probe("http://" + h.Addr + "/livez"); code != http.StatusOK {
		t.Fatalf("/livez %d, want 200", code)
	}
	ld := startHTTPLoad("tcp", l.Addr, 16, "X-Generation")
	ld.more(t, 100)

	p.cmd.Process.Signal(syscall.SIGTERM)
	for end := deadline(t); probe(ready) != http.StatusServiceUnavailable; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("/readyz never turned 503 after SIGTERM")
		}
	}
	ld.more(t, 100) // still served after the probe failed
	ok, failed, errs, _ := ld.finish()
	// The workers were told to stop only after the delay, after all this.
	l2, _ := p.waitMsg(from, "shutdown delay over: stopping")
	t.Logf("%d keep-alive requests, %d failed; workers stopped at %s", ok, failed, l2.Ts)
	if failed > 0 {
		t.Errorf("%d of %d requests failed: %q", failed, ok+failed, errs)
	}
	if code := p.wait(); code != 0 {
		t.Errorf("handoff exited with %d after SIGTERM, want 0", code)
	}
}

// TestHealthAcrossUpgrades: a probe of /readyz never fails during in-place
// upgrades: the health socket goes over the exec with the others, and the
// new program answers it once it has resumed the workers, so a probe that
// lands in the exec waits instead of being refused or told "starting". A
// Kubernetes probe that failed there would count towards taking the pod
// out of its Service.
func TestHealthAcrossUpgrades(t *testing.T) {
	checkFds(t)
	p := startProc(t, bins.handoff, []string{"-workers", "1", "-ready", "notify", "-listen", "tcp://127.0.0.1:0",
		"-health", "127.0.0.1:0", "-log-format", "json", "--", bins.example, "-worker"})
	h, _ := p.waitMsg(0, "serving health")
	_, from := p.waitMsg(0, "listening")
	_, from = p.waitReady(from, 1, 1)
	ready := "http://" + h.Addr + "/readyz"
	stop := make(chan struct{})
	var probes, failed int
	var errs []string
	client := http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			probes++
			resp, err := client.Get(ready)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = errors.New(resp.Status)
				}
			}
			if err != nil {
				failed++
				if len(errs) < 10 {
					errs = append(errs, err.Error())
				}
			}
		}
	}()
	for range 5 {
		p.cmd.Process.Signal(syscall.SIGUSR2)
		_, from = p.waitMsg(from, "handoff resuming after an upgrade in place")
	}
	close(stop)
	<-done
	t.Logf("%d probes of /readyz across 5 upgrades, %d failed", probes, failed)
	if failed > 0 || probes == 0 {
		t.Errorf("%d of %d probes failed: %q", failed, probes, errs)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Errorf("handoff exited with %d after SIGTERM, want 0", code)
	}
}
