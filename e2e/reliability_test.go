//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The reliability tests: what the example's supervisor does when a worker
// dies with requests in flight, when the kernel refuses it descriptors or
// processes, under a storm of SIGHUP, and through a seeded random soak of
// all of these at once.

// TestWorkerKilledMidRequest: 16 keep-alive clients that never retry hold
// requests of 100ms in flight; one worker is SIGKILLed. The only requests
// that fail are the ones on the connections that worker owned, at most one
// per connection; the other workers keep serving, and the slot gets a
// ready replacement.
func TestWorkerKilledMidRequest(t *testing.T) {
	sup := startExample(t, "-listen", "127.0.0.1:0", "-workers", "3", "-min-uptime", "0")
	slotOf := map[int]int{}
	for range 3 {
		l := sup.next("worker ready")
		slotOf[l.Pid] = l.Worker
	}
	load := startOwnedLoad(sup.addr, 16, "/?sleep=100ms")
	defer load.finish()
	load.waitOwned(t)

	// The victim: the worker that owns the most connections, each with a
	// request in flight nearly all the time.
	owners := load.owners()
	victim, onVictim := 0, 0
	for pid, n := range countInts(owners) {
		if n > onVictim {
			victim, onVictim = pid, n
		}
	}
	if _, ok := slotOf[victim]; !ok {
		t.Fatalf("connection owner %d is not one of the workers %v", victim, slotOf)
	}
	if f := load.failures(); len(f) > 0 {
		t.Fatalf("requests failed before the kill: %v", f)
	}
	before := load.servedBy()
	if err := unix.PidfdSendSignal(pidfd(t, victim), unix.SIGKILL, nil, 0); err != nil {
		t.Fatal(err)
	}
	repl := sup.until("worker ready", func(l logLine) bool { return l.Worker == slotOf[victim] })
	replacement := repl[len(repl)-1].Pid
	load.waitRequests(t, 200)
	load.finish()

	after := load.servedBy()
	survivors := 0
	for pid := range slotOf {
		if pid != victim {
			survivors += after[pid] - before[pid]
		}
	}
	if survivors == 0 {
		t.Errorf("the surviving workers served nothing after the kill (served %v)", after)
	}
	fails := load.failures()
	for _, f := range fails {
		if f.owner != victim {
			t.Errorf("a request failed on a connection owned by %d, not by the killed worker %d: %s", f.owner, victim, f.err)
		}
	}
	if len(fails) == 0 || len(fails) > onVictim {
		t.Errorf("%d requests failed; want 1 to %d, one per connection the killed worker owned: %v", len(fails), onVictim, fails)
	}
	t.Logf("killed worker %d owned %d of 16 connections: %d requests failed, all on them; survivors served %d after the kill; replacement %d served %d",
		victim, onVictim, len(fails), survivors, replacement, after[replacement])
	if zs := zombies(t, sup.pid); len(zs) > 0 {
		t.Errorf("zombies: %v", zs)
	}
	stopClean(t, sup.cmd.Process, sup.wait)
}

// TestEMFILEWhileSpawning: once the supervisor has no descriptor left
// (RLIMIT_NOFILE lowered under it), starting a worker fails with EMFILE.
// The error is logged saying so, the start is retried with a doubling
// backoff instead of a spin, the worker that runs keeps serving, no zombie
// is left; with the limit raised the start succeeds, and lowered again the
// supervisor still stops cleanly.
func TestEMFILEWhileSpawning(t *testing.T) {
	sup, err := startSupervisorWith(t, exampleBin, nil, nil, "-listen", "127.0.0.1:0", "-workers", "1", "-min-uptime", "0")
	if err != nil {
		t.Fatal(err)
	}
	serving := sup.next("worker ready").Pid

	// The soft limit at the lowest free descriptor: the next one fails.
	old := lowerNofile(t, sup.pid)
	sup.signal(unix.SIGTTIN)
	fails := sup.startFailures(t, 1, 4)
	for _, f := range fails {
		if !strings.Contains(f.Error, "too many open files") {
			t.Errorf("start failure %d: error %q does not say %q", f.Failures, f.Error, "too many open files")
		}
	}
	t.Logf("start failure: %s", fails[0].Error)
	if got := get(t, sup.addr); got != serving {
		t.Errorf("served by %d, want the running worker %d", got, serving)
	}
	if zs := zombies(t, sup.pid); len(zs) > 0 {
		t.Errorf("zombies after the failed starts: %v", zs)
	}

	// Descriptors back: the slot's next retry starts a worker.
	if err := unix.Prlimit(sup.pid, unix.RLIMIT_NOFILE, &old, nil); err != nil {
		t.Fatal(err)
	}
	sup.until("worker ready", func(l logLine) bool { return l.Worker == 1 })
	// The 1st to 4th failures are logged, then every power of two: a spin
	// would have logged the 8th, 16th, 32nd… by now.
	if n := sup.count("worker start failed"); n > 5 {
		t.Errorf("%d start failures logged, want at most 5", n)
	}

	// Out of descriptors again, the supervisor still stops with status 0.
	lowerNofile(t, sup.pid)
	stopClean(t, sup.cmd.Process, sup.wait)
	t.Logf("%d log lines of start failures in all", sup.count("worker start failed"))
}

