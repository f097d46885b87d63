package supervisor

import (
	"errors"
	"os"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/cgroup"
	"github.com/handoff-dev/handoff/internal/proctree"
	"go.uber.org/zap"
)

// A stray is a process of a worker's tree that is not the worker itself:
// its children, their children, a daemon that called setsid, and, when the
// supervisor is a subreaper, any orphan re-parented to it. Strays are found
// when the supervisor stops, watched through a pidfd (package
// internal/proctree), and stopped with the workers: the stop signal when
// found, SIGKILL at the stop deadline. Run returns only once they are gone.
type stray = proctree.Stray

// msgSwept is logged, at debug level, after each listing of the workers'
// trees.
const msgSwept = "listed the workers' process trees"

// subreaping reports whether orphans of the workers' trees are re-parented
// to this process: asked for, or PID 1 of a pid namespace.
func (t *table) subreaping() bool { return t.o.subreaper || os.Getpid() == 1 }

// sweep finds the strays of the workers' trees that are not watched yet,
// and signals those whose worker is gone.
func (t *table) sweep() { t.signalStrays(t.findStrays()) }

// A sweep lists every process of the system, and then the trees of every
// live worker: one per exit made a stop of N workers quadratic (1,000
// workers: over 40 s, where a minimal program stops the same workers in
// 2.6 s). So the exits of a stop
// ask for a sweep, and sweepPace runs it when the live workers have halved
// since the last one (the last exit always sweeps), else once the sweep
// interval has passed: O(log N) sweeps plus one per interval. What a worker
// leaves that is already watched gets the stop signal at its exit
// (orphaned); the sweep is for what appeared since the last one.
type sweepPace struct {
	due  bool          // a worker exited since the last sweep
	at   time.Time     // when the last sweep began
	took time.Duration // how long it took
	live int           // live workers then
}

// sweepEvery is the shortest sweep interval; it is sweepCost times the last
// sweep's duration when that is longer, so that sweeping takes no more than
// about 1/sweepCost of the supervisor's time, but never over sweepMax.
const (
	sweepEvery = 100 * time.Millisecond
	sweepMax   = time.Second
	sweepCost  = 20
)

// treesInCgroups reports whether every live worker has a cgroup of its
// own, which holds its whole tree.
func (t *table) treesInCgroups() bool {
	if t.cgBase == "" {
		return false
	}
	for w := range t.live {
		if w.cgroup == "" {
			return false
		}
	}
	return true
}

// treeExited finds what the tree of w, a worker that exited during a stop,
// left behind. Its cgroup holds it, if it has one: that is read, not /proc
// (a /proc listing costs about 60 µs per process, and the live workers are
// most of them); the last exit sweeps all the same, when /proc is small
// again, for what no cgroup holds (a subreaper's other children).
func (t *table) treeExited(w *child) {
	if w.cgroup == "" || len(t.live) == 0 {
		t.sweepSoon()
		return
	}
	if !t.cgLeft[w.cgroup] {
		return // empty, and removed
	}
	var found []*stray
	for _, p := range cgroup.Members(w.cgroup) {
		found = t.addStray(found, p, 0)
	}
	t.signalStrays(found)
}

// sweepSoon asks for a sweep after a worker's exit during a stop.
func (t *table) sweepSoon() {
	t.pace.due = true
	if 2*len(t.live) <= t.pace.live || !time.Now().Before(t.nextSweep()) {
		t.sweep()
	}
}

// nextSweep is when a sweep that was asked for is due; zero: none is.
func (t *table) nextSweep() time.Time {
	if !t.pace.due {
		return time.Time{}
	}
	return t.pace.at.Add(min(max(sweepEvery, sweepCost*t.pace.took), sweepMax))
}

// orphaned signals the strays of a worker that has exited: its stop was its
// own business while it ran (a master such as gunicorn's arbiter stops its
// children gracefully, and would replace any killed under it); what it left
// behind gets the stop signal now.
func (t *table) orphaned(pid int) {
	var left []*stray
	for s := range t.strays.All() {
		if s.Owner == pid {
			s.Owner = 0
			left = append(left, s)
		}
	}
	t.signalStrays(left)
}

// signalStrays sends the strays that belong to no live worker the stop
// signal, or SIGKILL once the stop is killing.
func (t *table) signalStrays(strays []*stray) {
	sig := t.o.stopSignal
	if t.killing {
		sig = syscall.SIGKILL
	}
	for _, s := range strays {
		if s.Owner != 0 && t.byPid[s.Owner] != nil && !t.killing {
			continue // its worker stops it
		}
		t.log.Debug("stopping a process of a worker's tree", zap.Int("pid", s.Pid), zap.Stringer("signal", sig))
		t.signalStray(s, sig)
	}
}

