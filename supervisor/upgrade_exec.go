package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/internal/handover"
)

// requestUpgrade starts an upgrade, after the roll in progress if any.
func (t *table) requestUpgrade(done chan<- error) {
	if t.stopping {
		reply(done, ErrClosed)
		return
	}
	if t.upgrade != nil {
		t.upgrade.waiters = appendWaiter(t.upgrade.waiters, done)
		return
	}
	path := t.o.upgradePath
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			reply(done, fmt.Errorf("supervisor: upgrade: %w", err))
			return
		}
		path = exe
	}
	t.upgrade = &upgrade{path: path, waiters: appendWaiter(nil, done)}
	if t.roll != nil {
		t.log.Info("upgrade queued behind the roll in progress")
		return
	}
	t.startPreflight()
}

// startPreflight runs the new binary in check mode, in the background
// (package internal/handover); the loop gets the result on t.preflights.
func (t *table) startPreflight() {
	u := t.upgrade
	t.log.Info("upgrade: checking the new binary", zap.String("path", u.path))
	var env []string
	for _, kv := range os.Environ() {
		if !ownedVar(kv) {
			env = append(env, kv)
		}
	}
	// The real argv and environment: the new program runs its main as it
	// will after the exec, up to New (see handover.EndPreflight).
	p, err := handover.StartPreflight(t.reaper, u.path, os.Args, env, [3]*os.File{t.devnull, os.Stdout, os.Stderr})
	if err != nil {
		t.failUpgrade(err)
		return
	}
	t.bg.Add(1)
	go func() {
		defer t.bg.Done()
		err := p.Wait(handover.PreflightTimeout, t.quit)
		select {
		case t.preflights <- err:
		case <-t.quit:
		}
	}()
}

func (t *table) onPreflight(err error) {
	u := t.upgrade
	if u == nil || t.stopping {
		return
	}
	if err != nil {
		t.failUpgrade(fmt.Errorf("the new binary %s failed its preflight run: %w", u.path, err))
		return
	}
	t.log.Info("upgrade: exec", zap.String("path", u.path), zap.Int("pid", os.Getpid()))
	t.failUpgrade(t.exec(u.path)) // exec returns only on failure
}

func (t *table) failUpgrade(err error) {
	u := t.upgrade
	if u == nil {
		return
	}
	t.upgrade = nil
	t.countUpgrade(false)
	t.log.Error("upgrade failed; the supervisor keeps running", zap.Error(err))
	replyAll(u.waiters, fmt.Errorf("supervisor: upgrade: %w", err))
	t.afterOperation()
}

// exec replaces the program in place with path, handing over the table.
// It returns only if that failed, with everything as it was.
func (t *table) exec(path string) error {
	// From here exits stay unreaped, zombies that keep their pids, for the
	// new program to adopt.
	t.reaper.Close()
	close(t.reaperGone)
	restore := func() error {
		t.reaperGone = make(chan struct{})
		r, err := t.newReaper()
		if err != nil {
			return err
		}
		t.reaper = r
		if err := t.handoverResume(); err != nil {
			return err
		}
		t.serveEndpoints()
		// track re-inserts into t.live: range over a copy.
		for _, w := range slices.Collect(maps.Keys(t.live)) {
			select {
			case <-w.proc.Done():
				continue // its watcher delivers the exit
			default:
			}
			proc, err := t.reaper.Adopt(w.info.Pid)
			if err != nil {
				t.log.Error("re-adopting a worker after a failed upgrade", zap.Int("pid", w.info.Pid), zap.Error(err))
				continue
			}
			w.proc = proc
			delete(t.live, w)
			t.track(w)
		}
		t.readoptJanitor() // janitor.go
		return nil
	}
	t.stopEndpoints() // their sockets go on; their connections would not
	st, err := t.snapshot()
	if err != nil {
		return errors.Join(err, restore())
	}
	// Signals received and not yet handled go with the table; what arrives
	// in the exec window is handover.Exec's business.
	signals := append(t.carried, handover.Drain(t.sigs)...)
	t.carried = nil
	table, err := json.Marshal(st)
	if err != nil {
		t.carried = signals
		return errors.Join(err, restore())
	}
	h := &handover.Handoff{
		Path: path, Args: os.Args, Env: os.Environ(),
		Fds:   []int{st.NotifyFd, st.LivenessFds[0], st.LivenessFds[1]},
		State: handover.State{Table: table, Signals: signals},
		Sigs:  t.sigs,
	}
	for _, s := range st.Sockets {
		h.Fds = append(h.Fds, s.Fd)
	}
	for _, fds := range st.SlotSockets {
		h.Fds = append(h.Fds, fds...)
	}
	for _, fd := range []int{st.MetricsFd, st.HealthFd} {
		if fd > 0 {
			h.Fds = append(h.Fds, fd)
		}
	}
	for _, r := range st.Recipes {
		if r.Fd > 0 {
			h.Fds = append(h.Fds, r.Fd)
		}
	}
	h.Fds = append(h.Fds, handoverFds(st.Handover)...)
	// The janitor's pipe stays open across the exec, so that the janitor
	// does not take it for the supervisor's death (janitor.go).
	if v, fd, ok := t.janitorExec(); ok {
		h.Env, h.Fds = append(h.Env, v), append(h.Fds, fd)
	}
	late, err := handover.Exec(h)
	t.carried = slices.Concat(signals, late, t.carried) // not handed over after all
	return errors.Join(err, restore())
}

type upgrade struct {
	path    string
	waiters []chan<- error
}