// TestEAGAINFromProcessLimit: a supervisor running as an unprivileged user
// at its RLIMIT_NPROC cannot fork: the start fails with EAGAIN, is logged
// saying so and retried with a doubling backoff; the running worker keeps
// serving, no zombie is left; once the limit is raised the retry starts the
// worker, and SIGTERM stops everything with status 0.
//
// The limit is held only across two failed starts: a Go program at its
// process limit cannot create a thread either, and the runtime aborts when
// it needs one (with cgo, "runtime/cgo: pthread_create failed"). Held for
// half a second, that killed the supervisor in about 1 run of 20.
func TestEAGAINFromProcessLimit(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to run the supervisor as another user (RLIMIT_NPROC does not bind root)")
	}
	// RLIMIT_NPROC counts threads as well as processes: at the limit, the
	// Go runtime of the supervisor itself dies ("failed to create new OS
	// thread", exit 2) whenever it happens to need one more thread, which
	// is a matter of timing. Seen once in a clean CI run; so this proof is
	// opt-in until the supervisor keeps threads in reserve.
	if os.Getenv("HANDOFF_TEST_NPROC") == "" {
		t.Skip("set HANDOFF_TEST_NPROC=1: at RLIMIT_NPROC the Go runtime can die needing a thread (see the comment)")
	}
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) is not installed")
	}
	const nobody = 65534
	// The binary must be reachable by nobody: a 0755 directory under a
	// world-searchable temp dir.
	dir, err := os.MkdirTemp("", "handoff-nproc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "example")
	copyFile(t, exampleBin, bin)
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm()&0o001 == 0 {
			t.Skipf("%s is not searchable by other users", d)
		}
	}

	attr := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	sup, err := startSupervisorWith(t, bin, attr, nil, "-listen", "127.0.0.1:0", "-workers", "1", "-min-uptime", "0")
	if err != nil {
		t.Skipf("cannot start the supervisor as uid %d: %v", nobody, err)
	}
	serving := sup.next("worker ready").Pid

	// The supervisor's soft RLIMIT_NPROC, set by the user itself: root may
	// lack CAP_SYS_RESOURCE, which setting another user's limits takes.
	var own unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &own); err != nil {
		t.Fatal(err)
	}
	setSoft := func(n uint64) {
		t.Helper()
		set := exec.Command(prlimit, "--pid", strconv.Itoa(sup.pid), fmt.Sprintf("--nproc=%d:", n))
		set.SysProcAttr = attr
		if out, err := set.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", set, err, out)
		}
	}
	// RLIMIT_NPROC counts every task (thread) of the user: at that count,
	// the next fork fails.
	tasks := userTasks(t, nobody)
	setSoft(uint64(tasks))
	t.Logf("uid %d has %d tasks; the supervisor's RLIMIT_NPROC is now %d", nobody, tasks, tasks)
	sup.signal(unix.SIGTTIN)
	fails := sup.startFailures(t, 1, 2)
	setSoft(own.Cur)
	for _, f := range fails {
		if !strings.Contains(f.Error, "resource temporarily unavailable") {
			t.Errorf("start failure %d: error %q does not say %q", f.Failures, f.Error, "resource temporarily unavailable")
		}
	}
	t.Logf("start failure: %s", fails[0].Error)
	if got := get(t, sup.addr); got != serving {
		t.Errorf("served by %d, want the running worker %d", got, serving)
	}
	if zs := zombies(t, sup.pid); len(zs) > 0 {
		t.Errorf("zombies after the failed starts: %v", zs)
	}

	// The limit raised, the next retry starts the worker.
	started := sup.until("worker ready", func(l logLine) bool { return l.Worker == 1 })
	kids := workerKids(t, sup.pid)
	slices.Sort(kids)
	want := []int{serving, started[len(started)-1].Pid}
	slices.Sort(want)
	if !slices.Equal(kids, want) {
		t.Errorf("supervisor's children %v, want the workers %v", kids, want)
	}
	stopClean(t, sup.cmd.Process, sup.wait)
}

