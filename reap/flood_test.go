//go:build linux

package reap

import (
	"errors"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// floodScript blocks in read on stdin and exits with $1 at EOF. /bin/sh is
// small enough to run thousands at once; the race-built test binary is not.
const floodScript = `read x; exit "$1"`

// floodCode is the exit code of the i-th flood child.
func floodCode(i int) int { return i % 256 }

// startFlood starts n children that all block reading one pipe. release
// closes the pipe's write end, and they all exit at once.
func startFlood(t testing.TB, r *Reaper, n int) (procs []*Process, release func()) {
	t.Helper()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max < uint64(n)+256 {
		t.Skipf("RLIMIT_NOFILE %d is too low for %d pidfds", lim.Max, n)
	}
	rfd, wfd := pipe(t)
	null := devNull(t)
	attr := &syscall.ProcAttr{Files: []uintptr{uintptr(rfd), uintptr(null), uintptr(null)}}
	released := false
	release = func() {
		if !released {
			released = true
			closeFd(t, wfd)
		}
	}
	t.Cleanup(release)
	procs = make([]*Process, 0, n)
	for i := range n {
		p, err := r.Start("/bin/sh", []string{"sh", "-c", floodScript, "sh", strconv.Itoa(floodCode(i))}, attr)
		if err != nil {
			t.Fatalf("start child %d: %v", i, err)
		}
		procs = append(procs, p)
	}
	closeFd(t, rfd)
	closeFd(t, null)
	return procs, release
}

type floodResult struct {
	children int
	statuses int           // statuses delivered
	wrong    int           // statuses with the wrong exit code
	zombies  int           // our children left in state Z afterwards
	threads  int           // OS threads while all children were alive
	spawn    time.Duration // starting all children
	elapsed  time.Duration // from release to the last status
}

// flood starts n children, releases them at once and collects every status.
func flood(t testing.TB, r *Reaper, n int) floodResult {
	t.Helper()
	ctx := testContext(t)
	res := floodResult{children: n}
	t0 := time.Now()
	procs, release := startFlood(t, r, n)
	res.spawn = time.Since(t0)
	res.threads = threads(t)

	t0 = time.Now()
	release()
	for i, p := range procs {
		st, err := p.Wait(ctx)
		if err != nil {
			t.Errorf("child %d (pid %d): %v", i, p.Pid(), err)
			break
		}
		res.statuses++
		if st.Code != floodCode(i) || st.Pid != p.Pid() {
			res.wrong++
			if res.wrong <= 5 {
				t.Errorf("child %d (pid %d): got %v from pid %d, want exit status %d", i, p.Pid(), st, st.Pid, floodCode(i))
			}
		}
	}
	res.elapsed = time.Since(t0)
	res.zombies = zombies(t)
	return res
}

func (res floodResult) check(t *testing.T) {
	t.Helper()
	t.Logf("flood: %d children, %d statuses, %d wrong codes, %d zombies, %d threads with all alive; spawn %v, release to last status %v",
		res.children, res.statuses, res.wrong, res.zombies, res.threads, res.spawn.Round(time.Millisecond), res.elapsed.Round(time.Millisecond))
	if res.statuses != res.children || res.wrong != 0 || res.zombies != 0 {
		t.Errorf("flood lost exits: %+v", res)
	}
}

// TestFlood: 5,000 children exiting at once all get their own status in
// default mode, and no zombie is left. It logs the figures.
func TestFlood(t *testing.T) {
	checkFds(t)
	r := newReaper(t)
	flood(t, r, 5000).check(t)
}

// TestFloodSubreaper: the same in subreaper mode, where one wait4(-1) drain
// per SIGCHLD ring must collect every exit although rings coalesce, and no
// child of ours is mistaken for an orphan.
func TestFloodSubreaper(t *testing.T) {
	checkFds(t)
	var orphans atomic.Int64
	r := newReaper(t, WithSubreaper(), WithOrphanFunc(func(Status) { orphans.Add(1) }))
	flood(t, r, 2000).check(t)
	r.Close()
	if n := orphans.Load(); n != 0 {
		t.Errorf("%d of our own children went to the orphan func", n)
	}
}

// TestSubreaperQuickExits: children that exit at once, started from two
// goroutines, race the drain; each must still reach its own Process, not the
// orphan func.
func TestSubreaperQuickExits(t *testing.T) {
	checkFds(t)
	var orphans atomic.Int64
	r := newReaper(t, WithSubreaper(), WithOrphanFunc(func(Status) { orphans.Add(1) }))
	ctx := testContext(t)
	const perWorker = 250
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := range perWorker {
				code := (w*perWorker + i) % 256
				p, err := r.Start("/bin/sh", []string{"sh", "-c", `exit "$1"`, "sh", strconv.Itoa(code)}, nil)
				if err != nil {
					t.Error(err)
					return
				}
				st, err := p.Wait(ctx)
				if err != nil {
					t.Errorf("pid %d: %v", p.Pid(), err)
					return
				}
				if st.Code != code {
					t.Errorf("pid %d: got %v, want exit status %d", p.Pid(), st, code)
				}
			}
		})
	}
	wg.Wait()
	r.Close()
	if n := orphans.Load(); n != 0 {
		t.Errorf("%d of our own children went to the orphan func", n)
	}
	if z := zombies(t); z != 0 {
		t.Errorf("%d zombies left", z)
	}
}

