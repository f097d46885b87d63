package orphans

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSweep leaves one running child and one zombie: Sweep ends both.
func TestSweep(t *testing.T) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	start := func(args ...string) int {
		p, err := os.StartProcess(args[0], args, &os.ProcAttr{Files: []*os.File{devnull, devnull, devnull}})
		if err != nil {
			t.Fatal(err)
		}
		pid := p.Pid
		p.Release() // left for Sweep, as a subject's leftover would be
		return pid
	}
	running := start("/bin/sleep", "60")
	exited := start("/bin/true")
	kids, err := Children()
	if err != nil || len(kids) != 2 {
		t.Fatalf("Children: %v, %v; want %d and %d", kids, err, running, exited)
	}
	alive, zombies, err := Sweep()
	if err != nil || alive+zombies != 2 || alive < 1 {
		t.Fatalf("Sweep: %d alive, %d zombies, %v; want the sleeper alive and 2 in all", alive, zombies, err)
	}
	if kids, err := Children(); err != nil || len(kids) != 0 {
		t.Fatalf("children after Sweep: %v, %v", kids, err)
	}
}