// TestSIGHUPStorm: 100 SIGHUPs sent as fast as possible while a roll runs
// coalesce into one queued roll: when the storm falls within the first
// roll, two rolls in all, to generation 3. A SIGTTIN sent after the storm is
// handled after every one of its SIGHUPs (signals of a lower number are
// delivered first), and markers sent after each roll ends prove that no
// further roll was queued. The log is replayed against the rule (a SIGHUP
// starts a roll when none runs, else queues one, once), so a storm that a
// slow scheduler spreads over two rolls is judged too; storms are repeated
// (up to 8) until one roll has met several SIGHUPs. The supervisor keeps
// serving, and its descriptor count does not move.
func TestSIGHUPStorm(t *testing.T) {
	sup, err := startSupervisorWith(t, exampleBin, nil, nil, "-listen", "127.0.0.1:0", "-workers", "3", "-min-uptime", "0")
	if err != nil {
		t.Fatal(err)
	}
	var lines []logLine
	for range 3 {
		lines = append(lines, sup.until("worker ready", nil)...)
	}
	fds := fdTable(t, sup.pid)

	var last stormReplay
	most := 0 // the most SIGHUPs one roll met
	for attempt := 1; ; attempt++ {
		from := len(lines)
		// The first SIGHUP starts a roll; the other 99 follow at once.
		sup.signal(unix.SIGHUP)
		lines = append(lines, sup.until("rolling", nil)...)
		for range 99 {
			sup.signal(unix.SIGHUP)
		}
		lines = settleRolls(t, sup, lines)
		last = replayStorm(lines[from:])
		t.Logf("storm %d: 100 SIGHUPs sent, %d reached the supervisor, %d during the roll they started; rolls to generations %v, %d queued",
			attempt, last.hups, last.duringFirst, last.rolls, last.queued)
		if len(last.rolls) != last.wantRolls || last.queued != last.wantQueued {
			t.Fatalf("storm %d: %d rolls and %d queued; the SIGHUPs as handled call for %d rolls, %d of them queued (one per roll that saw SIGHUPs)",
				attempt, len(last.rolls), last.queued, last.wantRolls, last.wantQueued)
		}
		if last.hups == last.duringFirst+1 {
			// The whole storm fell within the first roll.
			g := last.rolls[0]
			if !slices.Equal(last.rolls, []uint64{g, g + 1}) {
				t.Errorf("storm %d: rolls to generations %v, want [%d %d]: one roll, and one queued for the storm", attempt, last.rolls, g, g+1)
			}
		}
		most = max(most, last.most)
		if most >= 2 || attempt == 8 {
			break
		}
		// Signals coalesce in the kernel and the runtime too: often a
		// single SIGHUP of the 99 gets through. Another storm, until one
		// roll meets several.
	}
	switch most {
	case 0:
		t.Errorf("no SIGHUP of %d storms was handled while a roll ran", 8)
	case 1:
		t.Logf("no roll met more than one SIGHUP in 8 storms: the queue's coalescing went untested this time")
	}

	// The retired workers are gone: the descriptor count is back.
	sup.waitRetired(t, lines)
	if diff := settledFdDiff(t, sup.pid, fds); diff != "" {
		t.Errorf("supervisor fds changed by the storm: %s", diff)
	}
	want := last.rolls[len(last.rolls)-1]
	if gen := generationOf(t, sup.addr); gen != strconv.FormatUint(want, 10) {
		t.Errorf("served by generation %s, want %d", gen, want)
	}
	if zs := zombies(t, sup.pid); len(zs) > 0 {
		t.Errorf("zombies: %v", zs)
	}
	stopClean(t, sup.cmd.Process, sup.wait)
}

// settleRolls sends SIGTTIN, then waits until no roll runs or is queued,
// and returns lines with every line read. To know that none is queued: a
// queued roll starts in the same step of the run loop as the running one
// completes, so once a roll has ended, a marker (SIGTTOU or SIGTTIN) whose
// "scaling" comes with no "rolling" before it proves it. It leaves 3
// workers, and reads the retiring line of the one scaled down last.
func settleRolls(t *testing.T, sup *supervised, lines []logLine) []logLine {
	t.Helper()
	workers := 3
	mark := func(sig unix.Signal) []logLine {
		sup.signal(sig)
		marked := sup.until("scaling", nil)
		workers = marked[len(marked)-1].To
		return marked
	}
	lines = append(lines, mark(unix.SIGTTIN)...)
	for {
		g := runningRoll(lines)
		if g != 0 {
			// The roll ends, or every slot serves its generation: then
			// its end is owed in that same step of the run loop, before
			// the supervisor handles anything else, such as the marker.
			ready := readyGenerations(lines)
			lines = append(lines, sup.untilAny(func(l logLine) bool {
				if l.Generation == g && (l.Msg == "roll complete" || strings.HasPrefix(l.Msg, "roll failed")) {
					return true
				}
				if l.Msg == "worker ready" {
					ready[l.Worker] = max(ready[l.Worker], l.Generation)
				}
				for slot := range workers {
					if ready[slot] < g {
						return false
					}
				}
				return true
			})...)
		}
		sig := unix.SIGTTOU
		if workers == 3 {
			sig = unix.SIGTTIN
		}
		marked := mark(sig)
		handled := slices.IndexFunc(marked, func(l logLine) bool { return l.Msg == "signal" })
		if g != 0 && runningRoll(append(lines, marked[:handled]...)) == g {
			t.Errorf("the roll to generation %d did not complete when every slot served it: it waited for the next event (%v)", g, sig)
		}
		lines = append(lines, marked...)
		if runningRoll(lines) == 0 && !slices.ContainsFunc(marked, func(l logLine) bool { return l.Msg == "rolling" }) {
			break
		}
	}
	if workers == 4 {
		lines = append(lines, mark(unix.SIGTTOU)...)
	}
	// The worker scaled down is retired after the "scaling" line.
	return append(lines, sup.until("retiring worker", func(l logLine) bool { return l.Worker == 3 })...)
}

