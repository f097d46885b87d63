package main

import (
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// The program itself runs under a supervisor in e2e/echo_test.go; here
// only what it links.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestWorkerOnlyDeps: the program links neither the supervisor, nor its
// reaper, nor the spawning plumbing (and so runs none of their init).
func TestWorkerOnlyDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	has := map[string]bool{}
	for _, d := range deps {
		has[d] = true
	}
	const mod = "github.com/handoff-dev/handoff/"
	if !has[mod+"worker"] || !has[mod+"listener"] {
		t.Fatalf("go list -deps does not list worker and listener: %q", deps)
	}
	for _, p := range []string{"supervisor", "reap", "internal/launch", "internal/logging",
		"internal/notify", "internal/proctree", "internal/cgroup", "internal/acceptq",
		"internal/probe", "internal/janitor", "internal/endpoint"} {
		if has[mod+p] {
			t.Errorf("a worker-only program depends on %s%s", mod, p)
		}
	}
}

// TestLowerPackagesNeverImportSupervisor: data flows one way; listener,
// reap, worker and the supervisor's internal mechanisms (every package
// under internal/) know nothing of the supervisor, directly or not.
func TestLowerPackagesNeverImportSupervisor(t *testing.T) {
	const mod = "github.com/handoff-dev/handoff/"
	out, err := exec.Command("go", "list", mod+"internal/...").Output()
	if err != nil {
		t.Fatalf("go list internal/...: %v", err)
	}
	lower := []string{"listener", "reap", "worker"}
	for _, p := range strings.Fields(string(out)) {
		lower = append(lower, strings.TrimPrefix(p, mod))
	}
	if len(lower) < 5 {
		t.Fatalf("go list internal/... printed %q", out)
	}
	for _, p := range lower {
		out, err := exec.Command("go", "list", "-deps", mod+p).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", p, err)
		}
		deps := strings.Fields(string(out))
		if len(deps) == 0 || deps[len(deps)-1] != mod+p {
			t.Fatalf("go list -deps %s printed %q", p, deps)
		}
		for _, d := range deps {
			if d == mod+"supervisor" {
				t.Errorf("%s depends on %s", p, d)
			}
		}
	}
}
