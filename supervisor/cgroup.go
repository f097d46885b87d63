package supervisor

import (
	"errors"
	"io/fs"

	"github.com/handoff-dev/handoff/internal/cgroup"
	"go.uber.org/zap"
)

// cgroupMode is WithCgroups: auto (the default), on, or off.
type cgroupMode int8

const (
	cgroupsAuto cgroupMode = iota
	cgroupsOn
	cgroupsOff
)

// openCgroups makes this supervisor's cgroup for its workers, when asked
// for or available, and says in one log line which view of the workers'
// trees is used.
func (t *table) openCgroups() error {
	if t.o.cgroups == cgroupsOff {
		t.log.Info("workers' trees: tracked through /proc", zap.String("reason", "cgroups off"))
		return nil
	}
	base, err := cgroup.MakeBase()
	if err != nil {
		if t.o.cgroups == cgroupsOn {
			return err
		}
		t.log.Info("workers' trees: tracked through /proc", zap.String("reason", err.Error()))
		return nil
	}
	t.cgBase = base
	t.tellJanitorCgroups()
	t.log.Info("workers' trees: a cgroup per worker", zap.String("cgroup", base))
	return nil
}

// cgroupExited keeps the cgroup of a worker that has exited until nothing
// of its tree is left, and removes what it can.
func (t *table) cgroupExited(w *child) {
	if w.cgroup != "" {
		t.cgLeft[w.cgroup] = true
	}
	t.tidyCgroups()
}

// tidyCgroups removes the cgroups of exited workers that are empty.
func (t *table) tidyCgroups() {
	for dir := range t.cgLeft {
		err := cgroup.Remove(dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			delete(t.cgLeft, dir)
		}
	}
}

// killCgroups ends every process of the workers' cgroups (cgroup.kill).
func (t *table) killCgroups() {
	for _, dir := range t.cgroups() {
		if err := cgroup.Kill(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.log.Warn("killing a worker's cgroup", zap.String("cgroup", dir), zap.Error(err))
		}
	}
}

// cgroups lists the cgroups of the live workers and those left by exited
// ones.
func (t *table) cgroups() []string {
	var dirs []string
	for w := range t.live {
		if w.cgroup != "" {
			dirs = append(dirs, w.cgroup)
		}
	}
	for dir := range t.cgLeft {
		dirs = append(dirs, dir)
	}
	return dirs
}

// closeCgroups removes what is left of the cgroups once Run is over; a
// cgroup still in use (a process that escaped, or workers kept across an
// upgrade that failed) stays, and is logged.
func (t *table) closeCgroups() {
	if t.cgBase == "" {
		return
	}
	t.tidyCgroups()
	for dir := range t.cgLeft {
		t.log.Warn("a worker's cgroup is still in use", zap.String("cgroup", dir))
	}
	if err := cgroup.Remove(t.cgBase); err != nil && !errors.Is(err, fs.ErrNotExist) && len(t.cgLeft) == 0 {
		t.log.Warn("removing the workers' cgroup", zap.String("cgroup", t.cgBase), zap.Error(err))
	}
}