// stormReplay is what replayStorm found in the log of a storm.
type stormReplay struct {
	hups        int      // SIGHUPs handled
	duringFirst int      // of them, while the roll the storm started ran
	most        int      // the most handled while one roll ran
	rolls       []uint64 // generations rolled to
	queued      int      // "roll queued" lines
	// What the rule calls for: a SIGHUP with no roll running starts one;
	// those during a roll queue one more, to start when it completes.
	wantRolls, wantQueued int
}

func replayStorm(lines []logLine) stormReplay {
	var r stormReplay
	var running uint64
	during := 0
	for _, l := range lines {
		switch {
		case l.Msg == "signal" && l.Signal == "hangup":
			r.hups++
			if running == 0 {
				r.wantRolls++ // its "rolling" follows
			} else {
				during++
			}
		case l.Msg == "rolling":
			r.rolls = append(r.rolls, l.Generation)
			running, during = l.Generation, 0
		case l.Msg == "roll complete", strings.HasPrefix(l.Msg, "roll failed"):
			if len(r.rolls) == 1 {
				r.duringFirst = during
			}
			if during > 0 {
				r.wantRolls++
				r.wantQueued++
			}
			r.most = max(r.most, during)
			running = 0
		case l.Msg == "roll queued":
			r.queued++
		}
	}
	return r
}

// TestSoak runs the example with 4 workers under 16 keep-alive clients
// that never retry, through a seeded random sequence of SIGKILLed workers,
// rolls, in-place upgrades and floods of the notify socket with foreign,
// malformed, oversized and descriptor-carrying datagrams, for
// HANDOFF_SOAK_SECONDS (default 30; 5 with -short; HANDOFF_SOAK_SEED
// replays a run). Then: the supervisor is the same process, 4 workers serve
// after a last roll, its descriptor count is back to where it was after
// warm-up, no zombie, no worker died that was not killed, and the only
// failed requests were on connections a killed worker owned.
func TestSoak(t *testing.T) {
	dur := 30 * time.Second
	if testing.Short() {
		dur = 5 * time.Second
	}
	if s := os.Getenv("HANDOFF_SOAK_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			t.Fatalf("HANDOFF_SOAK_SECONDS=%q: want a number of seconds", s)
		}
		dur = time.Duration(n) * time.Second
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HANDOFF_SOAK_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("HANDOFF_SOAK_SEED=%q: want an unsigned number", s)
		}
		seed = n
	}
	t.Logf("seed %d (HANDOFF_SOAK_SEED=%d replays it), %v", seed, seed, dur)
	rng := rand.New(rand.NewPCG(seed, 0))

	sup, err := startSupervisorWith(t, exampleBin, nil, nil, "-listen", "127.0.0.1:0", "-workers", "4", "-min-uptime", "0")
	if err != nil {
		t.Fatal(err)
	}
	s := &soak{t: t, sup: sup, slots: map[int]int{}, retiring: map[int]bool{}, killed: map[int]bool{}, gen: 1}
	for len(s.slots) < 4 {
		s.await(func(l logLine) bool { return l.Msg == "worker ready" })
	}
	s.load = startOwnedLoad(sup.addr, 16, "/?sleep=10ms")
	defer s.load.finish()
	s.load.waitRequests(t, 200)
	s.quiesce()
	fds := fdTable(t, sup.pid)

	steps := map[string]int{}
	for start, n := time.Now(), 1; time.Since(start) < dur; n++ {
		step := []string{"kill", "kill", "roll", "upgrade", "flood"}[rng.IntN(5)]
		s.load.setPhase(fmt.Sprintf("step %d (%s)", n, step))
		switch step {
		case "kill":
			s.kill(rng)
			steps[step]++
		case "roll":
			s.roll()
			steps[step]++
		case "upgrade":
			s.upgrade()
			steps[step]++
		case "flood":
			steps[step] += s.flood()
		}
		s.load.waitRequests(t, 50)
		s.load.setPhase(fmt.Sprintf("step %d (%s): waiting for the drain", n, step))
		s.quiesce()
	}
	s.load.setPhase("the last roll")
	s.roll()
	s.load.waitRequests(t, 100)
	s.quiesce()
	s.load.finish()
	t.Logf("steps %v (flood: datagrams sent)", steps)

	if err := syscall.Kill(sup.pid, 0); err != nil {
		t.Fatalf("supervisor %d: %v", sup.pid, err)
	}
	kids := workerKids(t, sup.pid)
	slices.Sort(kids)
	want := slices.Sorted(maps.Values(s.slots))
	if !slices.Equal(kids, want) {
		t.Errorf("supervisor's children %v, want the 4 workers %v", kids, want)
	}
	if diff := settledFdDiff(t, sup.pid, fds); diff != "" {
		t.Errorf("supervisor fds changed from warm-up to the end: %s", diff)
	}
	if zs := zombies(t, sup.pid); len(zs) > 0 {
		t.Errorf("zombies: %v", zs)
	}
	ok := s.load.successes()
	fails := s.load.failures()
	explained := false
	for _, f := range fails {
		if !s.killed[f.owner] {
			t.Errorf("a request failed on a connection whose owner (%d; 0: not known yet) was not killed: %v", f.owner, f)
			if explained {
				continue
			}
			explained = true
			t.Logf("around that failure:")
			for _, k := range s.kills {
				if d := k.at.Sub(f.at); d > -300*time.Millisecond && d < 100*time.Millisecond {
					t.Logf("  %+.3fs the test killed worker %d (slot %d)", d.Seconds(), k.pid, k.slot)
				}
			}
			at := float64(f.at.UnixNano()) / 1e9
			for _, l := range sup.seen {
				if ts := float64(l.Ts); ts > at-0.3 && ts < at+0.1 {
					t.Logf("  %+.3fs %s pid %d slot %d generation %d %s", ts-at, l.Msg, l.Pid, l.Worker, l.Generation, l.Status)
				}
			}
		}
	}
	t.Logf("%d requests, %d failed; %d workers killed", ok+len(fails), len(fails), len(s.killed))
	stopClean(t, sup.cmd.Process, sup.wait)
}