// TestExecCoexists: while a default-mode Reaper reaps a flood, os/exec in the
// same process still gets every one of its own exit statuses (a wait4(-1)
// anywhere would make some of them fail with ECHILD).
func TestExecCoexists(t *testing.T) {
	checkFds(t)
	r := newReaper(t)
	procs, release := startFlood(t, r, 1000)

	const runs = 200
	var (
		next    atomic.Int64
		started = make(chan struct{}, runs)
		wg      sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= runs {
					return
				}
				code := i % 7
				err := exec.Command("/bin/sh", "-c", "exit "+strconv.Itoa(code)).Run()
				started <- struct{}{}
				var ee *exec.ExitError
				switch {
				case code == 0 && err != nil:
					t.Errorf("run %d: %v, want success", i, err)
				case code != 0 && !errors.As(err, &ee):
					t.Errorf("run %d: %v, want exit status %d", i, err, code)
				case code != 0 && ee.ExitCode() != code:
					t.Errorf("run %d: exit status %d, want %d", i, ee.ExitCode(), code)
				}
			}
		})
	}
	// Release the flood once os/exec is under way, so both reap at once.
	for range runs / 4 {
		<-started
	}
	release()
	ctx := testContext(t)
	for i, p := range procs {
		st, err := p.Wait(ctx)
		if err != nil {
			t.Fatalf("child %d: %v", i, err)
		}
		if st.Code != floodCode(i) {
			t.Errorf("child %d: got %v, want exit status %d", i, st, floodCode(i))
		}
	}
	wg.Wait()
	if z := zombies(t); z != 0 {
		t.Errorf("%d zombies left", z)
	}
}

// TestThreads: watching 1,000 live children costs a handful of OS threads,
// not one per child as os.Process.Wait would.
func TestThreads(t *testing.T) {
	checkFds(t)
	r := newReaper(t)
	rfd, wfd := pipe(t)
	null := devNull(t)
	attr := &syscall.ProcAttr{Files: []uintptr{uintptr(rfd), uintptr(null), uintptr(null)}}
	const n = 1000
	procs := make([]*Process, 0, n)
	for i := range n {
		p, err := r.Start("/bin/cat", nil, attr)
		if err != nil {
			closeFd(t, wfd)
			t.Fatalf("start child %d: %v", i, err)
		}
		procs = append(procs, p)
	}
	closeFd(t, rfd)
	closeFd(t, null)

	th := threads(t)
	t.Logf("%d threads with %d children watched", th, n)
	if th >= 50 {
		t.Errorf("%d threads with %d children watched, want a handful", th, n)
	}

	closeFd(t, wfd)
	for _, p := range procs {
		if st := wait(t, p); !st.Success() {
			t.Errorf("pid %d: %v", p.Pid(), st)
		}
	}
	if z := zombies(t); z != 0 {
		t.Errorf("%d zombies left", z)
	}
}

// BenchmarkSpawnReap measures start, exit and reap of /bin/true, one per op.
func BenchmarkSpawnReap(b *testing.B) {
	r := newReaper(b)
	ctx := testContext(b)
	for b.Loop() {
		p, err := r.Start("/bin/true", nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		if st, err := p.Wait(ctx); err != nil || !st.Success() {
			b.Fatalf("pid %d: %v %v", p.Pid(), st, err)
		}
	}
}

// BenchmarkExecRun is the baseline for BenchmarkSpawnReap: os/exec running
// /bin/true, one per op.
func BenchmarkExecRun(b *testing.B) {
	for b.Loop() {
		if err := exec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFlood measures reaping 1,000 children that exit at once, from
// release to the last status; the spawning is not timed.
func BenchmarkFlood(b *testing.B) {
	r := newReaper(b)
	ctx := testContext(b)
	var reaping time.Duration
	for range b.N {
		b.StopTimer()
		procs, release := startFlood(b, r, 1000)
		b.StartTimer()
		t0 := time.Now()
		release()
		for _, p := range procs {
			if _, err := p.Wait(ctx); err != nil {
				b.Fatal(err)
			}
		}
		reaping += time.Since(t0)
	}
	b.ReportMetric(float64(reaping.Nanoseconds())/float64(b.N*1000), "ns/exit")
}
