package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/bench/internal/orphans"

	"go.uber.org/goleak"

	"github.com/handoff-dev/handoff/bench/load"
)

// helperEnv names the helper the test binary runs instead of the tests.
const helperEnv = "ROLLS_TEST_HELPER"

// helpers are stand-ins for the example supervisor, run as the test binary
// re-executed, so that the harness's failure paths can be driven.
var helpers = map[string]func() int{
	"exits":         func() int { return fakeSupervisor("exits") },
	"roll-fails":    func() int { return fakeSupervisor("roll-fails") },
	"leaves-orphan": func() int { return fakeSupervisor("leaves-orphan") },
	"sleeper": func() int {
		time.Sleep(time.Hour) // holds the inherited log pipe until killed
		return 0
	},
}

func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		h, ok := helpers[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
			os.Exit(2)
		}
		os.Exit(h())
	}
	goleak.VerifyTestMain(m)
}

// fakeSupervisor logs like the example and serves HTTP itself: "exits"
// fails at once; "roll-fails" reports every roll as failed;
// "leaves-orphan" rolls fine but, on SIGTERM, starts a process that
// outlives it holding the log.
func fakeSupervisor(kind string) int {
	log := json.NewEncoder(os.Stderr)
	if kind == "exits" {
		signal.Ignore(syscall.SIGTERM) // the harness may stop it before it is done exiting
		log.Encode(map[string]any{"level": "error", "msg": msgExiting, "error": "no sockets for you"})
		return 1
	}
	workers := 1
	if i := slices.Index(os.Args, "-workers"); i >= 0 && i+1 < len(os.Args) {
		workers, _ = strconv.Atoi(os.Args[i+1])
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Encode(map[string]any{"level": "error", "msg": msgExiting, "error": err.Error()})
		return 1
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Generation", "1")
	})}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ln) })
	defer wg.Wait()
	defer srv.Close()
	log.Encode(map[string]any{"msg": msgListening, "addr": ln.Addr().String()})
	for i := range workers {
		log.Encode(map[string]any{"msg": msgWorkerReady, "worker": i, "generation": 1})
	}
	gen := 1
	for sig := range sigs {
		if sig == syscall.SIGTERM {
			break
		}
		if kind == "roll-fails" {
			log.Encode(map[string]any{"level": "error", "msg": msgRollFailed + "; the previous generation keeps serving",
				"generation": gen + 1, "error": "worker 0 exited before ready"})
			continue
		}
		gen++
		log.Encode(map[string]any{"msg": msgRollComplete, "generation": gen, "took": 0.001})
	}
	if kind == "leaves-orphan" {
		self, _ := os.Executable()
		orphan := exec.Command(self)
		orphan.Env = append(os.Environ(), helperEnv+"=sleeper")
		orphan.Stderr = os.Stderr
		if err := orphan.Start(); err != nil {
			return 1
		}
	}
	return 0
}

// testConfig is a short run, bounded by the test's deadline.
func testConfig(t *testing.T) config {
	limit := time.Minute
	if d, ok := t.Deadline(); ok {
		limit = (time.Until(d) - 10*time.Second).Truncate(time.Second)
	}
	return config{rolls: 3, clients: 8, workers: 2, steady: 200 * time.Millisecond, mode: load.Raw,
		method: load.Mixed, rollTimeout: limit, limit: limit, logTimeout: time.Second}
}

// checkClean fails the test if it leaves a child process or a descriptor.
// Call it first, so that its cleanup runs last.
func checkClean(t *testing.T) {
	t.Helper()
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := fds()
	t.Cleanup(func() {
		if after := fds(); after > before {
			t.Errorf("%d descriptors open after the test, %d before", after, before)
		}
		if kids, err := orphans.Children(); err != nil || len(kids) > 0 {
			t.Errorf("children left: %v (%v)", kids, err)
		}
	})
}

func reportText(rep *report) string {
	var b bytes.Buffer
	rep.write(&b)
	return b.String()
}

// TestRealSupervisor runs the harness briefly against the real example.
func TestRealSupervisor(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the example")
	}
	checkClean(t)
	cfg := testConfig(t)
	rep := run(t.Context(), cfg, nil)
	out := reportText(rep)
	if rep.failed() || len(rep.rolls) != cfg.rolls || rep.res.Stats().OK() == 0 {
		t.Fatalf("run failed:\n%s", out)
	}
	for _, want := range []string{"result: PASS", "| failed: EOF before any response byte | 0 | 0 | 0 |",
		"rolled to generation 4"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestSupervisorExits: a supervisor that fails to start is reported, with
// its log and exit status, and nothing is left.
func TestSupervisorExits(t *testing.T) {
	checkClean(t)
	t.Setenv(helperEnv, "exits")
	rep := runFake(t)
	out := reportText(rep)
	if !rep.failed() || rep.res != nil {
		t.Fatalf("want a failed run without load:\n%s", out)
	}
	for _, want := range []string{"the supervisor is exiting: no sockets for you", "exit status 1", "result: FAIL"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestRollFails: a "roll failed" line ends the run with an error, after
// the load and the supervisor were stopped.
func TestRollFails(t *testing.T) {
	checkClean(t)
	t.Setenv(helperEnv, "roll-fails")
	rep := runFake(t)
	out := reportText(rep)
	if !rep.failed() || len(rep.rolls) != 0 || rep.res == nil || rep.res.Stats().Failed() != 0 ||
		!strings.Contains(out, " | 0.000 s (0 rolls) |") {
		t.Fatalf("want a failed run with load but no roll:\n%s", out)
	}
	if !strings.Contains(out, "roll 1 of 3: waiting for roll complete of generation 2: roll to generation 2 failed: worker 0 exited before ready") {
		t.Errorf("report does not explain the failed roll:\n%s", out)
	}
}

// TestOrphanIsReaped: a process that outlives the supervisor, holding its
// log, is found, killed and reaped, and the run fails.
func TestOrphanIsReaped(t *testing.T) {
	checkClean(t)
	t.Setenv(helperEnv, "leaves-orphan")
	rep := runFake(t)
	out := reportText(rep)
	if !rep.failed() || len(rep.rolls) != 3 {
		t.Fatalf("want 3 rolls and a failed run:\n%s", out)
	}
	for _, want := range []string{"processes still held the log", "1 processes outlived the supervisor; killed and reaped"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func runFake(t *testing.T) *report {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GORACE", "atexit_sleep_ms=0") // a -race helper would linger a second at exit
	cfg := testConfig(t)
	cfg.bin = self
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	return run(ctx, cfg, nil)
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := "-rolls 100 -clients 64 -workers 4 -steady 5s -gap 0s -mode raw -method both -roll-timeout 30s -limit 5m0s"
	if got := cfg.flags(); got != want {
		t.Errorf("defaults: %s\nwant      %s", got, want)
	}
	cfg, err = parseFlags([]string{"-mode", "nethttp", "-method", "POST", "-rolls", "0", "-gap", "10ms"}, io.Discard)
	if err != nil || cfg.mode != load.NetHTTP || cfg.method != load.POST || cfg.rolls != 0 ||
		cfg.gap != 10*time.Millisecond {
		t.Errorf("parsed %+v, %v", cfg, err)
	}
	for _, bad := range [][]string{
		{"-rolls", "-1"}, {"-clients", "0"}, {"-workers", "0"}, {"-steady", "0s"}, {"-gap", "-1s"},
		{"-mode", "curl"}, {"-method", "PUT"}, {"-roll-timeout", "0s"}, {"-limit", "0s"}, {"stray"},
		{"-nope"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded", bad)
		}
	}
}