// soak is TestSoak's state, kept from the supervisor's log.
type soak struct {
	t        *testing.T
	sup      *supervised
	load     *ownedLoad
	slots    map[int]int  // slot → its serving worker
	retiring map[int]bool // workers asked to exit that have not yet
	killed   map[int]bool // workers the test SIGKILLed
	kills    []soakKill
	gen      uint64
}

// soakKill is one worker the soak killed, and when.
type soakKill struct {
	pid, slot int
	at        time.Time
}

// await reads the log until a line satisfies match, keeping the state and
// failing the test on a line that should not be there.
func (s *soak) await(match func(logLine) bool) logLine {
	s.t.Helper()
	lines := s.sup.untilAny(func(l logLine) bool {
		s.keep(l)
		return match(l)
	})
	return lines[len(lines)-1]
}

// keep updates the state from l, and fails the test on a line that shows
// something went wrong: a worker died that was not killed, a roll or an
// upgrade failed, a start failed, the watchdog fired (a foreign
// WATCHDOG=trigger taken for a worker's), the notify socket broke.
func (s *soak) keep(l logLine) {
	s.t.Helper()
	switch {
	case l.Msg == "worker ready":
		s.slots[l.Worker] = l.Pid
	case l.Msg == "retiring worker":
		s.retiring[l.Pid] = true
	case l.Msg == "worker exited":
		delete(s.retiring, l.Pid)
	case l.Msg == "worker died; restarting" && !s.killed[l.Pid],
		strings.HasPrefix(l.Msg, "watchdog"),
		strings.HasPrefix(l.Msg, "roll failed"),
		strings.HasPrefix(l.Msg, "upgrade failed"),
		l.Msg == "worker start failed",
		l.Msg == "new worker exited before it was ready",
		l.Msg == "notify socket":
		s.t.Errorf("unexpected log line %+v", l)
	}
}

// quiesce waits until every retired worker has exited and every client's
// connection has answered, so that the owner of every connection is known.
func (s *soak) quiesce() {
	for len(s.retiring) > 0 {
		s.await(func(l logLine) bool { return l.Msg == "worker exited" })
	}
	s.load.waitOwned(s.t)
}

