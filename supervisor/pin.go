package supervisor

import (
	"github.com/handoff-dev/handoff/internal/launch"
	"os"
	"path/filepath"
)

// A recipe is a generation's command, pinned when the generation started,
// so that its restarts and the way back of a failed roll run what it ran.
type recipe struct {
	cmd Command // with its symbolic links resolved
	// exe is the program itself, kept open, if it can run from its
	// descriptor (an ELF binary): the generation runs this file even after
	// another was put at its path. nil: it runs cmd.Path.
	exe *os.File
	// self: exe is the running supervisor's own binary.
	self bool
}

// pin resolves the command's symbolic links now and opens its program: a
// generation keeps the program and directory it started with, so that a
// release layout (current -> releases/N) switched for the next roll, or a
// new build renamed over the program, changes neither the restarts of the
// serving generation nor the way back of a failed roll.
func (s *Supervisor) pin() recipe {
	cmd := s.cmd
	if p, err := filepath.EvalSymlinks(cmd.Path); err == nil {
		cmd.Path = p
	}
	if cmd.Dir != "" {
		if d, err := filepath.EvalSymlinks(cmd.Dir); err == nil {
			cmd.Dir = d
		}
	}
	exe, self := launch.OpenExe(cmd.Path)
	return recipe{cmd: cmd, exe: exe, self: self}
}

func (r recipe) close() {
	if r.exe != nil {
		r.exe.Close()
	}
}

// setRecipe pins gen's recipe, replacing (and closing) any it had.
func (t *table) setRecipe(gen uint64, r recipe) {
	if old, ok := t.recipes[gen]; ok {
		old.close()
	}
	t.recipes[gen] = r
}

// forget drops (and closes) the recipes of generations nothing runs, and a
// roll cannot go to or back to; a retiring worker is never restarted. It
// runs at every spawn and at a roll's end, so that the pins held open are
// those of the generations that serve.
func (t *table) forget() {
	keep := map[uint64]bool{t.gen: true}
	if r := t.roll; r != nil {
		keep[r.gen], keep[r.from], keep[r.failed] = true, true, true
	}
	for w := range t.live {
		if w.info.State != Stopping {
			keep[w.info.Generation] = true
		}
	}
	for g, rc := range t.recipes {
		if !keep[g] {
			rc.close()
			delete(t.recipes, g)
		}
	}
}

// closeRecipes closes every pinned program.
func (t *table) closeRecipes() {
	for g, rc := range t.recipes {
		rc.close()
		delete(t.recipes, g)
	}
}

// isSelf reports whether f is the running supervisor's own binary.
func isSelf(f *os.File) bool { return launch.IsSelf(f) }
