//go:build linux

package supervisor_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/supervisor"
)

// TestStopKillsWorkerCgroup: a worker starts a setsid'd process that
// ignores SIGTERM. With cgroups, it is double-forked, so that no parent
// links it to the worker: its cgroup does, and after a stop with a 1 s
// timeout nothing of the cgroup is alive and the cgroup is removed. With
// cgroups off (the /proc view) it stays the worker's child, found by its
// parent and killed at the stop timeout too; no cgroup is made.
func TestStopKillsWorkerCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making cgroups needs root or a delegated cgroup")
	}
	for _, tc := range []struct {
		name    string
		cgroups bool
		tree    string
		mode    string // the log line that says which view is used
	}{
		{"cgroups", true, `(trap "" TERM; exec sleep 1000 >/dev/null) & echo $!`,
			"workers' trees: a cgroup per worker"},
		{"proc", false, `trap "" TERM; echo $$; exec sleep 1000 >/dev/null`,
			"workers' trees: tracked through /proc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := deadline(t)
			core, logs := observer.New(zapcore.InfoLevel)
			log := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
			pidfile := filepath.Join(t.TempDir(), "pid")
			f := newFixture(t, "tree", []string{"TEST_TREE=" + tc.tree, "TEST_PIDFILE=" + pidfile},
				supervisor.WithLogger(log), supervisor.WithStopTimeout(time.Second), supervisor.WithCgroups(tc.cgroups))
			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			f.run(rctx)
			w := f.waitSpawn(ctx)
			f.ask() // serving: the pid file is written
			b, err := os.ReadFile(pidfile)
			if err != nil {
				t.Fatal(err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("pid file %q: %v", b, err)
			}
			pidfd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				t.Fatalf("pidfd_open %d: %v", pid, err)
			}
			t.Cleanup(func() { // whatever the test's outcome
				unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
				unix.Close(pidfd)
			})

			mode := logs.FilterMessage(tc.mode).All()
			if len(mode) != 1 {
				t.Fatalf("want one log line %q, got %d", tc.mode, len(mode))
			}
			base := mode[0].ContextMap()["cgroup"]
			own, _ := os.ReadFile("/proc/self/cgroup")
			theirs, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
			wcg, _ := os.ReadFile("/proc/" + strconv.Itoa(w.Pid) + "/cgroup")
			var dir string
			if tc.cgroups {
				want := "/handoff-" + strconv.Itoa(os.Getpid()) + "/w-0-1-"
				if !strings.Contains(string(theirs), want) || string(theirs) != string(wcg) {
					t.Fatalf("the worker's tree is in %q and the worker in %q, want both in a cgroup *%s*", theirs, wcg, want)
				}
				dir = filepath.Join(base.(string), filepath.Base(strings.TrimSpace(string(theirs))))
				if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err != nil {
					t.Fatalf("the worker's cgroup: %v", err)
				}
			} else if string(theirs) != string(own) || string(wcg) != string(own) {
				t.Fatalf("cgroups off, yet the worker is in %q and its tree in %q, not in the supervisor's %q", wcg, theirs, own)
			}

			cancel() // a stop with a 1 s timeout
			if err := recv(ctx, t, f.runErr, "Run to return"); err != nil {
				t.Fatalf("Run: %v", err)
			}
			f.runErr <- nil // for the cleanup
			// A pidfd polls readable once its process has exited (a zombie
			// until whoever inherited it reaps it: dead is what counts).
			if n, err := unix.Poll([]unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}, 0); n != 1 {
				t.Errorf("the worker's setsid'd process %d is alive after the stop (poll: %d, %v)", pid, n, err)
			}
			if len(logs.FilterMessage("processes of the workers' trees did not exit in time: killing").All()) != 1 {
				t.Errorf("the stubborn process was not killed at the stop timeout")
			}
			if tc.cgroups {
				for _, d := range []string{dir, base.(string)} {
					if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("cgroup %s left after the stop: %v", d, err)
					}
				}
			}
		})
	}
}

// TestStopCgroupsListOnce: with a cgroup per worker, a stop of N workers
// lists /proc once, at the last exit (when the workers are gone from it),
// not before the signals nor as the workers exit: each worker's cgroup is
// read instead. Listing all of /proc before the signals took 60–180 ms at
// 1,000 workers, and each sweep during the stop about as much.
func TestStopCgroupsListOnce(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making cgroups needs root or a delegated cgroup")
	}
	const n = 16
	ctx := deadline(t)
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t, zaptest.Level(zapcore.InfoLevel)).Core(), core))
	f := newFixture(t, "serve", nil, supervisor.WithLogger(log), supervisor.WithWorkers(n),
		supervisor.WithStopTimeout(time.Minute), supervisor.WithCgroups(true))
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.run(rctx)
	for range n {
		f.waitReady(ctx)
	}
	before := logs.Len()
	cancel()
	if err := recv(ctx, t, f.runErr, "Run's return"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	f.runErr <- nil  // for the fixture's cleanup
	var seq []string // the listings and the exits, in order
	for _, e := range logs.All()[before:] {
		switch e.Message {
		case "listed the workers' process trees":
			seq = append(seq, "listed")
		case "worker exited":
			seq = append(seq, "exited")
		}
	}
	want := append(slices.Repeat([]string{"exited"}, n-1), "listed", "exited")
	if !slices.Equal(seq, want) {
		t.Errorf("a stop of %d workers in cgroups: %v, want %v", n, seq, want)
	}
}
