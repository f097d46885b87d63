package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/bench/internal/orphans"

	"github.com/handoff-dev/handoff/reap"
)

// The reap benchmark runs in a helper process, the harness re-executed, so
// that its threads, its children and its wait4 are its own.
const (
	helperEnv    = "COMPARE_HELPER" // "reap" runs the helper
	reapModeEnv  = "COMPARE_REAP_MODE"
	reapPacedEnv = "COMPARE_REAP_PACED"
	reapFloodEnv = "COMPARE_REAP_FLOOD"

	reapTimeout = 90 * time.Second // one helper, both measurements
)

// Reap modes: handoff's reap package (a pidfd per child, the supervisor's
// default; or wait4(-1) as a subreaper), and os.Process.Wait in a goroutine
// per child.
const (
	modePidfd     = "reap: pidfd per child"
	modeSubreaper = "reap: subreaper, wait4(-1)"
	modeOSWait    = "os.Process.Wait per child"
)

var reapModes = []string{modePidfd, modeSubreaper, modeOSWait}

// reapBench runs the helper for one mode and returns what it measured.
func (h *harness) reapBench(ctx context.Context, mode string, round int) *reapRun {
	ctx, cancel := context.WithTimeout(ctx, reapTimeout+10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.self)
	cmd.Env = append(os.Environ(), helperEnv+"=reap", reapModeEnv+"="+mode,
		reapPacedEnv+"="+strconv.Itoa(h.cfg.paced), reapFloodEnv+"="+strconv.Itoa(h.cfg.flood))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	r := &reapRun{Mode: mode}
	if jerr := json.Unmarshal(out, r); jerr != nil && err == nil {
		err = jerr
	}
	r.Mode, r.Round = mode, round
	if err != nil {
		r.Err = fmt.Sprintf("%v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	if alive, _, serr := orphans.Sweep(); serr != nil || alive > 0 {
		r.Err += fmt.Sprintf("; %d processes outlived the reap helper (killed) %v", alive, serr)
	}
	return r
}

// reapHelper is the helper's main: it measures one mode and prints the
// result as JSON.
func reapHelper() int {
	mode := os.Getenv(reapModeEnv)
	paced, err1 := strconv.Atoi(os.Getenv(reapPacedEnv))
	flood, err2 := strconv.Atoi(os.Getenv(reapFloodEnv))
	if err := errors.Join(err1, err2); err != nil || !slices.Contains(reapModes, mode) {
		fmt.Fprintf(os.Stderr, "reap helper: bad mode %q or counts: %v\n", mode, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), reapTimeout)
	defer cancel()
	r, err := measureReap(ctx, mode, paced, flood)
	if err != nil {
		r.Err = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(r)
	if err != nil {
		return 1
	}
	return 0
}

// child is a started child: kill ends it, seen delivers when its exit was
// collected.
type child struct {
	pid  int
	kill func() error
	seen chan time.Time
}

// starter starts argv with stdin and stdout (stderr goes to stdout).
type starter func(argv []string, stdin, stdout *os.File) (child, error)

// The children block on a read of stdin until they are killed or it ends:
// dash, small enough to run thousands at once.
var shArgv = []string{"/bin/sh", "-c", "read x"}

func newStarter(ctx context.Context, mode string) (starter, func(), error) {
	if mode == modeOSWait {
		return func(argv []string, stdin, stdout *os.File) (child, error) {
			p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Files: []*os.File{stdin, stdout, stdout}})
			if err != nil {
				return child{}, err
			}
			c := child{pid: p.Pid, kill: p.Kill, seen: make(chan time.Time, 1)}
			go func() {
				p.Wait()
				c.seen <- time.Now()
			}()
			return c, nil
		}, func() {}, nil
	}
	var opts []reap.Option
	if mode == modeSubreaper {
		opts = append(opts, reap.WithSubreaper())
	}
	r, err := reap.New(opts...)
	if err != nil {
		return nil, nil, err
	}
	return func(argv []string, stdin, stdout *os.File) (child, error) {
		p, err := r.Start(argv[0], argv, &syscall.ProcAttr{Files: []uintptr{stdin.Fd(), stdout.Fd(), stdout.Fd()}})
		if err != nil {
			return child{}, err
		}
		c := child{pid: p.Pid(), kill: func() error { return p.Signal(syscall.SIGKILL) }, seen: make(chan time.Time, 1)}
		go func() {
			select {
			case <-p.Done():
				st, _ := p.Status()
				c.seen <- st.Time
			case <-ctx.Done():
			}
		}()
		return c, nil
	}, func() { r.Close() }, nil
}