// kill SIGKILLs a random serving worker and waits for its replacement.
func (s *soak) kill(rng *rand.Rand) {
	slot := rng.IntN(len(s.slots))
	victim := s.slots[slot]
	s.killed[victim] = true
	fd, err := unix.PidfdOpen(victim, 0)
	if err != nil {
		s.t.Fatalf("worker %d, serving in slot %d, is gone before the test killed it: %v", victim, slot, err)
	}
	defer unix.Close(fd)
	s.kills = append(s.kills, soakKill{victim, slot, time.Now()})
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil {
		s.t.Fatalf("kill worker %d: %v", victim, err)
	}
	s.await(func(l logLine) bool { return l.Msg == "worker ready" && l.Worker == slot })
}

func (s *soak) roll() {
	s.sup.cmd.Process.Signal(syscall.SIGHUP)
	s.gen++
	s.await(func(l logLine) bool { return l.Msg == "roll complete" && l.Generation == s.gen })
}

func (s *soak) upgrade() {
	s.sup.cmd.Process.Signal(syscall.SIGUSR2)
	l := s.await(func(l logLine) bool { return l.Msg == "supervisor upgraded in place" })
	if l.Pid != s.sup.pid {
		s.t.Fatalf("upgraded supervisor has pid %d, want %d", l.Pid, s.sup.pid)
	}
}

// flood sends the notify socket, as its workers see it, 1000 datagrams
// from the test process: a stranger, whose messages must change nothing.
// It returns how many it sent.
func (s *soak) flood() int {
	s.t.Helper()
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", s.slots[0]))
	if err != nil {
		s.t.Fatal(err)
	}
	var name string
	for _, kv := range strings.Split(string(env), "\x00") {
		if v, ok := strings.CutPrefix(kv, "NOTIFY_SOCKET="); ok {
			name = v
		}
	}
	if name == "" {
		s.t.Fatalf("worker %d has no NOTIFY_SOCKET", s.slots[0])
	}
	return floodNotify(s.t, name, 1000)
}

// floodNotify sends n datagrams to the notify socket name: valid messages
// that would stop, trigger or ready a worker, malformed ones, oversized
// ones, empty ones, and some carrying descriptors, which the receiver must
// close.
func floodNotify(t *testing.T, name string, n int) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// A full queue blocks the sender; a supervisor that stopped reading
	// fails the test at its deadline.
	tv := unix.NsecToTimeval(time.Until(deadline(t)).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	nul := int(devnull.Fd())
	rights := unix.UnixRights(nul, nul, nul, nul)
	to := &unix.SockaddrUnix{Name: name}
	payloads := []string{
		"READY=1", "WATCHDOG=trigger", "STOPPING=1\nSTATUS=stopping", "RELOADING=1", "MAINPID=1\nREADY=1",
		"READY=2", "garbage", "lower=1", "STATUS=\xff\xfe", "READY=1\x00", "=", "",
		"STATUS=" + strings.Repeat("x", 64<<10), "STATUS=" + strings.Repeat("y", 5000),
	}
	for i := range n {
		var oob []byte
		if i%5 == 0 {
			oob = rights
		}
		err := unix.Sendmsg(fd, []byte(payloads[i%len(payloads)]), oob, to, 0)
		for err == unix.EINTR { // the runtime's preemption signal
			err = unix.Sendmsg(fd, []byte(payloads[i%len(payloads)]), oob, to, 0)
		}
		if err != nil {
			t.Fatalf("datagram %d to the notify socket %s: %v", i, name, err)
		}
	}
	return n
}

// stopClean sends SIGTERM and expects exit status 0 and no worker left.
func stopClean(t *testing.T, p *os.Process, wait func() error) {
	t.Helper()
	var handles []int
	for _, k := range children(t, p.Pid) {
		handles = append(handles, pidfd(t, k))
	}
	p.Signal(syscall.SIGTERM)
	if err := wait(); err != nil {
		t.Fatalf("supervisor exit after SIGTERM: %v", err)
	}
	for _, h := range handles {
		if alive(h) {
			t.Errorf("a worker outlived the supervisor")
		}
	}
}

// lowerNofile sets pid's soft RLIMIT_NOFILE to its lowest free descriptor,
// so that its next open fails with EMFILE, and returns the old limit.
func lowerNofile(t *testing.T, pid int) unix.Rlimit {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	open := map[int]bool{}
	for _, e := range ents {
		n, _ := strconv.Atoi(e.Name())
		open[n] = true
	}
	free := 0
	for open[free] {
		free++
	}
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Fatal(err)
	}
	lim := unix.Rlimit{Cur: uint64(free), Max: old.Max}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("supervisor has %d descriptors open; its RLIMIT_NOFILE is now %d", len(ents), free)
	return old
}

// userTasks counts the tasks (threads included) whose real uid is uid.
func userTasks(t *testing.T, uid int) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/status")
	n := 0
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var real, threads int
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Uid:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					real, _ = strconv.Atoi(f[0])
				}
			}
			if v, ok := strings.CutPrefix(line, "Threads:"); ok {
				threads, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if real == uid {
			n += threads
		}
	}
	return n
}

