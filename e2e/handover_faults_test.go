//go:build linux

package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHandoverFaults: a hand-over that cannot complete falls back without
// a hung client or a leaked descriptor, whoever dies in the middle of it.
// Each case rolls 2 workers under 32 raw keep-alive clients and strikes
// at the moment the first retired worker starts its drain (and so hands
// its connections over). Clients may lose the connections of a killed
// process (one failed request each, as any crash), never wait past their
// timeout; once the load stops, the supervisor and every worker are back
// to the descriptors they had before any client came.
func TestHandoverFaults(t *testing.T) {
	t.Run("receiver killed", func(t *testing.T) {
		r := startRig(t)
		drain := r.rollUntilDrain()
		r.kill(r.newOfSlot(drain.Worker))
		r.settle()
	})
	t.Run("sender killed", func(t *testing.T) {
		r := startRig(t)
		drain := r.rollUntilDrain()
		r.kill(drain.Pid)
		r.settle()
	})
	t.Run("flood", func(t *testing.T) {
		r := startRig(t)
		const flood = 200
		var wg sync.WaitGroup
		errs := make(chan error, flood)
		r.rollUntilDrain()
		for range flood {
			wg.Go(func() { errs <- oneRequest(r.sup.addr) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("a connection opened at the hand-over: %v", err)
			}
		}
		r.settle()
		if n := len(r.failures()); n > 0 {
			t.Errorf("%d requests failed: %q", n, r.failures())
		}
	})
	t.Run("supervisor killed", func(t *testing.T) {
		r := startRig(t)
		r.rollUntilDrain()
		kids := workerKids(t, r.sup.pid)
		r.sup.cmd.Process.Kill()
		r.sup.wait()
		for _, pid := range kids {
			waitGone(t, pid) // the liveness pipe: no worker outlives its supervisor
		}
		r.load.finish() // returns: no client waits for a connection that went with them
		r.checkNoTimeouts()
		for _, pid := range children(t, os.Getpid()) {
			waitOrphan(t, pid)
		}
	})
}

// rig is the example's supervisor with 2 workers under 32 raw clients.
type rig struct {
	t         *testing.T
	sup       *supervised
	load      *rawLoad
	supFds    int         // the supervisor's descriptors before any client came
	workerFds int         // a worker's, likewise
	started   map[int]int // pid → slot, of workers of the generation being rolled to
	gen       uint64      // the generation being rolled to
	lines     []logLine
}

func startRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{t: t, started: map[int]int{}}
	r.sup = startExample(t, "-listen", "127.0.0.1:0", "-workers", "2", "-min-uptime", "0", "-handover")
	var pid int
	for range 2 {
		pid = r.sup.next("worker ready").Pid
	}
	r.supFds, r.workerFds = fdCount(t, r.sup.pid), fdCount(t, pid)
	r.load = startRawLoad(t, r.sup.addr, 32, 24)
	r.load.waitRequests(t, 64)
	return r
}

// rollUntilDrain starts a roll and returns the first retired worker's
// drain start.
func (r *rig) rollUntilDrain() logLine {
	r.t.Helper()
	r.gen = 2
	r.sup.signal(unix.SIGHUP)
	lines := r.sup.until("worker: drain started", nil)
	for _, l := range lines {
		if l.Msg == "worker started" && l.Generation == r.gen {
			r.started[l.Pid] = l.Worker
		}
	}
	r.lines = lines
	drain := lines[len(lines)-1]
	for _, l := range lines {
		if l.Pid == drain.Pid && l.Msg == "worker started" {
			drain.Worker = l.Worker
		}
	}
	return drain
}

// newOfSlot returns the pid of the new generation's worker in slot.
func (r *rig) newOfSlot(slot int) int {
	r.t.Helper()
	for pid, s := range r.started {
		if s == slot {
			return pid
		}
	}
	r.t.Fatalf("no worker of generation %d started in slot %d: %v", r.gen, slot, r.started)
	return 0
}

func (r *rig) kill(pid int) {
	r.t.Helper()
	if err := unix.PidfdSendSignal(pidfd(r.t, pid), unix.SIGKILL, nil, 0); err != nil {
		r.t.Fatal(err)
	}
}

// settle waits for the roll to end (complete or rolled back) with 2
// workers serving and none draining, stops the load, and checks that no
// request hung and that every process is back to its descriptors.
func (r *rig) settle() {
	t := r.t
	t.Helper()
	r.sup.until("", func(l logLine) bool {
		return l.Msg == "roll complete" || strings.HasPrefix(l.Msg, "roll failed")
	})
	for {
		if kids := workerKids(t, r.sup.pid); len(kids) == 2 {
			break
		}
		r.sup.until("worker exited", nil)
	}
	r.load.waitRequests(t, 64)
	r.load.finish()
	r.checkNoTimeouts()
	// The workers see their clients' FINs and close; the supervisor holds
	// nothing of theirs any more.
	waitFds(t, "the supervisor", r.sup.pid, r.supFds)
	for _, pid := range workerKids(t, r.sup.pid) {
		waitFds(t, fmt.Sprintf("worker %d", pid), pid, r.workerFds)
	}
	stopClean(t, r.sup.cmd.Process, r.sup.wait)
}

func (r *rig) failures() []string {
	r.load.mu.Lock()
	defer r.load.mu.Unlock()
	return append([]string(nil), r.load.fails...)
}

// checkNoTimeouts fails the test if a client waited for a response until
// its timeout.
func (r *rig) checkNoTimeouts() {
	r.t.Helper()
	for _, f := range r.failures() {
		if strings.Contains(f, "timeout") {
			r.t.Errorf("a client hung until its timeout: %s", f)
		}
	}
	r.t.Logf("%d requests failed: %q", len(r.failures()), r.failures())
}

// waitFds waits until pid has at most want descriptors open, up to the test's
// deadline: what it has above them is connections still closing.
func waitFds(t *testing.T, who string, pid, want int) {
	t.Helper()
	for {
		n := fdCount(t, pid)
		if n <= want { // fewer: the baseline caught one in passing (a new worker's start-up)
			return
		}
		if time.Now().After(deadline(t)) {
			ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
			var links []string
			for _, e := range ents {
				l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
				links = append(links, e.Name()+"→"+l)
			}
			t.Fatalf("%s has %d descriptors open, %d before any client came: %v", who, n, want, links)
		}
		time.Sleep(10 * time.Millisecond) // a closing connection has no event to wait on from here
	}
}

// oneRequest dials addr and makes one request on a new connection.
func oneRequest(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: handoff.test\r\nConnection: close\r\n\r\n")); err != nil {
		return err
	}
	b := make([]byte, 12)
	if _, err := io.ReadFull(c, b); err != nil {
		return err
	}
	if string(b) != "HTTP/1.1 200" {
		return fmt.Errorf("response %q", b)
	}
	return nil
}