// measureReap measures exit-to-collected latency, paced (SIGKILL to one
// child at a time) and in a flood (every child's stdin reaches end of file
// at once). The exit is the kernel's timestamp from the proc connector;
// without it (not root), the signal or the release.
func measureReap(ctx context.Context, mode string, paced, flood int) (*reapRun, error) {
	r := &reapRun{Mode: mode, Paced: paced, Flood: flood, From: fromExit}
	watch, err := watchExits()
	if err != nil {
		r.From = fromSignal + " (" + err.Error() + ")"
	}
	defer func() {
		if watch != nil {
			watch.close()
		}
	}()
	found := false // an exit event has been seen: the connector works here
	// latency is from c's exit (or from) to seen, when it was collected.
	// The wall clock's offset from the monotonic one (the connector's) is
	// read anew each time: NTP slews it by up to 0.5 ms a second, more than
	// a paced reap takes (a run's offset, read once, gave -331 µs).
	latency := func(c child, from, seen time.Time) (time.Duration, error) {
		off := monoOffset()
		if watch == nil {
			return seen.Sub(from), nil
		}
		ts, err := watch.at(c.pid, 5*time.Second)
		if err != nil && !found {
			// Bound but deaf (another network namespace): fall back.
			r.From = fromSignal + " (" + err.Error() + ")"
			watch.close()
			watch = nil
			return seen.Sub(from), nil
		}
		if err != nil {
			return 0, err
		}
		found = true
		return time.Duration(seen.UnixNano() - off - ts), nil
	}
	start, closeStarter, err := newStarter(ctx, mode)
	if err != nil {
		return r, err
	}
	defer closeStarter()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return r, err
	}
	defer null.Close()
	// spawn starts n children on a new pipe; closing wr releases them.
	spawn := func(n int) (kids []child, wr *os.File, err error) {
		rd, wr, err := os.Pipe()
		if err != nil {
			return nil, nil, err
		}
		defer rd.Close()
		for range n {
			c, err := start(shArgv, rd, null)
			if err != nil {
				wr.Close()
				return nil, nil, err
			}
			kids = append(kids, c)
		}
		return kids, wr, nil
	}

	// Paced: children wait on a pipe that stays open; each is killed alone.
	kids, wr, err := spawn(paced)
	if err != nil {
		return r, err
	}
	defer wr.Close()
	var lat []time.Duration
	for _, c := range kids {
		t := time.Now()
		if err := c.kill(); err != nil {
			return r, err
		}
		select {
		case at := <-c.seen:
			d, err := latency(c, t, at)
			if err != nil {
				return r, fmt.Errorf("paced: %w", err)
			}
			lat = append(lat, d)
		case <-ctx.Done():
			return r, fmt.Errorf("paced: an exit was never seen: %w", ctx.Err())
		}
		if err := sleep(ctx, time.Millisecond); err != nil { // the pace
			return r, err
		}
	}
	wr.Close()
	r.PacedP50, r.PacedP99, r.PacedMax = percentiles(lat)

	// Flood: every child waits on one pipe, whose writer is then closed.
	r.ThreadsBefore, _, _ = procStatus(os.Getpid())
	t := time.Now()
	kids, wr, err = spawn(flood)
	if err != nil {
		return r, err
	}
	defer wr.Close()
	r.SpawnRate = float64(flood) / time.Since(t).Seconds()
	// Let every child reach its read, and every waiter its wait.
	if err := sleep(ctx, 500*time.Millisecond); err != nil {
		return r, err
	}
	r.Threads, _, _ = procStatus(os.Getpid())
	release := time.Now()
	wr.Close()
	seen := make([]time.Time, len(kids))
	var last time.Time
	for i, c := range kids {
		select {
		case seen[i] = <-c.seen:
			if seen[i].After(last) {
				last = seen[i]
			}
		case <-ctx.Done():
			r.Lost++
		}
	}
	if r.Lost > 0 {
		return r, fmt.Errorf("flood: %d of %d exits never seen", r.Lost, flood)
	}
	r.FloodMax = last.Sub(release)
	lat = lat[:0]
	for i, c := range kids {
		d, err := latency(c, release, seen[i])
		if err != nil {
			return r, fmt.Errorf("flood: %w", err)
		}
		lat = append(lat, d)
	}
	r.FloodP50, r.FloodP99, _ = percentiles(lat)
	r.Zombies = zombies()
	return r, nil
}

// zombies counts this process's children that have exited unreaped.
func zombies() int {
	pids, err := orphans.Children()
	if err != nil {
		return -1
	}
	n := 0
	for _, pid := range pids {
		if st, err := procState(pid); err == nil && st == "Z" {
			n++
		}
	}
	return n
}