// fdTable returns what each of pid's descriptors refers to.
func fdTable(t *testing.T, pid int) map[int]string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	fds := map[int]string{}
	for _, e := range ents {
		n, _ := strconv.Atoi(e.Name())
		fds[n], _ = os.Readlink(filepath.Join(dir, e.Name()))
		if fds[n] == "anon_inode:[pidfd]" {
			info, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, n))
			for _, line := range strings.Split(string(info), "\n") {
				if v, ok := strings.CutPrefix(line, "Pid:"); ok {
					fds[n] += " pid " + strings.TrimSpace(v)
				}
			}
		}
	}
	return fds
}

// settledFdDiff is fdDiff of before and pid's descriptors, once they are
// as many as before or 5 s have passed: the hand-over router closes an
// exited worker's socket once its reader has drained it, after the exit is
// logged, and a closing descriptor has no event to wait on from here.
func settledFdDiff(t *testing.T, pid int, before map[int]string) string {
	t.Helper()
	end := time.Now().Add(5 * time.Second)
	for {
		diff := fdDiff(before, fdTable(t, pid))
		if diff == "" || time.Now().After(end) {
			return diff
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fdDiff describes how many descriptors before and after hold and which
// kinds came or went; "" if the counts are equal. (Numbers and inodes may
// change: an in-place upgrade reopens some.)
func fdDiff(before, after map[int]string) string {
	if len(before) == len(after) {
		return ""
	}
	kind := func(target string) string {
		k, _, _ := strings.Cut(target, " pid ")
		return k
	}
	count := func(fds map[int]string) map[string]int {
		m := map[string]int{}
		for _, target := range fds {
			m[kind(target)]++
		}
		return m
	}
	var gone, came []string
	for fd, target := range before {
		if after[fd] != target {
			gone = append(gone, fmt.Sprintf("%d→%s", fd, target))
		}
	}
	for fd, target := range after {
		if before[fd] != target {
			came = append(came, fmt.Sprintf("%d→%s", fd, target))
		}
	}
	slices.Sort(gone)
	slices.Sort(came)
	return fmt.Sprintf("%d descriptors before, %d after (by kind %v, then %v); gone %v, new %v",
		len(before), len(after), count(before), count(after), gone, came)
}

// generationOf returns the X-Generation of a response on a new connection.
func generationOf(t *testing.T, addr string) string {
	t.Helper()
	resp, err := noKeepAlive.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.Header.Get("X-Generation")
}

func countInts(s []int) map[int]int {
	m := map[int]int{}
	for _, v := range s {
		m[v]++
	}
	return m
}

func countMsg(lines []logLine, msg string) int {
	n := 0
	for _, l := range lines {
		if l.Msg == msg {
			n++
		}
	}
	return n
}

// ownedLoad is a set of keep-alive HTTP clients that never retry (each
// POSTs in a loop through its own net/http Transport) and know which
// worker owns each one's connection: the pid in the last response on it,
// or 0 for a new connection that has not answered yet.
type ownedLoad struct {
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every response
	owner   []int         // client → owner of its current connection
	phase   string
	ok      int
	okBy    map[int]int // pid → successes
	fails   []ownedFailure
}

type ownedFailure struct {
	owner int    // of the connection the request was sent on
	phase string // what the test was doing (setPhase)
	err   string
	at    time.Time
}

func (f ownedFailure) String() string {
	return fmt.Sprintf("owner %d, during %s: %s", f.owner, f.phase, f.err)
}

func startOwnedLoad(addr string, clients int, path string) *ownedLoad {
	l := &ownedLoad{stop: make(chan struct{}), changed: make(chan struct{}), owner: make([]int, clients), okBy: map[int]int{}}
	url := "http://" + addr + path
	for i := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 15 * time.Second}
			// conn is the connection of the last request. A new one has no
			// owner until it answers: the owner is reset as soon as the
			// request has it, so that waitOwned sees requests in flight on
			// new connections.
			var mu sync.Mutex
			var conn net.Conn
			var got bool // this request has a connection
			trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
				mu.Lock()
				fresh := info.Conn != conn
				conn, got = info.Conn, true
				mu.Unlock()
				if fresh {
					l.newConn(i)
				}
			}}
			ctx := httptrace.WithClientTrace(context.Background(), trace)
			for n := 0; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				mu.Lock()
				got = false
				mu.Unlock()
				body := strings.NewReader(fmt.Sprintf("client %d request %d", i, n))
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
				var resp *http.Response
				if err == nil {
					resp, err = c.Do(req)
				}
				pid := 0
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
					if pid, _ = strconv.Atoi(resp.Header.Get("X-Worker-Pid")); err == nil && pid == 0 {
						err = errors.New("no X-Worker-Pid")
					}
				}
				mu.Lock()
				if !got { // the dial failed: a failure of no worker's
					conn = nil
					l.newConn(i)
				}
				mu.Unlock()
				l.record(i, pid, err)
			}
		}()
	}
	return l
}

