//go:build linux

package e2e

import (
	"bufio"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lineCmd is a client process whose stdout is read line by line.
type lineCmd struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines chan string
	done  chan error // the exit, once lines is closed
}

// startLines starts name with args and reads its stdout.
func startLines(t *testing.T, name string, args ...string) *lineCmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c := &lineCmd{t: t, cmd: cmd, lines: make(chan string, 1024), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
		err := cmd.Wait()
		if err != nil && stderr.Len() > 0 {
			t.Logf("%s stderr: %s", name, stderr.String())
		}
		c.done <- err
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		for range c.lines {
		}
		if err := <-c.done; err != nil {
			c.done <- err
		}
	})
	return c
}

// next returns the next line, or "" and false at the end of the output.
func (c *lineCmd) next() (string, bool) {
	c.t.Helper()
	select {
	case l, ok := <-c.lines:
		return l, ok
	case <-time.After(time.Until(deadline(c.t))):
		c.t.Fatalf("%s: no line before the deadline", c.cmd.Path)
		return "", false
	}
}

// rest returns the remaining lines and the exit error.
func (c *lineCmd) rest() ([]string, error) {
	c.t.Helper()
	var ls []string
	for {
		l, ok := c.next()
		if !ok {
			break
		}
		ls = append(ls, l)
	}
	err := <-c.done
	c.done <- err
	return ls, err
}

// rollOnce rolls sup to generation gen and waits for the roll to complete.
func rollOnce(t *testing.T, sup *supervised, gen uint64) {
	t.Helper()
	sup.signal(syscall.SIGHUP)
	sup.until("roll complete", func(l logLine) bool { return l.Generation == gen })
}

// retiredExit waits for the exit of the worker pid and returns its status.
func retiredExit(t *testing.T, sup *supervised, pid int) (string, []logLine) {
	t.Helper()
	lines := sup.until("worker exited", func(l logLine) bool { return l.Pid == pid })
	return lines[len(lines)-1].Status, lines
}

// stopSupervisor stops sup with SIGTERM and checks its exit.
func stopSupervisor(t *testing.T, sup *supervised) {
	t.Helper()
	sup.signal(syscall.SIGTERM)
	if err := sup.wait(); err != nil {
		t.Errorf("supervisor exit after SIGTERM: %v", err)
	}
}

// TestStreamAcrossRoll: curl -N on a 30-line stream that outlives a roll
// gets every line and the final one, and exits 0; the retired worker exits
// 0 once the stream is done.
func TestStreamAcrossRoll(t *testing.T) {
	sup := startExample(t, "-listen", "127.0.0.1:0", "-workers", "1")
	ready := sup.next("worker ready")
	curl := startLines(t, "curl", "-sSN", "--fail", "http://"+sup.addr+"/stream?n=30&every=100ms")
	if l, _ := curl.next(); l != "line 1 of 30" {
		t.Fatalf("first line %q", l)
	}
	rollOnce(t, sup, 2)
	lines, err := curl.rest()
	if err != nil {
		t.Errorf("curl: %v", err)
	}
	if len(lines) != 30 || lines[28] != "line 30 of 30" || lines[29] != "done 30" {
		t.Errorf("curl got %d more lines, want 29 and the final one: %q", len(lines), lines)
	}
	if st, _ := retiredExit(t, sup, ready.Pid); st != "exit status 0" {
		t.Errorf("the retired worker exited with %q, want status 0", st)
	}
	stopSupervisor(t, sup)
}

// TestStreamCutAtDrainDeadline: a stream longer than the drain deadline
// ends with the "cut" line at the deadline (3 s: 3/4 of a 4 s stop
// timeout), curl exits 0, the retired worker exits 0 and is never
// SIGKILLed, and the drain logs what it cut.
func TestStreamCutAtDrainDeadline(t *testing.T) {
	sup := startExample(t, "-listen", "127.0.0.1:0", "-workers", "1", "-stop-timeout", "4s")
	ready := sup.next("worker ready")
	curl := startLines(t, "curl", "-sSN", "--fail", "http://"+sup.addr+"/stream?n=1000&every=100ms")
	if l, _ := curl.next(); l != "line 1 of 1000" {
		t.Fatalf("first line %q", l)
	}
	rollOnce(t, sup, 2)
	retired := time.Now()
	lines, err := curl.rest()
	took := time.Since(retired)
	if err != nil {
		t.Errorf("curl: %v", err)
	}
	last := ""
	if len(lines) > 0 {
		last = lines[len(lines)-1]
	}
	if !strings.HasPrefix(last, "cut after ") || !strings.HasSuffix(last, " of 1000 lines: the worker's drain deadline") {
		t.Errorf("the stream ended with %q after %d lines, want the cut line", last, len(lines))
	}
	if took > 4*time.Second {
		t.Errorf("the stream ended %v after the roll, after the 4 s stop timeout", took)
	}
	st, logs := retiredExit(t, sup, ready.Pid)
	if st != "exit status 0" {
		t.Errorf("the retired worker exited with %q, want status 0", st)
	}
	if countMsg(logs, "worker did not exit in time: killing") > 0 {
		t.Errorf("the retired worker was killed")
	}
	if countMsg(logs, "worker: drain deadline: cut what was left") != 1 {
		t.Errorf("the drain did not log its cut")
	}
	stopSupervisor(t, sup)
}

// wsClient is a WebSocket client of another implementation than the
// example's: Python's websockets (Debian's python3-websockets). It sends one
// message, prints the echo, then waits for the close and prints its code.
const wsClient = `
import asyncio, sys, websockets
async def main(url):
    async with websockets.connect(url) as ws:
        await ws.send("hello")
        print("echo " + await ws.recv(), flush=True)
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed:
            pass
        print("closed %s %s" % (ws.close_code, ws.close_reason), flush=True)
asyncio.run(main(sys.argv[1]))
`

// TestWebSocketAcrossRoll: a WebSocket client of another implementation
// gets close code 1001 (going away) from its retired worker, well within
// the drain deadline, never an abnormal closure (1006); the worker exits 0.
func TestWebSocketAcrossRoll(t *testing.T) {
	sup := startExample(t, "-listen", "127.0.0.1:0", "-workers", "1", "-stop-timeout", "8s")
	ready := sup.next("worker ready")
	py := startLines(t, "/usr/bin/python3", "-c", wsClient, "ws://"+sup.addr+"/ws")
	if l, _ := py.next(); l != "echo hello" {
		t.Fatalf("first line %q", l)
	}
	rollOnce(t, sup, 2)
	retired := time.Now()
	lines, err := py.rest()
	took := time.Since(retired)
	if err != nil {
		t.Errorf("python websockets client: %v", err)
	}
	if len(lines) != 1 || lines[0] != "closed 1001 worker draining" {
		t.Errorf("client printed %q, want close code 1001", lines)
	}
	if took > 6*time.Second { // the drain deadline: 3/4 of 8 s
		t.Errorf("closed %v after the roll, after the drain deadline", took)
	}
	if st, _ := retiredExit(t, sup, ready.Pid); st != "exit status 0" {
		t.Errorf("the retired worker exited with %q, want status 0", st)
	}
	stopSupervisor(t, sup)
}
