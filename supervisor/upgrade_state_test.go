//go:build unix

package supervisor

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
)

// TestResumeKeepsTheReadyWorker: an upgrade while a slot's worker is being
// recycled hands over two workers for that slot, the serving one and its
// starting replacement. Whatever their order, the new program keeps the
// ready one serving and the other as its replacement.
func TestResumeKeepsTheReadyWorker(t *testing.T) {
	for _, readyFirst := range []bool{true, false} {
		s, err := New(Command{Path: "/bin/true"}, WithLogger(zaptest.NewLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		tb := &table{s: s, o: &s.o, log: s.log, live: map[*child]struct{}{}, byPid: map[int]*child{},
			exits: make(chan exit, 8), quit: make(chan struct{}), reaperGone: make(chan struct{}), wake: time.NewTimer(time.Hour)}
		if tb.reaper, err = tb.newReaper(); err != nil {
			t.Fatal(err)
		}
		var procs []*os.Process
		for range 2 {
			c := exec.Command("sleep", "60")
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			procs = append(procs, c.Process)
		}
		ready := stateWorker{Pid: procs[0].Pid, Slot: 0, Generation: 1, State: Ready, ReadyAt: time.Now()}
		starting := stateWorker{Pid: procs[1].Pid, Slot: 0, Generation: 1, State: Starting, Deadline: time.Now().Add(time.Hour)}
		st := &upgradeState{Generation: 1, Slots: []stateSlot{{}}, Workers: []stateWorker{starting, ready}}
		if readyFirst {
			st.Workers = []stateWorker{ready, starting}
		}
		handOverFds(t, st)
		if err := tb.resume(st); err != nil {
			t.Fatal(err)
		}
		sl := tb.slots[0]
		var got [2]int
		if sl.w != nil {
			got[0] = sl.w.info.Pid
		}
		if sl.next != nil {
			got[1] = sl.next.info.Pid
		}
		for _, p := range procs {
			p.Kill()
		}
		tb.close()
		if got != [2]int{ready.Pid, starting.Pid} {
			t.Fatalf("ready first %t: slot 0 serves pid %d with replacement %d, want %d with %d",
				readyFirst, got[0], got[1], ready.Pid, starting.Pid)
		}
	}
}

// TestResumeAdoptsPins: the generations' pinned programs come over an
// upgrade as fds; the new program keeps them, close-on-exec again, as its
// recipes, and knows which is its own binary.
func TestResumeAdoptsPins(t *testing.T) {
	s, err := New(Command{Path: "/bin/true"}, WithLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	tb := &table{s: s, o: &s.o, log: s.log, live: map[*child]struct{}{}, byPid: map[int]*child{}, recipes: map[uint64]recipe{},
		exits: make(chan exit, 8), quit: make(chan struct{}), reaperGone: make(chan struct{}), wake: time.NewTimer(time.Hour)}
	if tb.reaper, err = tb.newReaper(); err != nil {
		t.Fatal(err)
	}
	st := &upgradeState{Generation: 2, Slots: []stateSlot{{}}}
	handOverFds(t, st)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// As the old program leaves them: open, not close-on-exec.
	for gen, path := range map[uint64]string{1: "/bin/true", 2: exe} {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD, 3)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		st.Recipes = append(st.Recipes, stateRecipe{Generation: gen, Path: path, Args: []string{path, "-x"}, Fd: fd})
	}
	st.Recipes = append(st.Recipes, stateRecipe{Generation: 3, Path: "/bin/sh"}) // by path only
	if err := tb.resume(st); err != nil {
		t.Fatal(err)
	}
	defer tb.close()
	for _, sr := range st.Recipes {
		rc, ok := tb.recipes[sr.Generation]
		if !ok || rc.cmd.Path != sr.Path || len(rc.cmd.Args) != len(sr.Args) {
			t.Fatalf("generation %d: recipe %+v, want %+v", sr.Generation, rc, sr)
		}
		if sr.Fd == 0 {
			if rc.exe != nil {
				t.Errorf("generation %d: a pin where none was handed over", sr.Generation)
			}
			continue
		}
		if rc.exe == nil || int(rc.exe.Fd()) != sr.Fd {
			t.Fatalf("generation %d: pin %v, want fd %d", sr.Generation, rc.exe, sr.Fd)
		}
		if fl, err := unix.FcntlInt(uintptr(sr.Fd), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
			t.Errorf("generation %d: fd %d flags %#x, %v: want close-on-exec", sr.Generation, sr.Fd, fl, err)
		}
		if want := sr.Path == exe; rc.self != want {
			t.Errorf("generation %d: self %t, want %t", sr.Generation, rc.self, want)
		}
	}
}

// TestResumeKeepsHurried: a draining worker the cap hurried stays hurried
// in the program an upgrade exec'd, so that the cap neither counts its
// generation as one draining at its own pace nor signals it again.
func TestResumeKeepsHurried(t *testing.T) {
	s, err := New(Command{Path: "/bin/true"}, WithLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	tb := &table{s: s, o: &s.o, log: s.log, live: map[*child]struct{}{}, byPid: map[int]*child{},
		exits: make(chan exit, 8), quit: make(chan struct{}), reaperGone: make(chan struct{}), wake: time.NewTimer(time.Hour)}
	if tb.reaper, err = tb.newReaper(); err != nil {
		t.Fatal(err)
	}
	c := exec.Command("sleep", "60")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Process.Kill()
	st := &upgradeState{Generation: 2, Slots: []stateSlot{{}}, Workers: []stateWorker{
		{Pid: c.Process.Pid, Slot: 0, Generation: 1, State: Stopping, RetiredAt: time.Now(), Hurried: true}}}
	handOverFds(t, st)
	if err := tb.resume(st); err != nil {
		t.Fatal(err)
	}
	w1 := tb.byPid[c.Process.Pid]
	hurried := w1 != nil && w1.hurried
	var back []stateWorker
	if snap, err := tb.snapshot(); err == nil {
		back = snap.Workers
	}
	c.Process.Kill()
	tb.close()
	c.Wait() // no zombie left to the next test
	if !hurried {
		t.Errorf("after resume, the hurried worker %d is not hurried", c.Process.Pid)
	}
	if len(back) != 1 || !back[0].Hurried {
		t.Errorf("the next upgrade's state: %+v, want the worker hurried", back)
	}
}

// TestTimerReadsPendingPings: a watchdog ping already received counts
// before the ping deadline is judged. Under load the run loop's select may
// take the timer while a WATCHDOG=1 waits in the notify channel; the worker
// then died for the supervisor's own delay.
func TestTimerReadsPendingPings(t *testing.T) {
	s, err := New(Command{Path: "/bin/true"}, WithLogger(zaptest.NewLogger(t)), WithWatchdog(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command("sleep", "60")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	tb := &table{s: s, o: &s.o, log: s.log, live: map[*child]struct{}{}, byPid: map[int]*child{},
		exits: make(chan exit, 8), quit: make(chan struct{}), reaperGone: make(chan struct{}),
		notes: make(chan notifyMsg, 1), wake: time.NewTimer(time.Hour)}
	if tb.reaper, err = tb.newReaper(); err != nil {
		t.Fatal(err)
	}
	proc, err := tb.reaper.Adopt(c.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	w := &child{info: WorkerInfo{Pid: c.Process.Pid, State: Ready}, proc: proc, pingBy: time.Now().Add(-time.Millisecond)}
	tb.live[w], tb.byPid[w.info.Pid] = struct{}{}, w
	tb.notes <- notifyMsg{Pid: w.info.Pid, Watchdog: true}
	tb.onTimer()
	c.Process.Kill()
	tb.close()
	c.Wait() // no zombie left to the next test
	if w.hung {
		t.Error("the watchdog fired at a worker whose ping was waiting to be read")
	}
}

// TestWithHealthBadAddr: a health address that does not parse is New's
// error, naming it.
func TestWithHealthBadAddr(t *testing.T) {
	_, err := New(Command{Path: "/bin/true"}, WithHealth("tcp://no-port"))
	if err == nil || !strings.Contains(err.Error(), "health address") {
		t.Fatalf("New with a bad health address: %v, want an error naming it", err)
	}
}

// handOverFds gives st the notify socket and liveness pipe an upgrade
// would hand over, as descriptors of their own.
func handOverFds(t *testing.T, st *upgradeState) {
	t.Helper()
	ns, err := openNotifySocket()
	if err != nil {
		t.Fatal(err)
	}
	ns.Control(func(fd uintptr) { st.NotifyFd, _ = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 3) })
	ns.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range []*os.File{r, w} {
		st.LivenessFds[i], _ = unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 3)
		f.Close()
	}
}