// newConn records that client is on a new connection, whose owner is not
// known yet.
func (l *ownedLoad) newConn(client int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.owner[client] = 0
}

func (l *ownedLoad) record(client int, pid int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.fails = append(l.fails, ownedFailure{l.owner[client], l.phase, err.Error(), time.Now()})
	} else {
		l.owner[client] = pid
		l.ok++
		l.okBy[pid]++
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// waitUntil waits until cond, called with l.mu held, is true.
func (l *ownedLoad) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	timeout := time.After(time.Until(deadline(t)))
	for {
		l.mu.Lock()
		done, changed := cond(), l.changed
		ok, failed := l.ok, len(l.fails)
		l.mu.Unlock()
		if done {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("load: timed out waiting for %s: %d successes, %d failures", what, ok, failed)
		}
	}
}

// waitRequests waits until n more requests have succeeded.
func (l *ownedLoad) waitRequests(t *testing.T, n int) {
	t.Helper()
	l.mu.Lock()
	target := l.ok + n
	l.mu.Unlock()
	l.waitUntil(t, fmt.Sprintf("%d successes", n), func() bool { return l.ok >= target })
}

// waitOwned waits until every client's connection has answered.
func (l *ownedLoad) waitOwned(t *testing.T) {
	t.Helper()
	l.waitUntil(t, "every connection to answer", func() bool { return !slices.Contains(l.owner, 0) })
}

// setPhase names what the test does now, for the failures that follow.
func (l *ownedLoad) setPhase(p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phase = p
}

func (l *ownedLoad) owners() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.owner)
}

func (l *ownedLoad) servedBy() map[int]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.okBy)
}

func (l *ownedLoad) successes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok
}

func (l *ownedLoad) failures() []ownedFailure {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.fails)
}

func (l *ownedLoad) finish() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// count returns how many lines until has returned had message msg.
func (s *supervised) count(msg string) int { return countMsg(s.seen, msg) }

// startFailures reads the start failures of slot until the one numbered
// last, checks that none of them started a worker in between and that the
// retry delay doubled each time (the backoff: no spin), and returns them.
func (s *supervised) startFailures(t *testing.T, slot, last int) []logLine {
	t.Helper()
	var fails []logLine
	for _, l := range s.until("worker start failed", func(l logLine) bool { return l.Worker == slot && l.Failures == last }) {
		switch {
		case l.Msg == "worker start failed" && l.Worker == slot:
			fails = append(fails, l)
		case l.Msg == "worker started" && l.Worker == slot:
			t.Errorf("slot %d started worker %d while starts were failing", slot, l.Pid)
		}
	}
	for i, f := range fails {
		if f.Failures != i+1 {
			t.Errorf("start failure logged as number %d, want %d (the first three and every power of two are logged)", f.Failures, i+1)
		}
		if i > 0 && f.RetryIn != 2*fails[i-1].RetryIn {
			t.Errorf("retry in %vs after failure %d, want %vs: the backoff doubles", f.RetryIn, f.Failures, 2*fails[i-1].RetryIn)
		}
		if f.RetryIn <= 0 {
			t.Errorf("retry in %vs after failure %d: no backoff", f.RetryIn, f.Failures)
		}
	}
	return fails
}

// runningRoll returns the generation of the roll that lines leave running,
// or 0.
func runningRoll(lines []logLine) uint64 {
	var g uint64
	for _, l := range lines {
		switch {
		case l.Msg == "rolling":
			g = l.Generation
		case l.Msg == "roll complete", strings.HasPrefix(l.Msg, "roll failed"):
			g = 0
		}
	}
	return g
}

// readyGenerations returns, for each slot, the latest generation in which
// a worker of it became ready in lines.
func readyGenerations(lines []logLine) map[int]uint64 {
	ready := map[int]uint64{}
	for _, l := range lines {
		if l.Msg == "worker ready" {
			ready[l.Worker] = max(ready[l.Worker], l.Generation)
		}
	}
	return ready
}

// waitRetired waits until every worker retired in lines (and in the lines
// read meanwhile) has exited.
func (s *supervised) waitRetired(t *testing.T, lines []logLine) {
	t.Helper()
	retiring := map[int]bool{}
	keep := func(ls []logLine) {
		for _, l := range ls {
			switch l.Msg {
			case "retiring worker":
				retiring[l.Pid] = true
			case "worker exited":
				delete(retiring, l.Pid)
			}
		}
	}
	keep(lines)
	for len(retiring) > 0 {
		keep(s.until("worker exited", nil))
	}
}