// findStrays watches the strays of the workers' trees that are not watched
// yet, and returns them.
func (t *table) findStrays() (found []*stray) {
	began := time.Now()
	defer func() {
		t.pace = sweepPace{at: began, took: time.Since(began), live: len(t.live)}
	}()
	procs, err := proctree.Scan()
	if err != nil {
		t.log.Warn("listing the workers' process trees", zap.Error(err))
		return nil
	}
	self := os.Getpid()
	ix := proctree.NewIndex(procs, self)
	roots := make(map[int]bool, len(t.live))
	for w := range t.live {
		roots[w.info.Pid] = true
		t.groups[w.info.Pid] = true
	}
	if t.subreaping() {
		// Every child that is not a worker is an orphan of some worker's
		// tree (or a child of this process that the reaper started, such as
		// an upgrade's preflight run, which is stopped too), but the
		// janitor, which exits by itself once Run is over.
		janitor := 0
		if t.janitor != nil {
			janitor = t.janitor.Process().Pid()
		}
		for _, p := range procs {
			if p.PPid == self && !roots[p.Pid] && p.Pid != janitor {
				roots[p.Pid] = true
				found = t.addStray(found, p, 0)
			}
		}
	}
	// Each live worker's tree, owned by it; then what is left in the groups
	// of workers that exited, and under the orphans.
	for w := range t.live {
		own := map[int]bool{w.info.Pid: true}
		for _, p := range ix.Tree(own, own) {
			found = t.addStray(found, p, w.info.Pid)
		}
	}
	for _, p := range ix.Tree(roots, t.groups) {
		found = t.addStray(found, p, 0)
	}
	// What the cgroups of exited workers hold (setsid'd and double-forked
	// processes whose parents are gone). A live worker's cgroup keeps its
	// processes whatever their parents do, so it is read once the worker
	// has exited (the exit asks for a sweep), not at every sweep before.
	for dir := range t.cgLeft {
		for _, p := range cgroup.Members(dir) {
			found = t.addStray(found, p, 0)
		}
	}
	t.log.Debug(msgSwept, zap.Int("processes", len(procs)), zap.Int("workers", len(t.live)),
		zap.Int("found", len(found)), zap.Duration("took", time.Since(began)))
	return found
}

// addStray starts watching p, unless it is already watched or a worker, and
// appends it to found; owner is its live worker, or 0.
func (t *table) addStray(found []*stray, p proctree.Proc, owner int) []*stray {
	if t.strays.Has(p.Pid) || t.byPid[p.Pid] != nil {
		return found
	}
	s, err := t.strays.Watch(p, owner)
	if err != nil {
		if !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH) {
			t.log.Warn("watching a process of a worker's tree", zap.Int("pid", p.Pid), zap.Error(err))
		}
		return found
	}
	return append(found, s)
}

func (t *table) signalStray(s *stray, sig syscall.Signal) {
	if err := s.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, os.ErrClosed) {
		t.log.Warn("signal a process of a worker's tree", zap.Int("pid", s.Pid), zap.Stringer("signal", sig), zap.Error(err))
	}
}

// onStrayExit forgets a stray that has exited.
func (t *table) onStrayExit(s *stray) {
	t.strays.Exited(s)
	if len(t.cgLeft) > 0 {
		t.tidyCgroups()
	}
}

// killTrees sends SIGKILL to every stray, and to any found since.
func (t *table) killTrees() {
	if t.killing {
		return
	}
	t.killing = true
	if n := t.strays.Len(); n > 0 {
		t.log.Warn("processes of the workers' trees did not exit in time: killing", zap.Int("processes", n))
	}
	t.killCgroups()
	for s := range t.strays.All() {
		t.signalStray(s, syscall.SIGKILL)
	}
	t.sweep()
}

// treeDeadline acts on the stop deadline for the workers' trees, and on a
// sweep that has come due.
func (t *table) treeDeadline(now time.Time) {
	if next := t.nextSweep(); !next.IsZero() && !now.Before(next) {
		t.sweep()
	}
	if t.stopping && !t.stopDeadline.IsZero() && !now.Before(t.stopDeadline) {
		t.stopDeadline = time.Time{}
		t.killTrees()
	}
}
