package supervisor

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/cgroup"
	"github.com/handoff-dev/handoff/internal/launch"
	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/reap"
	"github.com/handoff-dev/handoff/worker"
)

// schedule starts a worker in every empty slot whose backoff has passed.
func (t *table) schedule() {
	if t.stopping {
		return
	}
	now := time.Now()
	for _, sl := range t.slots {
		if sl.w == nil && !sl.vetoed && !now.Before(sl.notBefore) {
			if err := t.spawn(sl, t.targetGen(), &sl.w); err != nil {
				t.startFailed(sl, err)
			}
		}
	}
}

// targetGen is the generation new workers belong to.
func (t *table) targetGen() uint64 {
	if t.roll != nil {
		return t.roll.gen
	}
	return t.gen
}

// spawn starts a worker for sl in generation gen and places it in sl
// (into: &sl.w or &sl.next) before AfterSpawn runs, so that Stats from the
// hook lists it in Workers.
func (t *table) spawn(sl *slot, gen uint64, into **child) (err error) {
	s := t.s
	rc, ok := t.recipes[gen]
	if !ok { // the first generation, or one handed over by an upgrade
		rc = s.pin()
		t.setRecipe(gen, rc)
	}
	t.forget()
	cmd := rc.cmd
	socks := t.socksFor(sl.index)
	sp := &Spawn{
		Path:       cmd.Path,
		Args:       slices.Clone(cmd.Args),
		Dir:        cmd.Dir,
		Env:        s.workerEnv(socks, t.notify.Name(), sl.index, gen),
		Stdin:      t.devnull,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		Worker:     sl.index,
		Generation: gen,
	}
	if c := t.o.cred; c != nil {
		sp.Credential = &Credential{UID: c.UID, GID: c.GID, Groups: slices.Clone(c.Groups)}
	}
	if h := t.o.hooks.BeforeSpawn; h != nil {
		t.runHook(func() { err = h(sp) })
		if err != nil {
			return fmt.Errorf("before-spawn hook: %w", err)
		}
	}
	var cg *os.File
	if t.cgBase != "" {
		t.cgN++
		dir := filepath.Join(t.cgBase, fmt.Sprintf("w-%d-%d-%d", sl.index, gen, t.cgN))
		if cg, err = cgroup.Make(dir); err != nil {
			return err
		}
		defer cg.Close()
	}
	var exe *os.File
	if sp.Path == cmd.Path { // unless the hook chose another program
		exe = rc.exe
	}
	local, remote, err := t.handoverPair()
	if err != nil {
		return err
	}
	proc, err := t.start(sp, socks, cg, exe, rc.self, remote)
	if remote != nil {
		remote.Close() // the worker's now
	}
	if err != nil {
		if local != nil {
			local.Close()
		}
		if cg != nil {
			cgroup.Remove(cg.Name())
		}
		return err
	}
	now := time.Now()
	w := &child{
		info: WorkerInfo{
			Slot:       sl.index,
			Pid:        proc.Pid(),
			Generation: gen,
			State:      Starting,
			Started:    now,
			Restarts:   sl.restarts,
		},
		proc: proc,
	}
	if cg != nil {
		w.cgroup = cg.Name()
	}
	if t.o.maxLifetime > 0 {
		w.expireAt = now.Add(t.o.maxLifetime)
		if t.o.lifetimeJitter > 0 {
			w.expireAt = w.expireAt.Add(rand.N(t.o.lifetimeJitter))
		}
	}
	t.track(w)
	t.handoverStarted(w, local)
	t.countStart()
	t.log.Info("worker started", workerFields(w.info)...)
	*into = w
	if h := t.o.hooks.AfterSpawn; h != nil {
		t.runHook(func() { h(w.info) })
	}
	switch t.o.readiness.mode {
	case readyStart:
		// Ready now; the ready event fires once the caller has placed w.
		w.readyAt, w.deadline = now, now
	case readyDelay:
		w.deadline = now.Add(t.o.readiness.delay)
	case readyNotify:
		w.deadline = now.Add(t.o.readyTimeout)
	}
	return nil
}

// track registers a started or adopted worker and watches for its exit.
func (t *table) track(w *child) {
	t.live[w] = struct{}{}
	t.byPid[w.info.Pid] = w
	if w.cgroup == "" && t.cgBase != "" { // adopted after an upgrade
		if dir, err := cgroup.Dir(strconv.Itoa(w.info.Pid)); err == nil && strings.HasPrefix(dir, t.cgBase+"/") {
			w.cgroup = dir
		}
	}
	t.tellJanitor('+', w.info.Pid)
	proc, gone := w.proc, t.reaperGone
	t.watchers.Add(1)
	go func() {
		defer t.watchers.Done()
		select {
		case <-proc.Done():
		case <-gone: // the reaper was closed for an upgrade
			select {
			case <-proc.Done(): // but this exit was collected first
			default:
				return
			}
		}
		st, ok := proc.Status()
		if !ok { // reaped by someone else: the status is lost, not the exit
			st = reap.Status{Pid: proc.Pid(), Code: -1, Time: time.Now()}
		}
		select {
		case t.exits <- exit{w, st}:
		case <-t.quit:
		}
	}()
}

// start starts the process described by sp with socks, in the cgroup cg unless nil
// (package internal/launch). exe, unless nil, is sp.Path's program pinned
// open (self: the supervisor's own binary), which runs instead of whatever
// is at sp.Path. handover, unless nil, is the worker's end of its
// hand-over pair, passed after the liveness pipe.
func (t *table) start(sp *Spawn, socks []*listener.Socket, cg *os.File, exe *os.File, self bool, handover *os.File) (*reap.Process, error) {
	liveFd := 3 + len(socks) + len(sp.ExtraFiles)
	ls := launch.Spec{Path: sp.Path, Args: sp.Args, Dir: sp.Dir,
		Env:   append(slices.Clip(sp.Env), fmt.Sprintf("%s=%d", worker.EnvLivenessFd, liveFd)),
		Stdio: [3]*os.File{sp.Stdin, sp.Stdout, sp.Stderr}, ExtraFiles: sp.ExtraFiles,
		Live: []*os.File{t.liveR}, Cgroup: cg, Exe: exe, Self: self}
	if handover != nil {
		ls.Live = append(ls.Live, handover)
		ls.Env = append(ls.Env, handoverEnv(liveFd))
	}
	if c := sp.Credential; c != nil {
		ls.Cred = &launch.Credential{UID: c.UID, GID: c.GID, Groups: c.Groups}
	}
	return launch.Start(t.reaper, socks, ls)
}

// rawFds returns the files' descriptors without switching them to blocking
// mode, as File.Fd would.
func rawFds(files []*os.File) ([]uintptr, error) { return launch.RawFds(files) }
